#!/usr/bin/env bash
# The guard for every change to the read or write path: REV's build against the working
# tree's, side by side, on the same data, one after the other, alternating the order.
#   bench/compare.sh REV [COPIES] [ROUNDS] [SECONDS]
#   REV: a commit (for example origin/main or HEAD~1); COPIES of the Synthea patients
#   (default 40, ~35k resources); ROUNDS (default 3); SECONDS per wrk run (default 10).
#   DB=postgres runs on PostgreSQL ($PG, default postgres://postgres@127.0.0.1:5432)
#   instead of SQLite.
# Per round and binary, on a fresh store:
#   import     `medmesh import` of the replicated data, resources/s
#   reads      `GET /fhir/Patient/[id]` with a system token, 64 connections (wrk)
#   pract      the same read with a verified practitioner's token: the request goes through
#              the trust graph (a care team) and the patient's consents
#   search     `Observation?patient=X&code=http://loinc.org|8302-2`, system token
# and prints the median of each figure over the rounds with its range (lowest–highest), the
# p99 of the wrk runs, and the ratio working tree / REV of the medians, marked where the two
# builds' ranges overlap (the rounds cannot tell them apart). REV is built once, in a git worktree under bench/.compare, with
# a target directory of its own (bench/.compare/target); its binary is kept by commit id
# (bench/.compare/medmesh-SHORT: a release binary of REV put there is used as it is). The
# working tree builds into CARGO_TARGET_DIR when it is set.
# Needs wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench/compare.sh REV [COPIES] [ROUNDS] [SECONDS]" >&2; exit 2; }
rev=$1; copies=${2:-40}; rounds=${3:-3}; secs=${4:-10}
db=${DB:-sqlite}; pg=${PG:-postgres://postgres@127.0.0.1:5432}
command -v wrk >/dev/null || { echo "wrk is required: apt-get install wrk" >&2; exit 1; }
sha=$(git rev-parse --verify "$rev^{commit}") || { echo "unknown revision: $rev" >&2; exit 1; }
short=${sha:0:9}
mkdir -p bench/.compare
base_bin=bench/.compare/medmesh-$short
if [ ! -x "$base_bin" ]; then
    src=bench/.compare/src
    [ -d "$src" ] || git worktree add -f --detach "$src" "$sha" >/dev/null
    git -C "$src" checkout -q --detach "$sha"
    echo "building $short ..." >&2
    # A target directory of its own: cargo names a workspace crate's artifacts by its path
    # relative to the workspace, so a worktree sharing target/ overwrote this checkout's
    # crates with REV's and each build then took the other's as up to date (a hybrid binary).
    # The first build here is a full one; later revisions reuse its dependencies.
    (cd "$src" && CARGO_TARGET_DIR="$PWD/../target" cargo build --release -q -p medmesh)
    cp bench/.compare/target/release/medmesh "$base_bin"
fi
echo "building the working tree ..." >&2
cargo build --release -q -p medmesh
cand_bin=bench/.compare/medmesh-working-tree
# CARGO_TARGET_DIR, when set, is where the working tree's build went.
cp "${CARGO_TARGET_DIR:-target}/release/medmesh" "$cand_bin"

data=bench/.compare/data-$copies
[ -d "$data" ] || python3 bench/replicate_synthea.py "$copies" "$data" >/dev/null
port=18190
results=bench/.compare/results.txt
: > "$results"

# One binary, one fresh store: import, then the three wrk workloads. Appends
# "NAME WORKLOAD VALUE P99" lines to $results.
run() {
    local name=$1 bin=$2 store=bench/.compare/store-$1
    rm -rf "$store"; mkdir -p "$store"
    local args=(--data-dir "$store")
    if [ "$db" = postgres ]; then
        psql "$pg/postgres" -qAtc "DROP DATABASE IF EXISTS medmesh_bench_compare WITH (FORCE)" >/dev/null
        psql "$pg/postgres" -qAtc "CREATE DATABASE medmesh_bench_compare" >/dev/null
        args+=(--database-url "$pg/medmesh_bench_compare")
    fi
    local rate
    rate=$(MEDMESH_LOG=warn "$bin" import "${args[@]}" "$data" | grep Imported \
        | sed -E 's/.*\(([0-9]+) resources\/s\).*/\1/')
    echo "$name import $rate -" >> "$results"
    MEDMESH_LOG=warn "$bin" serve "${args[@]}" --listen 127.0.0.1:$port > "$store/serve.out" 2>&1 &
    local node=$!
    for _ in $(seq 1 300); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.1; done
    local base=http://127.0.0.1:$port/fhir sys
    sys=$("$bin" admin token "${args[@]}" --scope 'system/*.*' --ttl 2h)
    local pid prac
    pid=$(curl -sf -H "Authorization: Bearer $sys" "$base/Patient?_count=1" | python3 -c 'import sys,json; print(json.load(sys.stdin)["entry"][0]["resource"]["id"])')
    prac=$(curl -sf -H "Authorization: Bearer $sys" "$base/Practitioner?_count=1" | python3 -c 'import sys,json; print(json.load(sys.stdin)["entry"][0]["resource"]["id"])')
    # The practitioner is on the patient's care team, and the patient has consents the
    # PDP must read: one that permits the practitioner, one that denies a category.
    curl -sf -o /dev/null -H "Authorization: Bearer $sys" -H 'Content-Type: application/fhir+json' "$base/CareTeam" \
        -d "{\"resourceType\":\"CareTeam\",\"status\":\"active\",\"subject\":{\"reference\":\"Patient/$pid\"},\"participant\":[{\"member\":{\"reference\":\"Practitioner/$prac\"}}]}"
    for c in \
        "{\"type\":\"permit\",\"actor\":[{\"role\":{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/v3-ParticipationType\",\"code\":\"PRCP\"}]},\"reference\":{\"reference\":\"Practitioner/$prac\"}}]}" \
        "{\"type\":\"deny\",\"class\":[{\"system\":\"http://hl7.org/fhir/resource-types\",\"code\":\"Immunization\"}]}"; do
        curl -sf -o /dev/null -H "Authorization: Bearer $sys" -H 'Content-Type: application/fhir+json' "$base/Consent" \
            -d "{\"resourceType\":\"Consent\",\"status\":\"active\",\"scope\":{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/consentscope\",\"code\":\"patient-privacy\"}]},\"category\":[{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"59284-0\"}]}],\"patient\":{\"reference\":\"Patient/$pid\"},\"provision\":{\"type\":\"permit\",\"provision\":[$c]}}"
    done
    echo "bench-password-1" | MEDMESH_LOG=warn "$bin" admin create-user "${args[@]}" --role practitioner \
        --username bench-doc --practitioner "$prac" --verification verified >/dev/null
    local doc
    doc=$("$bin" admin token "${args[@]}" --user bench-doc --scope 'user/*.rs' --ttl 2h)
    curl -sf -o /dev/null -H "Authorization: Bearer $doc" "$base/Patient/$pid" \
        || { echo "$name: the practitioner cannot read the patient" >&2; kill $node; exit 1; }
    measure() { # workload token url
        local out rps p99
        out=$(wrk -t2 -c64 -d"${secs}s" --latency -H "Authorization: Bearer $2" "$3")
        if grep -q 'Non-2xx' <<<"$out"; then echo "$name $1: non-2xx answers" >&2; kill $node; exit 1; fi
        rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
        p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
        echo "$name $1 $rps $p99" >> "$results"
    }
    measure reads "$sys" "$base/Patient/$pid"
    measure pract "$doc" "$base/Patient/$pid"
    measure search "$sys" "$base/Observation?patient=$pid&code=http://loinc.org%7C8302-2"
    kill $node; wait $node 2>/dev/null || true
    [ "$db" = postgres ] && psql "$pg/postgres" -qAtc "DROP DATABASE IF EXISTS medmesh_bench_compare WITH (FORCE)" >/dev/null
    rm -rf "$store"
}

for r in $(seq 1 "$rounds"); do
    echo "round $r of $rounds ..." >&2
    # The second binary of a round tends to run slower on this machine: alternate.
    if [ $((r % 2)) -eq 1 ]; then run base "$base_bin"; run new "$cand_bin"
    else run new "$cand_bin"; run base "$base_bin"; fi
done

python3 - "$results" "$short" "$db" "$copies" "$rounds" "$secs" <<'PY'
import statistics, sys
path, short, db, copies, rounds, secs = sys.argv[1:]
rows = [l.split() for l in open(path) if l.strip()]
def ms(v):
    if v == "-": return None
    for unit, f in (("ms", 1), ("us", 0.001), ("s", 1000)):
        if v.endswith(unit): return float(v[: -len(unit)]) * f
    return None
print(f"{db}, {copies} Synthea copies, {rounds} rounds, wrk 64 connections x {secs}s")
print(f"| workload | {short} | working tree | ratio |")
print("|---|---|---|---|")
names = {"import": "import, resources/s", "reads": "audited reads `Patient/[id]`, req/s",
         "pract": "practitioner reads `Patient/[id]`, req/s", "search": "search `Observation?patient&code`, req/s"}
for w in ("import", "reads", "pract", "search"):
    b = [float(r[2]) for r in rows if r[0] == "base" and r[1] == w]
    n = [float(r[2]) for r in rows if r[0] == "new" and r[1] == w]
    bp = [ms(r[3]) for r in rows if r[0] == "base" and r[1] == w if ms(r[3]) is not None]
    np_ = [ms(r[3]) for r in rows if r[0] == "new" and r[1] == w if ms(r[3]) is not None]
    if not b or not n: continue
    mb, mn = statistics.median(b), statistics.median(n)
    lat = lambda p: f", p99 {statistics.median(p):.1f} ms" if p else ""
    spread = lambda v: f" ({min(v):,.0f}–{max(v):,.0f})" if len(v) > 1 else ""
    # Ranges that overlap say the rounds cannot tell the two builds apart.
    overlap = max(min(b), min(n)) <= min(max(b), max(n))
    verdict = " (ranges overlap)" if overlap and len(b) > 1 else ""
    print(f"| {names[w]} | {mb:,.0f}{spread(b)}{lat(bp)} | {mn:,.0f}{spread(n)}{lat(np_)} | **{mn / mb:.2f}**{verdict} |")
print("(medians of the rounds, with each build's lowest and highest round; every figure is in bench/.compare/results.txt)")
PY
