# Sourced by vault.sh and vault-cpu.sh: checks the binaries, makes a work folder (removed on
# exit, with the nodes), writes the document ($work/doc.pdf, $size bytes), and starts one node
# per binary with a patient to file documents under ($bases, $tokens, $node_pids).
# Expects $mb and the array $bins to be set, and the current folder to be the repository's.
for bin in "${bins[@]}"; do
    [ -x "$bin" ] || { echo "build first: cargo build --release ($bin is missing)" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "curl is required" >&2; exit 1; }

work=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
node_pids=()
cleanup() { for p in "${node_pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$work"; }
trap cleanup EXIT

# A PDF-looking file of random bytes (so nothing compresses or dedupes).
{ printf '%%PDF-1.7\n'; head -c "$((mb * 1024 * 1024 - 9))" /dev/urandom; } > "$work/doc.pdf"
size=$(stat -c %s "$work/doc.pdf")

export MEDMESH_LOG=warn
bases=(); tokens=()
for i in "${!bins[@]}"; do
    bin=${bins[$i]}
    "$bin" serve --data-dir "$work/node$i" --listen 127.0.0.1:0 > "$work/serve$i.out" 2> "$work/serve$i.err" &
    node_pids+=($!)
    for _ in $(seq 1 300); do grep -q "listening on" "$work/serve$i.out" 2>/dev/null && break; sleep 0.1; done
    base=$(sed -n 's/^medmesh listening on //p' "$work/serve$i.out")
    [ -n "$base" ] || { cat "$work/serve$i.err" >&2; exit 1; }
    token=$("$bin" admin token --data-dir "$work/node$i" --scope 'system/*.*')
    curl -sf -H "Authorization: Bearer $token" -H 'content-type: application/fhir+json' \
        -X PUT "$base/fhir/Patient/bench" -d '{"resourceType":"Patient","id":"bench"}' > /dev/null
    bases+=("$base"); tokens+=("$token")
done
