#!/usr/bin/env bash
# Encryption at rest, measured two ways in one run:
#   1. AES-256-GCM envelopes (criterion, medmesh-crypto) beside `openssl speed -evp aes-256-gcm`;
#   2. `medmesh import` throughput with encryption and blind indexes on, against off, on SQLite,
#      alternating runs so both see the same machine state.
#   bench/encryption.sh [COPIES] [ROUNDS]   (default 20 copies of the Synthea patients, 3 rounds)
# Needs a release build (cargo build --release) and openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
copies=${1:-20}
rounds=${2:-3}
bin=target/release/medmesh
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v openssl >/dev/null || { echo "openssl is required" >&2; exit 1; }

echo "== AEAD: openssl speed -evp aes-256-gcm (bytes/s per block size)"
openssl speed -evp aes-256-gcm -bytes 1024 -seconds 2 2>/dev/null | tail -1
openssl speed -evp aes-256-gcm -bytes 16384 -seconds 2 2>/dev/null | tail -1
echo "== AEAD: medmesh envelopes (criterion)"
cargo bench -q -p medmesh-crypto --bench envelope -- --noplot 2>/dev/null | grep -E "^envelope|thrpt|blind-index|time:" || true

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 bench/replicate_synthea.py "$copies" "$work/data"
rate() { sed -n 's/.*(\([0-9.]*\) resources\/s).*/\1/p'; }
echo "== import, SQLite: encryption off vs on (resources/s)"
for r in $(seq 1 "$rounds"); do
    rm -rf "$work/off" "$work/on"
    off=$(MEDMESH_LOG=warn MEDMESH_ENCRYPTION_AT_REST=false "$bin" import --data-dir "$work/off" "$work/data" | grep Imported | rate)
    on=$(MEDMESH_LOG=warn MEDMESH_ENCRYPTION_AT_REST=true "$bin" import --data-dir "$work/on" "$work/data" | grep Imported | rate)
    python3 -c "print(f'round $r: off {float(\"$off\"):.0f}  on {float(\"$on\"):.0f}  ratio {float(\"$on\")/float(\"$off\"):.2f}')"
done
