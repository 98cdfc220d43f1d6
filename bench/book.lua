-- wrk script for bench/scheduling.py's bookings: POSTs each JSON body of a file (one per
-- line) once, spread over wrk's threads, and stops each thread once all of its bodies are
-- answered. A connection whose thread has sent all of its bodies waits (a long delay) and
-- then asks for a path the node answers 404 (not counted), should the thread still run.
--   wrk -t THREADS -c16 -d600s -s bench/book.lua URL -- BODIES_FILE TOKEN THREADS
-- Prints, per status, how many bodies were answered with it.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

local mine = {}
local next_index = 1
local answered = 0
local base_path

function init(args)
  local file, token, total_threads = args[1], args[2], tonumber(args[3])
  local line_number = 0
  for line in io.lines(file) do
    if line_number % total_threads == id then
      table.insert(mine, line)
    end
    line_number = line_number + 1
  end
  wrk.headers["Content-Type"] = "application/fhir+json"
  wrk.headers["Authorization"] = "Bearer " .. token
  base_path = wrk.path
  statuses = {}
end

function delay()
  if mine[next_index] == nil then
    return 10000
  end
  return 0
end

function request()
  local body = mine[next_index]
  if body == nil then
    return wrk.format("GET", base_path .. "/not-a-booking", nil, nil)
  end
  next_index = next_index + 1
  return wrk.format("POST", base_path, nil, body)
end

function response(status, headers, body)
  if status == 404 then
    return
  end
  statuses[status] = (statuses[status] or 0) + 1
  answered = answered + 1
  if answered >= #mine then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses")
    for status, n in pairs(counts) do
      totals[status] = (totals[status] or 0) + n
    end
  end
  for status, n in pairs(totals) do
    io.write(string.format("status %d %d\n", status, n))
  end
  io.write(string.format("seconds %.3f\n", summary.duration / 1e6))
  io.write(string.format("p50_ms %.2f p99_ms %.2f\n", latency:percentile(50) / 1e3, latency:percentile(99) / 1e3))
end
