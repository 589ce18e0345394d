"""What a process of each door loads. Which room may import which is checked by the import contracts in
pyproject.toml ([tool.importlinter], `lint-imports`, run by .ci/run before the tests); these check what the doors
actually load."""

from __future__ import annotations

import subprocess
import sys

from testkit.data import ROOT


def loaded_after(code: str, watched: set[str]) -> list[str]:
    """The modules of `watched` that are loaded once `code` has run in a fresh interpreter."""
    probe = f"import sys\n{code}\nprint(sorted(m for m in sys.modules if m in {sorted(watched)!r}))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - our own probe's printed list


def test_the_server_starts_without_sklearn_scipy_or_pyarrow():
    code = "import cli; cli.build_parser(); import server, engine, stream.webrtc"
    assert loaded_after(code, {"sklearn", "scipy", "pyarrow"}) == []


def test_vidsent_analyze_does_not_load_the_websocket_server():
    code = "import cli; args = cli.build_parser().parse_args(['analyze', 'clip.mp4']); import commands.analyze"
    server_parts = {"server", "service.handler", "service.hub", "service.serving", "websockets.asyncio.server"}
    assert loaded_after(code, server_parts) == []
