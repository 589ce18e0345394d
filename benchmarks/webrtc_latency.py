"""One live browser stream over WebRTC: does the pipeline keep up with what a browser sends (48 kHz Opus, VP8 at
30 fps)? Headless Chromium (Debian's) opens the dashboard and streams its fake camera and microphone — made here
with ffmpeg from real files — to an in-process server on loopback, for --seconds.

    .venv/bin/python benchmarks/webrtc_latency.py [--audio ../shared/data/speech/two_cities.flac]
        [--video ../shared/data/videos/vna_original_2.mp4] [--seconds 60]

Window latency: wall time of the window's message − wall time its last media arrived (the message's latency_s).
Word latency: wall time a word is committed − wall time the audio of its end arrived (media time is mapped to
wall time by the first audio that arrived). Also lag (status), dropped frames, the server's CPU time per media
second and the process's peak RSS. Chromium runs on the same 2 cores, encoding as a browser does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.options import add_model_arguments  # noqa: E402
from engine import Engine  # noqa: E402
from protocol import StatusMessage, TranscriptMessage, WindowMessage  # noqa: E402
from service.serving import serve_forever  # noqa: E402
from stream.webrtc import gather_ice_on  # noqa: E402
from testkit.data import DATA  # noqa: E402
from testkit.servers import make_hub  # noqa: E402
from testkit.stats import pct  # noqa: E402


def fake_capture(audio: Path, video: Path, folder: Path) -> tuple[Path, Path]:
    y4m, wav = folder / "camera.y4m", folder / "microphone.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(video), "-an", "-r", "30", "-vf", "scale=640:-2",
                    "-pix_fmt", "yuv420p", str(y4m)], check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(audio), "-vn", "-ac", "1", "-ar", "48000",
                    "-c:a", "pcm_s16le", str(wav)], check=True)
    return y4m, wav


async def main_async(args) -> None:
    from playwright.async_api import async_playwright

    gather_ice_on(["127.0.0.1"])
    engine = Engine(asr=args.asr, device=args.device)
    hub = make_hub(engine, None, webrtc_options={"ice_servers": []})
    stop, ready = asyncio.Event(), asyncio.Event()
    server = asyncio.create_task(serve_forever("127.0.0.1", 0, hub, ready, stop))
    await ready.wait()
    window_latency, word_latency, lags, commits = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        y4m, wav = fake_capture(Path(args.audio), Path(args.video), Path(tmp))
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=args.chromium, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--allow-loopback-in-peer-connection",
                "--disable-features=WebRtcHideLocalIpsWithMdns", "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={y4m}",
                f"--use-file-for-fake-audio-capture={wav}"])
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{hub.bound_port}/")
            await page.wait_for_function("window.vidsent && window.vidsent.connected", timeout=15000)
            await page.click("#start-camera")
            while not hub.streams:
                await asyncio.sleep(0.05)
            live = next(iter(hub.streams.values()))
            publish = live.publish

            def observe(message):
                now = time.monotonic()
                if isinstance(message, WindowMessage) and message.latency_s is not None:
                    window_latency.append(message.latency_s)
                elif isinstance(message, StatusMessage):
                    lags.append(message.lag_s)
                elif isinstance(message, TranscriptMessage) and message.final:
                    commits.append((now, [w["end"] for w in message.words]))
                publish(message)

            live.publish = live.pipeline.emit = observe
            cpu_start, wall_start = time.process_time(), time.monotonic()
            await asyncio.sleep(args.seconds)
            cpu = time.process_time() - cpu_start
            media = live.pipeline.watermark
            dropped = live.pipeline.dropped_frames
            arrivals = list(live.pipeline._arrivals)
            await browser.close()
    for _ in range(100):
        if not hub.streams:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await server
    engine.close()
    # media time → wall time of arrival, from the arrival log (the earliest entry that covers the word's end)
    for committed_at, ends in commits:
        for end_t in ends:
            arrived = next((wall for watermark, wall in arrivals if watermark >= end_t), None)
            if arrived is not None:
                word_latency.append(committed_at - arrived)
    print(f"one browser stream over WebRTC, {args.seconds:.0f} s wall, {media:.1f} s of media received, "
          f"asr={args.asr}; audio {Path(args.audio).name}, video {Path(args.video).name}")
    print(f"window latency p50 {pct(window_latency, .5):.2f} s, p95 {pct(window_latency, .95):.2f} s, "
          f"max {max(window_latency, default=float('nan')):.2f} s (n={len(window_latency)})")
    print(f"word latency   p50 {pct(word_latency, .5):.2f} s, p95 {pct(word_latency, .95):.2f} s, "
          f"max {max(word_latency, default=float('nan')):.2f} s (n={len(word_latency)})")
    print(f"lag max {max(lags, default=0):.2f} s, last {(lags or [0])[-1]:.2f} s; dropped frames {dropped}; "
          f"server CPU {cpu / max(media, 1e-9):.2f} s per media second "
          f"({100 * cpu / (time.monotonic() - wall_start):.0f}% of one core, Chromium not counted); "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", default=str(DATA / "speech" / "two_cities.flac"))
    parser.add_argument("--video", default=str(DATA / "videos" / "vna_original_2.mp4"))
    parser.add_argument("--seconds", type=float, default=60.0)
    add_model_arguments(parser, heads=False)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
