#!/usr/bin/env bash
# HL7 v2 parse throughput on the shared samples, in one run: medmesh-hl7v2 and the
# hl7-parser crate (criterion, crates/medmesh-hl7v2/benches/parse.rs), then the Python `hl7`
# and hl7apy packages, on the same messages (those every parser accepts). Messages/s, one
# core each, and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
work="$PWD/bench/.hl7-parse"
mkdir -p "$work"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check hl7==0.4.5 hl7apy==1.3.5
.venv/bin/python bench/hl7_parse.py --prepare "$work/python-ok.txt"
if ! HL7_BENCH_CORPUS="$work/python-ok.txt" HL7_BENCH_KEPT="$work/all-ok.txt" \
    cargo bench -q -p medmesh-hl7v2 --bench parse -- --warm-up-time 2 --measurement-time "$seconds" \
    > "$work/criterion.txt" 2>&1; then
    cat "$work/criterion.txt" >&2
    echo "bench/hl7-parse.sh: the Rust benchmark failed" >&2
    exit 1
fi
grep -E "^hl7v2-parse/|^ +thrpt" "$work/criterion.txt" | awk "NR % 3 != 0"
echo "messages: $(grep -c '^MSH' <(tr '\r' '\n' < "$work/all-ok.txt"))"
.venv/bin/python bench/hl7_parse.py --time "$work/all-ok.txt" "$seconds" | tee "$work/python.txt"
