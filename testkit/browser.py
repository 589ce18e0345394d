"""Debian's Chromium for the browser tests: where it is, and the check that skips a test without it (or fails it
where VIDSENT_REQUIRE_BROWSER says it must be there, as in CI)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def need_browser() -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("VIDSENT_REQUIRE_BROWSER"):
            pytest.fail(f"Chromium is required here (VIDSENT_REQUIRE_BROWSER=1) but {CHROMIUM} is missing")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)")
    pytest.importorskip("playwright.async_api")
