"""Media that goes bad part-way: a file with a damaged middle, and an RTSP server whose stream turns corrupt or into
garbage after a while. The stream skips what it cannot decode, keeps its timeline, or ends cleanly: never a crash,
a traceback or a hang."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from engine import PipelineConfig, analyze_file
from media import AudioChunk
from stream.sources import FileSource
from testkit.data import need_data
from testkit.rtsp import CorruptingProxy, follow_stream, require_rtsp_server
from testkit.rtsp_server import start_rtsp_server, stop

CLIP = ("videos", "vna_original_2.mp4")  # 12.2 s: "Now I'm not even gonna sugar coat this ... at the end of the film"


def damage_middle(src, dst, start: float = 0.40, end: float = 0.55):
    """A copy of src with the bytes between those fractions of its length overwritten by random bytes."""
    data = bytearray(src.read_bytes())
    a, b = int(len(data) * start), int(len(data) * end)
    data[a:b] = np.random.default_rng(0).integers(0, 256, b - a, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """The clip as MP4 and as MPEG-TS, each with 15 % of its bytes in the middle destroyed (about 1.8 s of media)."""
    clip = need_data(*CLIP)
    folder = tmp_path_factory.mktemp("damaged")
    ts = folder / "clip.ts"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(clip), "-c", "copy", "-f", "mpegts", str(ts)],
                   check=True, timeout=60)
    return {"mp4": damage_middle(clip, folder / "damaged.mp4"), "ts": damage_middle(ts, folder / "damaged.ts")}


@pytest.mark.parametrize("kind", ["mp4", "ts"])
async def test_a_file_with_a_damaged_middle_is_analysed_around_the_damage(engine, damaged, kind):
    path = damaged[kind]
    source = FileSource(path, realtime=False)
    await source.open()
    audio = [item async for item in source if isinstance(item, AudioChunk)]
    gaps = [(a.t_end, b.t) for a, b in zip(audio, audio[1:]) if b.t - a.t_end > 0.5]
    # the lost audio stays a gap at its place, so what follows stays in sync with the pictures
    assert len(gaps) == 1 and 4.0 < gaps[0][0] < gaps[0][1] < 8.0, gaps
    assert audio[-1].t_end == pytest.approx(12.25, abs=0.3)

    result = await analyze_file(path, engine, PipelineConfig())
    assert "error" not in result, result["error"]
    windows = result["windows"]
    assert windows[-1]["t_end"] == pytest.approx(12.25, abs=0.6)
    transcript = result["transcript"].lower()
    assert "sugar coat" in transcript or "coat this" in transcript  # before the damage
    assert "end of the film" in transcript  # after it
    for w in windows:
        assert w["modalities"]["visual"]["available"] and w["fused"]["score"] is not None


async def stream_through(proxy_mode: str, engine, seconds_after: float):
    """A looping clip served over RTSP through a proxy that corrupts it 6 s in; messages until `end`, or until
    seconds_after of media past the corruption (then the client stops the stream)."""
    clip = need_data(*CLIP)
    require_rtsp_server()
    proc, url = start_rtsp_server(clip, loop=True)
    upstream_port = int(url.rsplit(":", 1)[1].split("/")[0])

    stopping = False

    async def stop_past_the_corruption(message, ws) -> None:
        nonlocal stopping
        if message.type == "window" and message.t_end > 6.0 + seconds_after and not stopping:
            stopping = True  # once: a second stop could cross the end and answer no_such_stream
            await ws.send(json.dumps({"type": "stop", "stream": "cam"}))

    try:
        async with CorruptingProxy(upstream_port, after_s=6.0, mode=proxy_mode) as proxy:
            messages = await follow_stream(engine, f"rtsp://127.0.0.1:{proxy.port}/clip", stop_past_the_corruption,
                                           90, open_timeout_s=2.0, read_timeout_s=2.0, give_up_s=6.0)
            return messages, proxy
    finally:
        stop(proc)


async def test_an_rtsp_stream_whose_packets_turn_corrupt_carries_on(engine):
    messages, proxy = await stream_through("payload", engine, seconds_after=12.0)
    assert proxy.damaged_packets > 100
    # it may reconnect once a read times out on a loaded machine, but it never gives up nor errs
    assert not [m for m in messages if m.type == "error"]
    windows = [m for m in messages if m.type == "window"]
    assert [w.index for w in windows] == list(range(len(windows)))
    late = [w for w in windows if w.t_start > 8.0]  # wholly inside the corrupt part
    assert len(late) >= 4
    assert all(w.modalities["visual"]["available"] for w in late)  # broken pictures still decode to frames
    assert messages[-1].type == "end" and messages[-1].summary["reason"] == "stopped"


async def test_an_rtsp_server_that_starts_sending_garbage_ends_the_stream_cleanly(engine):
    messages, proxy = await stream_through("garbage", engine, seconds_after=60.0)
    windows = [m for m in messages if m.type == "window"]
    assert windows and windows[0].modalities["visual"]["available"]  # it was a good stream before
    assert "reconnecting" in [m.state for m in messages if m.type == "status"]
    assert proxy.connections > 1  # it tried again, and got garbage again
    errors = [m for m in messages if m.type == "error"]
    assert [e.code for e in errors] == ["source_lost"] and "Traceback" not in errors[0].message
    assert messages[-1].type == "end" and messages[-1].summary["reason"] == "source_lost"
