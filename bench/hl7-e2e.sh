#!/usr/bin/env bash
# HL7 v2 end to end over MLLP (persist sealed, map, apply, audit, acknowledge) with 4
# concurrent senders on SQLite, with the release build: messages/s.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
senders=${2:-4}
[ -x target/release/medmesh ] || { echo "build it first: cargo build --release" >&2; exit 1; }
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check hl7==0.4.5
.venv/bin/python bench/hl7_e2e.py target/release/medmesh "$seconds" "$senders"
