"""The rooms of the code: the live path never reaches into training, and a serving process starts without the
training libraries."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

LIVE = [ROOT / "server.py", ROOT / "pipeline.py", ROOT / "protocol.py", *sorted((ROOT / "stream").glob("*.py")),
        *sorted(p for p in (ROOT / "models").glob("*.py")), *sorted((ROOT / "monitor").glob("*.py"))]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_live_module_imports_training():
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.startswith("models.training"))
                 for p in LIVE}
    assert not {k: v for k, v in offenders.items() if v}


def test_training_modules_do_not_import_each_other_in_a_circle():
    folder = ROOT / "models" / "training"
    graph = {p.stem: {m.split(".")[-1] for m in imported_modules(p) if m.startswith("models.training.")}
             for p in folder.glob("*.py") if p.stem != "__init__"}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        return any(n == target or (n not in seen and reaches(n, target, seen | {n})) for n in graph.get(start, ()))

    circles = [name for name in graph if reaches(name, name, {name})]
    assert not circles, graph


def test_the_server_starts_without_sklearn_scipy_or_pyarrow():
    code = ("import sys, cli; cli.build_parser(); import server, pipeline, stream.webrtc; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'pyarrow'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
