#!/usr/bin/env bash
# The main job: the reference park in simulation-only mode on embedded defaults (no external server).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$PWD/.numba_cache}"
exec .venv/bin/symtwin validate configs/kalundborg.yaml "$@"
