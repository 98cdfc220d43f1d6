#!/usr/bin/env bash
# The document vault's own cost per byte, apart from the disk: the node's CPU seconds (user and
# system, from /proc) and wall time to upload a generated document of MB megabytes with
# `curl -T` to POST /fhir/Binary and to download it again to /dev/null, with nothing dropped
# from the page cache. `bench/vault.sh` measures against `cp` with a cold cache, where this
# machine's disk swings the figures by 2x from round to round; this measures the node's work.
#   bench/vault-cpu.sh [MB] [ROUNDS] BIN [BIN ...]   (default 1024 MB, 4 rounds)
# With several binaries each runs a node of its own, and every round measures each in turn,
# the order alternating. Needs release builds and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-1024}; rounds=${2:-4}; bins=("${@:3}")
[ ${#bins[@]} -gt 0 ] || bins=("$PWD/target/release/medmesh")
# shellcheck source=bench/vault-nodes.sh
source bench/vault-nodes.sh
# utime and stime of the node, in clock ticks.
ticks() { awk '{print $14, $15}' "/proc/${node_pids[$1]}/stat"; }
hz=$(getconf CLK_TCK)
now() { date +%s.%N; }
echo "file: $size bytes; node CPU seconds per GiB (user + system), MB/s"
for r in $(seq 1 "$rounds"); do
    order=("${!bins[@]}")
    if (( r % 2 == 0 )); then order=($(printf '%s\n' "${order[@]}" | tac)); fi
    for i in "${order[@]}"; do
        base=${bases[$i]}; token=${tokens[$i]}
        printf '%%PDF-1.7\n%% round %s node %s\n' "$r" "$i" | dd of="$work/doc.pdf" conv=notrunc status=none
        read -r u0 s0 < <(ticks "$i"); t0=$(now)
        curl -sS --fail-with-body -H "Authorization: Bearer $token" -H 'content-type: application/pdf' \
            -H 'x-security-context: Patient/bench' -T "$work/doc.pdf" -X POST "$base/fhir/Binary" > "$work/up.json" \
            || { cat "$work/up.json" "$work/serve$i.err" >&2; exit 1; }
        t1=$(now); read -r u1 s1 < <(ticks "$i")
        id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$work/up.json")
        read -r u2 s2 < <(ticks "$i"); t2=$(now)
        curl -sf -H "Authorization: Bearer $token" -o /dev/null "$base/fhir/Binary/$id"
        t3=$(now); read -r u3 s3 < <(ticks "$i")
        python3 -c "
g = $size / 2**30
up = (($u1 - $u0) + ($s1 - $s0)) / $hz / g
down = (($u3 - $u2) + ($s3 - $s2)) / $hz / g
print(f'round $r node $i: upload {up:.2f} s/GiB (user {($u1-$u0)/$hz/g:.2f}) {$size/($t1-$t0)/1e6:.0f} MB/s   download {down:.2f} s/GiB (user {($u3-$u2)/$hz/g:.2f}) {$size/($t3-$t2)/1e6:.0f} MB/s')"
    done
done
