#!/usr/bin/env bash
# `medmesh audit verify` on one SQLite audit log with two binaries, alternating ROUNDS times,
# beside `sha256sum` of the database file (a peer that reads and hashes every byte once, with
# no parsing or tree), in entries/s.
#   bench/audit-verify.sh BASELINE_BIN CANDIDATE_BIN [ENTRIES] [ROUNDS]
# The log is the one the criterion bench builds through the real append path, kept in
# target/audit-bench-ENTRIES (built here first if missing: ~55 s per million entries). Its WAL
# is checkpointed, as a node's is every 64 MB, and each binary verifies a copy of its own
# (opening a store migrates it, and an older binary refuses a newer schema).
set -euo pipefail
cd "$(dirname "$0")/.."
base=$1; cand=$2; entries=${3:-1000000}; rounds=${4:-5}
dir=target/audit-bench-$entries
if [ ! -f "$dir/medmesh.db" ]; then
    AUDIT_BENCH_ENTRIES=$entries cargo bench -p medmesh-audit-log --bench audit_log -- zzz-build-only >/dev/null
fi
python3 -c "import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute('PRAGMA wal_checkpoint(TRUNCATE)')" "$dir/medmesh.db"
work=$(mktemp -d "$dir.XXXX"); trap 'rm -rf "$work"' EXIT
cp -r "$dir" "$work/base"; cp -r "$dir" "$work/cand"
rate() {
    MEDMESH_LOG=warn "$1" audit verify --data-dir "$2" | sed -nE 's/.*\(([0-9.]+)s, ([0-9]+) entries\/s\).*/\2/p'
}
peer() {
    local t0 t1
    t0=$(date +%s.%N); sha256sum "$dir/medmesh.db" >/dev/null; t1=$(date +%s.%N)
    python3 -c "print(int($entries/($t1-$t0)))"
}
for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) -eq 1 ]; then b=$(rate "$base" "$work/base"); c=$(rate "$cand" "$work/cand"); else c=$(rate "$cand" "$work/cand"); b=$(rate "$base" "$work/base"); fi
    p=$(peer)
    echo "round $r: baseline $b, candidate $c, sha256sum of the file $p entries/s; candidate/baseline $(python3 -c "print(f'{$c/$b:.2f}')"), candidate/sha256sum $(python3 -c "print(f'{$c/$p:.2f}')")"
done
