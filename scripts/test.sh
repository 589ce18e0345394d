#!/usr/bin/env bash
# Runs the test suite (real media from ../shared/data; tests that need it skip with a reason when it is absent).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec .venv/bin/python -m pytest -q -ra tests "$@"
