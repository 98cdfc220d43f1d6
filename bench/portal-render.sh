#!/usr/bin/env bash
# How fast the portal's pages render for a patient with a long record: one Synthea patient
# grown to about 5,000 resources (bench/big_patient.py), signed in as that patient, then
# every page that reads the record under wrk (one connection; four for the heaviest), with
# latency percentiles: the patient's own pages, and the clinician's chart of that patient (a
# practitioner of its visits, TOTP enrolled by bench/portal_sign_in.py). Also prints the bytes
# of script and stylesheet the pages ship.
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
session=$(python3 bench/portal_sign_in.py "$base" bench 'a long enough passphrase')
# A clinician on the patient's care team: the practitioner of the patient's encounters, made
# a member by a CareTeam (docs/consent.md), with an account (TOTP enrolled at the first
# sign-in, as the portal requires).
gp=$(curl -sf -H "Authorization: Bearer $token" "$base/fhir/Encounter?patient=$pid&_count=1" \
    | python3 -c 'import sys,json; e=json.load(sys.stdin)["entry"][0]["resource"]; print(next(p["individual"]["reference"] for p in e["participant"] if p.get("individual",{}).get("reference","").startswith("Practitioner/")).split("/")[1])')
curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/fhir+json' -o /dev/null "$base/fhir/CareTeam" \
    -d "{\"resourceType\":\"CareTeam\",\"status\":\"active\",\"subject\":{\"reference\":\"Patient/$pid\"},\"participant\":[{\"member\":{\"reference\":\"Practitioner/$gp\"}}]}"
echo 'a long enough passphrase' | MEDMESH_LOG=warn "$bin" admin create-user --data-dir "$store" --role practitioner \
    --username bench-gp --practitioner "$gp" --verification verified > /dev/null
gp_session=$(python3 bench/portal_sign_in.py "$base" bench-gp 'a long enough passphrase' "$store/gp.totp")
# Kept beside the store for bench/portal-pair.sh, which measures two builds on it: the patient's
# session (it lives in the store and outlasts the node), and the clinician's TOTP key (a
# clinician's session does not outlast a restart, so it signs in again on each node).
echo "$pid" > "$store/patient.id"; echo "$session" > "$store/patient.session"
. bench/portal-wrk.sh
measure() { # PAGE SESSION CONNECTIONS WHO [SHOWN AS]
    local figures rps p50 p99
    figures=$(portal_wrk "$base$1" "$2" "$3" "$secs") || exit 1
    read -r rps p50 p99 <<< "$figures"
    printf "%-32s c=%s %8s req/s  p50 %7.2f ms  p99 %7.2f ms\n" "$4 ${5:-$1}" "$3" "$rps" "$p50" "$p99"
}
echo "portal render, patient with $n resources, SQLite, ${secs}s each; 1 connection (one user), and 4 for the two heaviest pages"
for page in /record /home; do
    for c in 1 4; do measure "$page" "$session" "$c" patient; done
done
for page in /sharing /account/audit /documents /my-data /medications /appointments /care /glucose /account; do
    measure "$page" "$session" 1 patient
done
for page in "" /care /glucose; do
    measure "/patients/$pid$page" "$gp_session" 1 clinician "/patients/{id}$page"
done
measure "/patients/$pid" "$gp_session" 4 clinician "/patients/{id}"
html=$(curl -sf -H "Cookie: medmesh_session=$session" "$base/record" | wc -c)
js=$(curl -sf "$base/static/portal.js" | wc -c); css=$(curl -sf "$base/static/portal.css" | wc -c)
sw=$(curl -sf "$base/sw.js" | wc -c)
echo "shipped: /record HTML $html bytes; portal.js $js bytes, portal.css $css bytes, sw.js $sw bytes (uncompressed)"
