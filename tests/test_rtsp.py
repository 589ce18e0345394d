"""A real RTSP server on loopback (Debian's gst-rtsp-server), analysed over TCP; killing it mid-stream gives a
`reconnecting` status and, past the give-up limit, a clean `end`; restarting it on the same port resumes the
stream with media time running on."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from stream.sources import RtspSource, SourceError
from testkit.data import need_data
from testkit.rtsp import follow_stream, require_rtsp_server
from testkit.rtsp_server import start_rtsp_server, stop
from testkit.servers import free_port


async def test_rtsp_stream_is_analysed_then_reconnects_then_ends_cleanly(engine):
    clip = need_data("videos", "vna_original_2.mp4")
    require_rtsp_server()
    proc, url = start_rtsp_server(clip, loop=True)
    killed_at, windows_seen = None, 0

    async def kill_after_three_windows(message, ws) -> None:
        nonlocal killed_at, windows_seen
        assert message.type != "error" or message.stream == "cam", message
        windows_seen += message.type == "window"
        if killed_at is None and windows_seen >= 3:
            stop(proc)  # the camera goes away mid-stream
            killed_at = time.monotonic()

    try:
        messages = await follow_stream(engine, url, kill_after_three_windows, 90, open_timeout_s=2.0,
                                       read_timeout_s=2.0, give_up_s=4.0)
    finally:
        stop(proc)
    windows = [m for m in messages if m.type == "window"]
    assert len(windows) >= 3
    for w in windows[:3]:
        assert w.modalities["text"]["available"] and w.modalities["visual"]["available"]
        assert w.modalities["audio"]["reason"] != "no audio track"
        assert 0.0 <= w.fused["score"] <= 1.0
    states = [m.state for m in messages if m.type == "status"]
    assert "reconnecting" in states
    end = messages[-1]
    assert end.type == "end" and end.summary["reason"] == "source_lost"
    assert any(m.type == "error" and m.code == "source_lost" for m in messages)
    assert time.monotonic() - killed_at < 30


def restart_rtsp_server(clip, port: int, within_s: float = 10.0):
    """The server again on the same port; the port can stay taken for a moment after the old server exits."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return start_rtsp_server(clip, port=port, loop=True)[0]
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


async def test_an_rtsp_server_that_dies_and_comes_back_on_the_same_port_resumes_the_stream(engine):
    clip = need_data("videos", "vna_original_2.mp4")
    require_rtsp_server()
    port = free_port()
    proc, url = start_rtsp_server(clip, port=port, loop=True)
    phase = "before"  # before the outage, waiting for the reconnect, after it, then gone for good
    windows: dict[str, list] = {"before": [], "outage": [], "after": [], "gone": []}

    async def kill_restart_kill(message, ws) -> None:
        nonlocal phase, proc
        if message.type == "window":
            windows[phase].append(message)
        if phase == "before" and len(windows["before"]) >= 3:
            await asyncio.to_thread(stop, proc)
            phase = "outage"
        elif phase == "outage" and message.type == "status" and message.state == "reconnecting" \
                and proc.poll() is not None:
            proc = await asyncio.to_thread(restart_rtsp_server, clip, port)  # the camera is back
        elif phase == "outage" and message.type == "status" and "reconnected" in message.detail:
            phase = "after"
        elif phase == "after" and len(windows["after"]) >= 4:
            await asyncio.to_thread(stop, proc)  # and now gone for good
            phase = "gone"

    try:
        messages = await follow_stream(engine, url, kill_restart_kill, 150, open_timeout_s=2.0, read_timeout_s=2.0,
                                       give_up_s=12.0)
    finally:
        stop(proc)
    assert phase == "gone", f"the stream never resumed: {[m.to_json() for m in messages if m.type != 'window']}"
    every = [w for part in windows.values() for w in part]
    assert [w.index for w in every] == list(range(len(every)))
    for a, b in zip(every, every[1:]):  # media time runs on across the outage: no window goes back or leaves a gap
        assert a.t_start < b.t_start <= a.t_end
    media_times = [m.media_time for m in messages if m.type == "status"]
    assert media_times == sorted(media_times)
    for w in windows["after"][1:]:  # real media again, not silence filling the outage
        assert w.modalities["visual"]["available"] and w.modalities["audio"]["available"], w.modalities
    assert "sugar" in " ".join(w.transcript for w in windows["after"]).lower()  # the clip plays again from its start
    end = messages[-1]
    assert end.type == "end" and end.summary["reason"] == "source_lost"


async def test_rtsp_url_that_never_answers_fails_within_the_timeout():
    """A server that accepts TCP but never speaks RTSP: PyAV would hang forever without the guards."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        source = RtspSource(f"rtsp://127.0.0.1:{port}/cam", open_timeout_s=1.0, read_timeout_s=1.0)
        started = time.monotonic()
        with pytest.raises(SourceError) as info:
            await source.open()
        assert info.value.code == "unreachable"
        assert time.monotonic() - started < 10
    finally:
        listener.close()


async def test_rtsp_url_with_nothing_listening_is_unreachable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = RtspSource(f"rtsp://user:secret@127.0.0.1:{port}/cam", open_timeout_s=1.0, read_timeout_s=1.0)
    with pytest.raises(SourceError) as info:
        await source.open()
    assert info.value.code == "unreachable" and "secret" not in info.value.message
