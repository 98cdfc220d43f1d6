#!/usr/bin/env bash
# Authenticated read and search throughput under 64 connections (wrk), on a store of 1M+
# resources built by replicating the Synthea patients with new ids.
#   bench/read-search.sh [DB] [COPIES] [SECONDS]
#   DB: sqlite (default) or postgres; COPIES default 1160 (~1.01M resources); SECONDS default 20.
# Needs a release build, wrk (apt-get install wrk), and for postgres a server on 127.0.0.1:5432.
# The store is kept in bench/.store-$DB between runs (delete it to rebuild).
set -euo pipefail
cd "$(dirname "$0")/.."
db=${1:-sqlite}; copies=${2:-1160}; secs=${3:-20}
bin=target/release/medmesh
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is required: apt-get install wrk" >&2; exit 1; }
store=bench/.store-$db
args=(--data-dir "$store")
if [ "$db" = postgres ]; then
    pg=${PG:-postgres://postgres@127.0.0.1:5432}
    args+=(--database-url "$pg/medmesh_bench_read")
fi
if [ ! -f "$store/.built" ]; then
    rm -rf "$store"; mkdir -p "$store"
    if [ "$db" = postgres ]; then
        psql "$pg/postgres" -qAtc "DROP DATABASE IF EXISTS medmesh_bench_read WITH (FORCE)" >/dev/null
        psql "$pg/postgres" -qAtc "CREATE DATABASE medmesh_bench_read" >/dev/null
    fi
    python3 bench/replicate_synthea.py "$copies" "$store/data"
    MEDMESH_LOG=warn "$bin" import "${args[@]}" "$store/data" | head -1
    rm -rf "$store/data"
    touch "$store/.built"
fi
MEDMESH_LOG=warn "$bin" serve "${args[@]}" --listen 127.0.0.1:18181 > "$store/serve.out" 2>&1 &
node=$!
# The node signs a last audit checkpoint as it stops: wait for it, or the next run starts beside it.
trap 'kill $node 2>/dev/null; wait $node 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do curl -sf http://127.0.0.1:18181/healthz >/dev/null && break; sleep 0.1; done
token=$("$bin" admin token "${args[@]}" --scope 'system/*.*' --ttl 2h)
auth="Authorization: Bearer $token"
base=http://127.0.0.1:18181/fhir
pid=$(curl -sf -H "$auth" "$base/Patient?family=Conn&_count=1" | python3 -c 'import sys,json; print(json.load(sys.stdin)["entry"][0]["resource"]["id"])')
total=$(curl -sf -H "$auth" "$base/_history?_count=1" | python3 -c 'import sys,json; print(json.load(sys.stdin)["total"])')
echo "store: $db, $total resource versions; patient $pid"
echo "== read: GET /fhir/Patient/$pid"
wrk -t2 -c64 -d"${secs}s" --latency -H "$auth" "$base/Patient/$pid" | grep -E 'Requests/sec|50%|99%|Non-2xx'
echo "== search: Observation?patient=$pid&code=http://loinc.org|8302-2"
wrk -t2 -c64 -d"${secs}s" --latency -H "$auth" "$base/Observation?patient=$pid&code=http://loinc.org%7C8302-2" | grep -E 'Requests/sec|50%|99%|Non-2xx'
