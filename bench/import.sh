#!/usr/bin/env bash
# Import throughput of `medmesh import`, in resources/s, on SQLite and on PostgreSQL.
#   bench/import.sh [COPIES]   (default 40 copies of the Synthea patients, ~39k resources)
# Needs a release build (cargo build --release) and PostgreSQL on 127.0.0.1:5432.
set -euo pipefail
cd "$(dirname "$0")/.."
copies=${1:-40}
bin=target/release/medmesh
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"; psql "${PG:-postgres://postgres@127.0.0.1:5432}/postgres" -qAtc "DROP DATABASE IF EXISTS medmesh_bench_import WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
python3 bench/replicate_synthea.py "$copies" "$work/data"
echo "== SQLite"
MEDMESH_LOG=warn "$bin" import --data-dir "$work/sqlite" "$work/data" | grep Imported
pg=${PG:-postgres://postgres@127.0.0.1:5432}
psql "$pg/postgres" -qAtc "DROP DATABASE IF EXISTS medmesh_bench_import WITH (FORCE)" >/dev/null
psql "$pg/postgres" -qAtc "CREATE DATABASE medmesh_bench_import" >/dev/null
echo "== PostgreSQL"
MEDMESH_LOG=warn "$bin" import --data-dir "$work/pg" --database-url "$pg/medmesh_bench_import" "$work/data" | grep Imported
