"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright for Python (no browser
download). The camera is Chromium's fake capture device fed with a real clip (a .y4m and a .wav made here with
ffmpeg from vna_mosi_2.6.mp4), streamed to the server over WebRTC on loopback.

Screenshots go to out/test-artifacts/ (or $VIDSENT_TEST_ARTIFACTS)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path
from urllib.request import urlopen

import pytest
from websockets.asyncio.client import connect

from monitor.alerts import AlertRule
from protocol import parse_message
from service.hub import StreamHub
from stream.webrtc import gather_ice_on
from testkit.browser import Browser, need_browser
from testkit.data import need_data
from testkit.reliability import own_threads, settled
from testkit.servers import RunningServer, collect, make_hub

gather_ice_on(["127.0.0.1"])  # loopback only: nothing leaves this machine


@pytest.fixture(scope="module")
def fake_camera(tmp_path_factory) -> tuple[Path, Path]:
    """The talking-head clip as Chromium's fake camera (.y4m, 30 fps) and microphone (.wav, 48 kHz, with a pause)."""
    src = need_data("videos", "vna_mosi_2.6.mp4")
    folder = tmp_path_factory.mktemp("camera")
    video, audio = folder / "camera.y4m", folder / "microphone.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-an", "-r", "30", "-pix_fmt", "yuv420p",
                    str(video)], check=True, timeout=120)
    # Chromium loops the file; a pause after each "I mean that was impressive." makes it a talker saying it
    # again and again, not one endless run-on phrase (which Whisper drops as a repetition)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-vn", "-ac", "1", "-ar", "48000",
                    "-af", "apad=pad_dur=0.6", "-c:a", "pcm_s16le", str(audio)], check=True, timeout=120)
    return video, audio


def dashboard_hub(engine, alert_rules=None) -> StreamHub:
    return make_hub(engine, webrtc_options={"ice_servers": []}, alert_rules=alert_rules)


def http_url(server) -> str:
    return server.url.replace("ws://", "http://") + "/"


async def stream_state(page, stream: str) -> dict:
    return await page.evaluate("id => JSON.parse(JSON.stringify(window.vidsent.streams[id] || {}))", stream)


async def wait_for_windows(page, stream: str, count: int, timeout: float = 90.0) -> None:
    await page.wait_for_function("([id, n]) => (window.vidsent.streams[id] || {}).windows >= n", arg=[stream, count],
                                 timeout=timeout * 1000)


async def test_dashboard_page_assets_and_paths(engine):
    async with RunningServer(dashboard_hub(engine)) as server:
        base = http_url(server)

        def get(path):
            try:
                with urlopen(base + path.lstrip("/"), timeout=10) as response:
                    return response.status, response.headers["Content-Type"], response.read()
            except Exception as exc:  # urllib raises for 4xx
                return getattr(exc, "code", None), exc.headers["Content-Type"] if hasattr(exc, "headers") else None, b""

        loop = asyncio.get_running_loop()
        status, kind, body = await loop.run_in_executor(None, get, "/")
        assert status == 200 and kind.startswith("text/html") and b"<html" in body.lower()
        for path, expected in (("/dashboard/app.js", "text/javascript"), ("/dashboard/style.css", "text/css"),
                               ("/dashboard/vendor/uplot/uPlot.esm.js", "text/javascript"),
                               ("/dashboard/vendor/uplot/LICENSE", "text/plain"),
                               ("/favicon.ico", "image/svg+xml")):  # browsers ask for it on any page
            status, kind, body = await loop.run_in_executor(None, get, path)
            assert status == 200 and kind.startswith(expected) and body, path
        for path in ("/nope", "/dashboard/../server.py", "/dashboard/%2e%2e/server.py", "/dashboard/", "/favicon.x"):
            status, _, _ = await loop.run_in_executor(None, get, path)
            assert status == 404, path
        status, kind, body = await loop.run_in_executor(None, get, "/health")
        assert status == 200 and json.loads(body)["ok"] is True
        async with connect(server.url) as ws:  # the websocket still answers on the same port
            assert parse_message(await ws.recv()).type == "hello"


async def test_camera_streams_over_webrtc_from_a_real_browser_and_ends_when_the_page_closes(engine, fake_camera):
    need_browser()
    async with RunningServer(dashboard_hub(engine)) as server:
        async with connect(server.url) as watcher:  # another subscriber, as a second dashboard would be
            await watcher.recv()
            threads, tasks = own_threads(), len(asyncio.all_tasks())
            async with Browser(fake_camera) as browser:
                page = browser.page
                await page.goto(http_url(server))
                await page.wait_for_function("window.vidsent && window.vidsent.connected", timeout=15000)
                await page.click("#start-camera")
                panel = page.locator(".stream-panel").first
                await panel.wait_for(timeout=30000)
                stream = await panel.get_attribute("data-stream")
                assert stream in server.hub.streams and server.hub.streams[stream].pipeline.source.kind == "webrtc"
                await watcher.send(json.dumps({"type": "subscribe", "stream": stream}))
                ended = asyncio.create_task(collect(watcher, stream, timeout=180))
                await wait_for_windows(page, stream, 5)
                await page.wait_for_function(
                    "id => /impressive/i.test(document.querySelector(`.stream-panel[data-stream='${id}'] .transcript`)"
                    ".textContent)", arg=stream, timeout=30000)
                await page.wait_for_function(
                    "id => document.querySelector(`.stream-panel[data-stream='${id}'] .badge`).dataset.graded "
                    "=== 'Positive'", arg=stream, timeout=30000)
                state = await stream_state(page, stream)
                assert state["lastWindow"]["rolling"]["score"] > 0.5
                assert state["lastWindow"]["modalities"]["visual"]["available"]
                chart = panel.locator(".chart")
                assert int(await chart.get_attribute("data-points")) >= 5
                assert int(await panel.get_attribute("data-series")) >= 4
                assert await panel.locator(".chart canvas").count() >= 1
                assert await panel.locator(".transcript .committed").count() >= 1
                # live, a window may go out before speech recognition reached its end (its text then says the
                # words are not in yet); one that has its words shows its text score
                await page.wait_for_function(
                    "id => document.querySelector(`.stream-panel[data-stream='${id}'] .modalities "
                    "[data-modality='text']`).dataset.available === 'true'", arg=stream, timeout=30000)
                assert await panel.locator("video.preview").count() == 1
                assert await page.evaluate(
                    "id => document.querySelector(`.stream-panel[data-stream='${id}'] video.preview`).srcObject"
                    " !== null", stream)
                await browser.screenshot("dashboard-camera.png")
                assert not browser.errors, browser.errors
                closed_at = asyncio.get_running_loop().time()
                await page.close()  # the peer leaves without a word
                messages = await ended
            took = asyncio.get_running_loop().time() - closed_at
            end = messages[-1]
            assert end.type == "end" and end.summary["reason"] in ("source_lost", "stopped"), end
            assert took <= 10.0, f"the stream ended {took:.1f} s after the page closed"
            assert not server.hub.streams
            assert await settled(lambda: own_threads() == threads), own_threads()
            assert await settled(lambda: len(asyncio.all_tasks()) <= tasks), asyncio.all_tasks()
    windows = [m for m in messages if m.type == "window"]
    assert windows and all(w.modalities["audio"]["available"] or w.modalities["audio"]["reason"] for w in windows)


async def test_dashboard_starts_a_file_stream_and_shows_its_summary_when_stopped(engine):
    need_browser()
    need_data("videos", "vna_original_2.mp4")
    low = AlertRule.parse("rolling<0.3 for 6s", name="low mood")  # this clip's rolling score starts near 0.2
    async with RunningServer(dashboard_hub(engine, [low])) as server:
        async with Browser() as browser:
            page = browser.page
            await page.goto(http_url(server))
            await page.wait_for_function("window.vidsent && window.vidsent.connected", timeout=15000)
            await page.wait_for_selector("#media-select option[value='vna_original_2.mp4']", state="attached",
                                         timeout=15000)
            await page.select_option("#media-select", "vna_original_2.mp4")
            await page.click("#start-file")
            panel = page.locator(".stream-panel").first
            await panel.wait_for(timeout=30000)
            stream = await panel.get_attribute("data-stream")
            await page.wait_for_selector(f"#streams [data-stream='{stream}']", timeout=15000)
            await wait_for_windows(page, stream, 3)
            first = await stream_state(page, stream)
            await wait_for_windows(page, stream, first["windows"] + 1)
            badge = panel.locator("div.badge[role='status']")  # the stream's, not a person's
            # a confident grade, or (its text and voice pull against its face) the grey "uncertain (grade)" badge
            if await badge.get_attribute("data-uncertain") == "true":
                assert (await badge.locator(".grade").text_content()).startswith("uncertain (")
            else:
                assert await badge.get_attribute("data-graded") in ("Positive", "Slight Negative", "Negative",
                                                                    "Strong Negative")
            assert int(await panel.locator(".chart").get_attribute("data-points")) >= 4
            transcript = (await panel.locator(".transcript").text_content()).lower()
            assert "sugar" in transcript or "movie" in transcript, transcript
            assert await panel.locator(".status").get_attribute("data-state") == "running"
            status_text = (await panel.locator(".status").text_content()).lower()
            assert "lag" in status_text and "dropped" in status_text
            evidence = (await panel.locator(".evidence").text_content()).lower()
            assert "vader" in evidence
            # the talking head's face as a tracked person, and the time of the visual evidence
            assert await panel.locator(".evidence .person[data-person='1']").count() == 1
            assert re.search(r"strongest \d+\.\d s · (#1 \w+|scene)", evidence), evidence
            alert = panel.locator(".alerts .alert[data-rule='low mood']")
            await alert.wait_for(timeout=20000)
            assert await alert.get_attribute("data-state") == "raised"
            assert await panel.get_attribute("data-alerting") == "true"
            assert "rolling" in (await alert.text_content())
            await browser.screenshot("dashboard-file.png")
            await panel.locator(".stop").click()
            await page.wait_for_selector(f".stream-panel[data-stream='{stream}'][data-ended='true'] .summary",
                                         timeout=20000)
            summary = (await panel.locator(".summary").text_content()).lower()
            assert "stopped" in summary
            assert await alert.get_attribute("data-state") == "cleared"  # the episode ended with the stream
            assert await panel.get_attribute("data-alerting") == "false"
            assert (await stream_state(page, stream))["alerts"][-1]["detail"] == "the stream ended"
            await browser.screenshot("dashboard-file-ended.png")
            assert not browser.errors, browser.errors


async def test_dashboard_of_a_server_with_a_token(engine):
    """Opened once with ?token=, the page's modules and websocket present the cookie the server set, and the
    token leaves the address bar; without it the page is refused."""
    need_browser()
    from service.access import Access

    async with RunningServer(dashboard_hub(engine), Access(token="dash-token")) as server:
        async with Browser() as browser:
            page = browser.page
            response = await page.goto(http_url(server))
            assert response.status == 401
            await page.goto(http_url(server) + "?token=dash-token")
            await page.wait_for_function("window.vidsent && window.vidsent.connected", timeout=15000)
            assert "token" not in page.url
            await page.wait_for_selector("#media-select option[value='vna_original_2.mp4']", state="attached",
                                         timeout=15000)
            assert not [e for e in browser.errors if "401" not in e], browser.errors
