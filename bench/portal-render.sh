#!/usr/bin/env bash
# How fast the portal's pages render for a patient with a long record: one Synthea patient
# grown to about 5,000 resources (bench/big_patient.py), signed in as that patient, then
# `GET /record` and `GET /home` under wrk (4 connections), with latency percentiles. Also
# prints the bytes of script and stylesheet the pages ship.
#   bench/portal-render.sh [RESOURCES] [SECONDS]
#   MEDMESH_BIN=/path/to/medmesh bench/portal-render.sh   (a binary built elsewhere)
# Needs wrk (apt-get install wrk). Target: p99 under 50 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5000}; secs=${2:-15}
command -v wrk >/dev/null || { echo "wrk is required: apt-get install wrk" >&2; exit 1; }
# MEDMESH_BIN runs a binary built elsewhere (one of a before/after pair) instead of this tree's.
if [ -z "${MEDMESH_BIN:-}" ]; then
    cargo build --release -q -p medmesh
    bin=${CARGO_TARGET_DIR:-target}/release/medmesh
else
    bin=$MEDMESH_BIN
fi
store=bench/.portal-render
rm -rf "$store"; mkdir -p "$store"
python3 bench/big_patient.py "$store/patient.json" "$n"
info=$(ls ../shared/testdata/fhir-r4-synthea-smart-generated-sample-data/*Information*.json)
MEDMESH_LOG=warn "$bin" import --data-dir "$store" $info "$store/patient.json" > /dev/null
MEDMESH_LOG=warn "$bin" serve --data-dir "$store" --listen 127.0.0.1:18183 > "$store/serve.out" 2>&1 &
node=$!
# The node signs a last audit checkpoint as it stops: wait for it, or the next run starts beside it.
trap 'kill $node 2>/dev/null; wait $node 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do curl -sf http://127.0.0.1:18183/healthz >/dev/null && break; sleep 0.1; done
base=http://127.0.0.1:18183
token=$("$bin" admin token --data-dir "$store" --scope 'system/*.*' --ttl 1h)
pid=$(curl -sf -H "Authorization: Bearer $token" "$base/fhir/Patient?family=Leffler" | python3 -c 'import sys,json; print(json.load(sys.stdin)["entry"][0]["resource"]["id"])')
count=$(curl -sf -H "Authorization: Bearer $token" "$base/fhir/Patient/$pid/\$everything?_count=1000" -o /dev/null -w '%{http_code}')
echo 'a long enough passphrase' | MEDMESH_LOG=warn "$bin" admin create-user --data-dir "$store" --role patient --username bench --patient "$pid" > /dev/null
jar="$store/cookies"
csrf=$(curl -sf -c "$jar" "$base/login" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -1)
curl -sf -b "$jar" -c "$jar" -o /dev/null -d "csrf=$csrf&next=/home&username=bench&password=a+long+enough+passphrase" "$base/login"
session=$(awk '$6 == "medmesh_session" {print $7}' "$jar")
[ -n "$session" ] || { echo "could not sign in" >&2; exit 1; }
echo "portal render, patient with $n resources, SQLite, ${secs}s each; 1 connection (one user) and 4"
for page in /record /home; do
    curl -sf -H "Cookie: medmesh_session=$session" "$base$page" -o /dev/null
    for c in 1 4; do
        wrk -t1 -c"$c" -d"${secs}s" --latency -H "Cookie: medmesh_session=$session" "$base$page" \
            | awk -v p="$page" -v c="$c" '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {printf "%-8s c=%s %8s req/s  p50 %8s  p99 %8s\n", p, c, rps, p50, p99}'
    done
done
html=$(curl -sf -H "Cookie: medmesh_session=$session" "$base/record" | wc -c)
js=$(curl -sf "$base/static/portal.js" | wc -c); css=$(curl -sf "$base/static/portal.css" | wc -c)
sw=$(curl -sf "$base/sw.js" | wc -c)
echo "shipped: /record HTML $html bytes; portal.js $js bytes, portal.css $css bytes, sw.js $sw bytes (uncompressed)"
