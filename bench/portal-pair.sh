#!/usr/bin/env bash
# Two builds side by side on the store bench/portal-render.sh left (one Synthea patient grown to
# about 5,000 resources, with the patient's and a clinician's sessions): per round, each build
# in turn (the order alternating) serves the store, and the patient's `/record` and the
# clinician's chart of that patient are each measured under wrk with one connection (one user).
# Prints each round, then each build's median p50 and p99 and the ratio of their request rates.
#   bench/portal-pair.sh BASE_BIN NEW_BIN [ROUNDS] [SECONDS]
# Run bench/portal-render.sh once first (it builds the store, signs the patient in and keeps the
# clinician bench-gp's TOTP key; MEDMESH_BIN picks its binary). GP_USER names another clinician.
set -euo pipefail
cd "$(dirname "$0")/.."
base_bin=$1; new_bin=$2; rounds=${3:-3}; secs=${4:-8}
store=bench/.portal-render
for f in patient.id patient.session gp.totp medmesh.db; do
    [ -f "$store/$f" ] || { echo "$store/$f is missing: run bench/portal-render.sh first" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "wrk is required: apt-get install wrk" >&2; exit 1; }
pid=$(cat "$store/patient.id"); session=$(cat "$store/patient.session")
url=http://127.0.0.1:18184
out=$(mktemp)
node=
stop() { [ -n "$node" ] && { kill "$node" 2>/dev/null; wait "$node" 2>/dev/null || true; }; node=; }
trap 'stop; rm -f "$out"' EXIT
. bench/portal-wrk.sh
measure() { # NAME BUILD PAGE SESSION
    local figures
    figures=$(portal_wrk "$url$3" "$4" 1 "$secs") || { echo "$2: $3 could not be measured" >&2; exit 1; }
    echo "$1 $2 $figures" | tee -a "$out"
}
echo "page build req/s p50_ms p99_ms (one user, ${secs}s each)"
for round in $(seq 1 "$rounds"); do
    if [ $((round % 2)) = 1 ]; then order="base new"; else order="new base"; fi
    for build in $order; do
        if [ "$build" = base ]; then bin=$base_bin; else bin=$new_bin; fi
        MEDMESH_LOG=warn "$bin" serve --data-dir "$store" --listen 127.0.0.1:18184 > "$store/pair.out" 2>&1 &
        node=$!
        for _ in $(seq 1 200); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.1; done
        curl -sf "$url/healthz" >/dev/null || { echo "$build: the node did not start (see $store/pair.out)" >&2; exit 1; }
        gp_session=$(python3 bench/portal_sign_in.py "$url" "${GP_USER:-bench-gp}" 'a long enough passphrase' "$store/gp.totp")
        measure /record "$build" /record "$session"
        measure chart "$build" "/patients/$pid" "$gp_session"
        stop
    done
done
python3 - "$out" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for page in dict.fromkeys(r[0] for r in rows):
    by = {b: [r for r in rows if r[0] == page and r[1] == b] for b in ("base", "new")}
    med = {b: [statistics.median(float(r[i]) for r in by[b]) for i in (2, 3, 4)] for b in by}
    print(f"{page}: base {med['base'][0]:.1f} req/s, p50 {med['base'][1]:.1f} ms, p99 {med['base'][2]:.1f} ms; "
          f"new {med['new'][0]:.1f} req/s, p50 {med['new'][1]:.1f} ms, p99 {med['new'][2]:.1f} ms; "
          f"rate ratio {med['new'][0] / med['base'][0]:.2f}")
PY
