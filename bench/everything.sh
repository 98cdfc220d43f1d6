#!/usr/bin/env bash
# $everything on a patient with 100k resources: imports 100k Observations for one patient, then
# walks every page (_count=1000) and reports the slowest page and the total time.
#   bench/everything.sh [sqlite|postgres] [N]
set -euo pipefail
cd "$(dirname "$0")/.."
db=${1:-sqlite}; n=${2:-100000}
bin=target/release/medmesh
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d)
args=(--data-dir "$work/store")
pg=${PG:-postgres://postgres@127.0.0.1:5432}
if [ "$db" = postgres ]; then
    psql "$pg/postgres" -qAtc "DROP DATABASE IF EXISTS medmesh_bench_everything WITH (FORCE)" >/dev/null
    psql "$pg/postgres" -qAtc "CREATE DATABASE medmesh_bench_everything" >/dev/null
    args+=(--database-url "$pg/medmesh_bench_everything")
fi
trap 'kill $node 2>/dev/null; wait $node 2>/dev/null; rm -rf "$work"' EXIT
python3 - "$n" "$work/obs.ndjson" <<'PY'
import json, sys
n, out = int(sys.argv[1]), sys.argv[2]
with open(out, "w") as f:
    f.write(json.dumps({"resourceType": "Patient", "id": "big", "name": [{"family": "Big"}]}) + "\n")
    for i in range(n):
        f.write(json.dumps({"resourceType": "Observation", "id": f"o{i}", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}, "subject": {"reference": "Patient/big"},
            "effectiveDateTime": f"2020-01-01T00:{(i // 60) % 60:02d}:{i % 60:02d}Z", "valueQuantity": {"value": 60 + i % 40, "unit": "/min"}}) + "\n")
PY
MEDMESH_LOG=warn "$bin" import "${args[@]}" "$work/obs.ndjson" | head -1
MEDMESH_LOG=warn "$bin" serve "${args[@]}" --listen 127.0.0.1:18182 > "$work/serve.out" 2>&1 &
node=$!
for _ in $(seq 1 200); do curl -sf http://127.0.0.1:18182/healthz >/dev/null && break; sleep 0.1; done
token=$("$bin" admin token "${args[@]}" --scope 'system/*.*')
python3 - "$token" <<'PY'
import json, sys, time, urllib.request
token = sys.argv[1]
url = "http://127.0.0.1:18182/fhir/Patient/big/$everything?_count=1000"
pages = total = 0
slowest = 0.0
start = time.time()
while url:
    t = time.time()
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    b = json.load(urllib.request.urlopen(req))
    slowest = max(slowest, time.time() - t)
    pages += 1
    total += len(b.get("entry", []))
    url = next((l["url"] for l in b["link"] if l["relation"] == "next"), None)
print(f"$everything: {total} resources in {pages} pages, {time.time() - start:.1f}s total, slowest page {slowest * 1000:.0f} ms")
PY
