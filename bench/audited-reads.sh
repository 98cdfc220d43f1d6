#!/usr/bin/env bash
# Authenticated, audited reads with the Merkle audit log, side by side with the foundation's
# build (before consent and the Merkle log), in one run, on the same data and machine.
#   bench/audited-reads.sh [REV] [COPIES] [SECONDS]
#   REV: the foundation's commit (default 1bd0e80); COPIES of the Synthea patients (default
#   100, ~87k resources); SECONDS per wrk run (default 20). BASELINE_BIN=path compares
#   against that binary instead (for example the previous main's release build).
# Builds REV in a git worktree under bench/.foundation (once), imports the same data into a
# fresh SQLite store per binary, then runs `GET /fhir/Patient/[id]` under 64 connections with
# wrk against each, one after the other. Needs wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:-1bd0e80}; copies=${2:-100}; secs=${3:-20}
command -v wrk >/dev/null || { echo "wrk is required: apt-get install wrk" >&2; exit 1; }
cargo build --release -q
# BASELINE_BIN: an already built binary to compare against instead of building REV.
baseline=${BASELINE_BIN:-bench/.foundation/target/release/medmesh}
if [ -z "${BASELINE_BIN:-}" ] && [ ! -x "$baseline" ]; then
    git worktree add -f bench/.foundation "$rev" >/dev/null 2>&1 || true
    (cd bench/.foundation && git checkout -q "$rev" && cargo build --release -q)
fi
data=bench/.audited-reads-data
[ -d "$data" ] || python3 bench/replicate_synthea.py "$copies" "$data"
run() {
    local name=$1 bin=$2 store=bench/.audited-reads-$1
    rm -rf "$store"; mkdir -p "$store"
    MEDMESH_LOG=warn "$bin" import --data-dir "$store" "$data" | head -1 >/dev/null
    MEDMESH_LOG=warn "$bin" serve --data-dir "$store" --listen 127.0.0.1:18182 > "$store/serve.out" 2>&1 &
    local node=$!
    for _ in $(seq 1 200); do curl -sf http://127.0.0.1:18182/healthz >/dev/null && break; sleep 0.1; done
    local token; token=$("$bin" admin token --data-dir "$store" --scope 'system/*.*' --ttl 2h)
    local base=http://127.0.0.1:18182/fhir
    local pid; pid=$(curl -sf -H "Authorization: Bearer $token" "$base/Patient?_count=1" | python3 -c 'import sys,json; print(json.load(sys.stdin)["entry"][0]["resource"]["id"])')
    local rps; rps=$(wrk -t2 -c64 -d"${secs}s" -H "Authorization: Bearer $token" "$base/Patient/$pid" | awk '/Requests\/sec/ {print $2}')
    kill $node; wait $node 2>/dev/null || true
    echo "$name $rps"
}
foundation=$(run foundation "$baseline")
current=$(run current target/release/medmesh)
echo "read GET /fhir/Patient/[id], 64 connections, ${secs}s, SQLite, $copies Synthea copies"
echo "$foundation req/s"
echo "$current req/s"
python3 - "$foundation" "$current" <<'PY'
import sys
f = float(sys.argv[1].split()[1]); c = float(sys.argv[2].split()[1])
print(f"current / foundation = {c / f:.2f} (target >= 0.80)")
PY
