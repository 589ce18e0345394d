#!/usr/bin/env bash
# The habits, checked: ruff (lint), mypy (types, basic mode), lint-imports (which room may import which), all
# configured in pyproject.toml. Installs the pinned tools (requirements-dev.txt) into .venv first; run
# scripts/setup.sh before. The same checks run as a pre-commit hook (.pre-commit-config.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0 -r requirements-dev.txt 2>&1 \
  | grep -v "^WARNING: Location" || true
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== import contracts"
.venv/bin/lint-imports
