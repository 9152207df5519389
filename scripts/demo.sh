#!/usr/bin/env bash
# The main job: the reference park in simulation-only mode on embedded defaults (no external server):
# a virtual plant on loopback OPC UA, the service against it, and the live view on http://127.0.0.1:8080/.
# Extra arguments go to `symtwin sim` (e.g. make demo ARGS="--speed 600 --duration 24h").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$PWD/.numba_cache}"
.venv/bin/symtwin validate configs/kalundborg.yaml > /dev/null
exec .venv/bin/symtwin sim configs/kalundborg.yaml "$@"
