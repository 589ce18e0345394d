"""Faults a long-running server survives: SIGTERM / SIGINT with live streams and clients, and client churn (the
soak and the client that never reads: test_reliability.py)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys

import pytest
from websockets.asyncio.client import connect

from benchmarks.reliability import churn
from conftest import ROOT, VIDEOS, need_data
from protocol import parse_message
from test_pipeline_fakes import fake_engine


TFLITE_NOTICE = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_listening(process, port: int, timeout: float = 120) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if process.returncode is not None:
            raise AssertionError(f"vidsent serve exited with {process.returncode}")
        try:
            async with connect(f"ws://127.0.0.1:{port}", open_timeout=2) as ws:
                await ws.recv()
                return
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(0.5)
    raise AssertionError("vidsent serve did not start listening")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_ends_every_stream_for_every_client_and_exits_cleanly(sig):
    need_data("videos", "vna_original_2.mp4")
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "cli.py"), "serve", "--port", str(port), "--media-dir", str(VIDEOS), "--log-json",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await wait_listening(process, port)
        url = f"ws://127.0.0.1:{port}"
        async with connect(url) as first, connect(url) as second:
            await first.recv(), await second.recv()
            streams = []
            for name, source in (("a", "vna_original_2.mp4"), ("b", "pyfeat_WolfgangLanger_Pexels.mp4"),
                                 ("c", "vna_test.mp4")):
                await first.send(json.dumps({"type": "start", "source": source, "stream": name}))
                while parse_message(await first.recv()).type != "subscribed":
                    pass
                await second.send(json.dumps({"type": "subscribe", "stream": name}))
                while parse_message(await second.recv()).type != "subscribed":
                    pass
                streams.append(name)

            async def collect(ws, until) -> dict[str, str]:
                """Each stream's end reason, reading until until(windows seen, ends) holds."""
                ends, windows = {}, set()
                async for raw in ws:
                    message = parse_message(raw)
                    if message.type == "window":
                        windows.add(message.stream)
                    elif message.type == "end":
                        ends[message.stream] = message.summary["reason"]
                    if until(windows, ends):
                        return ends
                return ends

            async with asyncio.timeout(90):  # every stream is live: its first window reached the first client
                await collect(first, lambda windows, ends: len(windows) == 3)
            loop = asyncio.get_running_loop()
            signalled = loop.time()
            process.send_signal(sig)
            async with asyncio.timeout(30):
                got_first, got_second = await asyncio.gather(
                    collect(first, lambda windows, ends: len(ends) == 3),
                    collect(second, lambda windows, ends: len(ends) == 3))
            code = await asyncio.wait_for(process.wait(), 10)
            took = loop.time() - signalled
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    err = (await process.stderr.read()).decode()
    assert got_first == got_second == {name: "stopped" for name in streams}
    assert code == 0 and took <= 5.0, (code, took)
    assert "Traceback" not in err, err[-2000:]
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]  # --log-json
    # every line is JSON but what native libraries print themselves (TensorFlow Lite's delegate notice)
    assert {line for line in err.splitlines() if not line.startswith("{")} <= {TFLITE_NOTICE}, err[-2000:]
    assert any(entry["message"].startswith("shutting down: ending 3 stream(s)") for entry in logged), logged[-5:]


async def test_clients_that_come_and_go_leave_nothing_behind():
    """A short run of benchmarks/reliability.py's churn (the benchmark runs it for a minute): waves of 50 clients
    connect, subscribe to a live stream (some also ask for the list) and leave; tasks, threads and file
    descriptors return to where they were and the stream carries on with its one owner."""
    clip = need_data("videos", "vna_original_2.mp4")
    engine = fake_engine()
    try:
        result = await churn(engine, clip, clients=50, waves=4)
    finally:
        engine.close()
    assert result.visits == 200 and result.failed_visits == 0
    assert result.stream_alive and result.subscribers_left == 1
    assert result.after.tasks <= result.before.tasks, (result.before, result.after)
    assert result.after.fds <= result.before.fds and result.after.sockets <= result.before.sockets
    assert result.after.other_threads == result.before.other_threads
