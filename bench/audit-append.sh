#!/usr/bin/env bash
# Audit appends through the real path (`RecordStore::append_audit`, as the group-commit
# writer calls it), REV against the working tree, side by side, alternating the order:
#   bench/audit-append.sh REV [ENTRIES] [ROUNDS] [BATCH] [PATIENTS]
# Each round appends ENTRIES (default 1,000,000) in batches of BATCH (10,000) over PATIENTS
# (50,000) into a fresh SQLite log, with each binary; prints entries/s per round, the
# medians and their ratio. The bench (crates/medmesh-audit-log/benches/audit_append.rs)
# uses only API older than the patient chains, so the same file runs on REV: it is copied
# into REV's worktree under bench/.compare, built with a target directory of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench/audit-append.sh REV [ENTRIES] [ROUNDS] [BATCH] [PATIENTS]" >&2; exit 2; }
rev=$1; entries=${2:-1000000}; rounds=${3:-3}; batch=${4:-10000}; patients=${5:-50000}
sha=$(git rev-parse --verify "$rev^{commit}") || { echo "unknown revision: $rev" >&2; exit 1; }
short=${sha:0:9}
mkdir -p bench/.compare
src=bench/.compare/src
[ -d "$src" ] || git worktree add -f --detach "$src" "$sha" >/dev/null
git -C "$src" checkout -q -f --detach "$sha"
cp crates/medmesh-audit-log/benches/audit_append.rs "$src/crates/medmesh-audit-log/benches/"
grep -q 'name = "audit_append"' "$src/crates/medmesh-audit-log/Cargo.toml" \
    || printf '\n[[bench]]\nname = "audit_append"\nharness = false\n' >> "$src/crates/medmesh-audit-log/Cargo.toml"
echo "building $short and the working tree ..." >&2
bench_bin() { # the bench executable cargo built, from its JSON messages
    cargo bench -q --no-run -p medmesh-audit-log --bench audit_append --message-format=json "$@" 2>/dev/null \
        | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "audit_append":
        print(m["executable"])'
}
base=$(cd "$src" && CARGO_TARGET_DIR="$PWD/../target" bench_bin)
cand=$(bench_bin)
# The worktree's edits are the bench's only: put REV's files back.
git -C "$src" checkout -q -f --detach "$sha"
[ -x "$base" ] && [ -x "$cand" ] || { echo "the bench did not build" >&2; exit 1; }

results=$(mktemp)
run() { # NAME BIN
    local rate
    rate=$(APPEND_ENTRIES=$entries APPEND_BATCH=$batch APPEND_PATIENTS=$patients "$2" | sed -n 's/.*= \([0-9]*\) entries\/s/\1/p')
    echo "$1 $rate" >> "$results"
    printf '  %-13s %8s entries/s\n' "$1" "$rate"
}
for r in $(seq 1 "$rounds"); do
    echo "round $r" >&2
    if [ $((r % 2)) = 1 ]; then run "$short" "$base"; run working-tree "$cand"
    else run working-tree "$cand"; run "$short" "$base"; fi
done
python3 - "$results" "$short" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = lambda n: statistics.median(int(v) for k, v in rows if k == n)
lo_hi = lambda n: (min(int(v) for k, v in rows if k == n), max(int(v) for k, v in rows if k == n))
b, c = med(sys.argv[2]), med("working-tree")
print(f"append, entries/s: {sys.argv[2]} {b:,.0f} {lo_hi(sys.argv[2])}  working tree {c:,.0f} {lo_hi('working-tree')}  ratio {c / b:.2f}")
PY
rm -f "$results"
