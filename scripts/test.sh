#!/usr/bin/env bash
# The whole test suite: quality gates (ruff, mypy), then unit, integration (real servers) and e2e tiers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export PYTHONDONTWRITEBYTECODE=1
# Small matrix products in tests run 15-30x slower with OpenBLAS threads fighting over 2 cores.
export OPENBLAS_NUM_THREADS=1
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$PWD/.numba_cache}"
echo "==> ruff"
.venv/bin/ruff check .
echo "==> mypy"
.venv/bin/mypy symtwin twin controllers adapters sim
echo "==> pytest"
.venv/bin/pytest -m "not slow" "$@"
