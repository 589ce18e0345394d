"""Debian's Chromium for the browser tests: where it is, the check that skips a test without it (or fails it where
VIDSENT_REQUIRE_BROWSER says it must be there, as in CI), and a headless browser with one page whose console errors
(and requests) are collected. Screenshots go to out/test-artifacts/ (or $VIDSENT_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from testkit.data import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("VIDSENT_TEST_ARTIFACTS", ROOT / "out" / "test-artifacts"))


def need_browser() -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("VIDSENT_REQUIRE_BROWSER"):
            pytest.fail(f"Chromium is required here (VIDSENT_REQUIRE_BROWSER=1) but {CHROMIUM} is missing")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)")
    pytest.importorskip("playwright.async_api")


def chromium_args(camera: tuple[Path, Path] | None = None) -> list[str]:
    """Headless Chromium's flags for the tests; with `camera` (a .y4m video and a .wav), its fake camera and
    microphone play those files."""
    args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--allow-loopback-in-peer-connection",
            "--disable-features=WebRtcHideLocalIpsWithMdns", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream"]
    if camera is not None:
        args += [f"--use-file-for-fake-video-capture={camera[0]}", f"--use-file-for-fake-audio-capture={camera[1]}"]
    return args


class Browser:
    """A headless Chromium with one page (`page`), its console errors (`errors`) and the URLs it asked for
    (`requests`) collected; `offline` cuts the page off the network."""

    def __init__(self, camera: tuple[Path, Path] | None = None, *, viewport: tuple[int, int] = (1400, 1000),
                 offline: bool = False):
        self.camera, self.viewport, self.offline = camera, viewport, offline
        self.errors: list[str] = []
        self.requests: list[str] = []

    async def __aenter__(self):
        from playwright.async_api import async_playwright

        self._playwright = await async_playwright().start()
        self.browser = await self._playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                              args=chromium_args(self.camera))
        width, height = self.viewport
        self.context = await self.browser.new_context(viewport={"width": width, "height": height},
                                                      offline=self.offline)
        self.page = await self.context.new_page()
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        self.page.on("request", lambda request: self.requests.append(request.url))
        return self

    async def __aexit__(self, *exc):
        await self.browser.close()
        await self._playwright.stop()

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        await self.page.screenshot(path=str(path), full_page=True)
        return path
