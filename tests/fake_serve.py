"""`vidsent serve` as the command line runs it, but with testkit's fake engine (no model loads): for tests that
drive a serve subprocess and care about the server, not the models.

    python tests/fake_serve.py serve --port P --media-dir DIR [--history PATH|off] ...
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cli  # noqa: E402
from app import compose  # noqa: E402
from testkit.fakes import fake_engine  # noqa: E402

compose.build_engine = lambda args: fake_engine()

if __name__ == "__main__":
    raise SystemExit(cli.main(sys.argv[1:]))
