#!/usr/bin/env bash
# The document vault's streaming, measured against a plain `cp` of the same file on the same
# disk, in one run:
#   - upload: `curl -T FILE -X POST` (streamed from the file) to POST /fhir/Binary (hashed, sniffed, sealed in
#     64 KiB AES-256-GCM chunks, written to the local blob folder), then `sync`;
#   - download: GET /fhir/Binary/{id} to a file (opened chunk by chunk, digest checked before
#     the last chunk leaves), then `sync`;
#   - cp FILE COPY, then `sync`;
#   - the peers that do what the node does with no HTTP and no database, in the same round:
#     `openssl enc -aes-256-ctr` of the file to a file on the same disk, then `sync` (read,
#     encrypt, write), and `sha256sum` of the file (read and hash);
#   - the node's peak resident memory (VmHWM) before and after.
#   bench/vault.sh [MEGABYTES] [ROUNDS] [BIN ...]   (default 2048 MB, 3 rounds,
#   target/release/medmesh). With several binaries (say the previous main's and this one),
#   each runs a node of its own and every round measures each of them in turn, beside the
#   same `cp` and peers.
# Needs a release build (cargo build --release), curl and openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-2048}
rounds=${2:-3}
bins=("${@:3}")
[ ${#bins[@]} -gt 0 ] || bins=("$PWD/target/release/medmesh")
command -v openssl >/dev/null || { echo "openssl is required" >&2; exit 1; }
# shellcheck source=bench/vault-nodes.sh
source bench/vault-nodes.sh
hwm() { awk '/VmHWM/ {print $2}' "/proc/${node_pids[$1]}/status"; }
secs() { python3 -c "import time; print(time.monotonic())"; }
mbps() { python3 -c "print(f'{$size / ($2 - $1) / 1e6:.0f}')"; }

echo "file: $size bytes"
for i in "${!bins[@]}"; do echo "node $i (${bins[$i]}): peak memory at start $(( $(hwm "$i") / 1024 )) MiB"; done
# Page-cache state decides `cp`'s speed; drop it before each measurement where allowed (root).
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
for r in $(seq 1 "$rounds"); do
    drop_caches
    t0=$(secs); cp "$work/doc.pdf" "$work/copy.pdf"; sync; t1=$(secs)
    rm -f "$work/copy.pdf"
    drop_caches
    t5=$(secs)
    openssl enc -aes-256-ctr -K "$(printf '%064d' 0)" -iv "$(printf '%032d' 0)" \
        -in "$work/doc.pdf" -out "$work/enc.bin"
    sync; t6=$(secs)
    rm -f "$work/enc.bin"
    drop_caches
    t7=$(secs); sha256sum "$work/doc.pdf" > /dev/null; t8=$(secs)
    cp_rate=$(mbps "$t0" "$t1"); enc=$(mbps "$t5" "$t6"); hash=$(mbps "$t7" "$t8")
    echo "round $r: cp $cp_rate MB/s  openssl enc $enc MB/s  sha256sum $hash MB/s"
    # Each node in turn, the order alternating from round to round.
    order=("${!bins[@]}")
    if (( r % 2 == 0 )); then order=($(printf '%s\n' "${order[@]}" | tac)); fi
    for i in "${order[@]}"; do
        base=${bases[$i]}; token=${tokens[$i]}
        # A distinct first line each upload, so none is deduplicated against the last.
        printf '%%PDF-1.7\n%% round %s node %s\n' "$r" "$i" | dd of="$work/doc.pdf" conv=notrunc status=none
        drop_caches
        t2=$(secs)
        curl -sS --fail-with-body -H "Authorization: Bearer $token" -H 'content-type: application/pdf' \
            -H 'x-security-context: Patient/bench' -T "$work/doc.pdf" -X POST "$base/fhir/Binary" > "$work/up.json" \
            || { cat "$work/up.json" "$work/serve$i.err" >&2; exit 1; }
        id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$work/up.json")
        sync; t3u=$(secs)
        drop_caches
        t3=$(secs)
        curl -sf -H "Authorization: Bearer $token" -o "$work/down.pdf" "$base/fhir/Binary/$id"
        sync; t4=$(secs)
        cmp -s "$work/doc.pdf" "$work/down.pdf" || { echo "the download differs" >&2; exit 1; }
        rm -f "$work/down.pdf"
        up=$(mbps "$t2" "$t3u"); down=$(mbps "$t3" "$t4")
        python3 -c "print(f'  node $i: upload {$up} MB/s ({$up/$cp_rate:.2f} of cp, {$up/$enc:.2f} of openssl enc)  download {$down} MB/s ({$down/$cp_rate:.2f} of cp, {$down/$enc:.2f} of openssl enc)')"
    done
done
for i in "${!bins[@]}"; do echo "node $i: peak memory after $(( $(hwm "$i") / 1024 )) MiB"; done
