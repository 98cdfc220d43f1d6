#!/usr/bin/env bash
# `medmesh import` of the same replicated Synthea data with two binaries, one after the other,
# on SQLite, alternating ROUNDS times; prints resources/s of each and the ratio.
#   bench/import-pair.sh BASELINE_BIN CANDIDATE_BIN [COPIES] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
base=$1; cand=$2; copies=${3:-40}; rounds=${4:-2}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
python3 bench/replicate_synthea.py "$copies" "$work/data" >/dev/null
rate() {
    rm -rf "$work/store"
    MEDMESH_LOG=warn "$1" import --data-dir "$work/store" "$work/data" | grep Imported \
        | sed -E 's/.*\(([0-9]+) resources\/s\).*/\1/'
}
for r in $(seq 1 "$rounds"); do
    b=$(rate "$base"); c=$(rate "$cand")
    echo "round $r: baseline $b res/s, candidate $c res/s, ratio $(python3 -c "print(f'{$c/$b:.2f}')")"
done
