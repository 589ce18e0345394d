"""Shared fixtures: the real media folder, one Engine (models load once per test session), derived test media."""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
VIDEOS = DATA / "videos"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/rtsp_server.py


def need_data(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test media not found at {path} (the repo never ships it; CI has ../shared/data)")
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread: on 2 cores shared with other work, two OpenMP threads can run many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def engine():
    from pipeline import Engine

    eng = Engine(asr="tiny.en", device="cpu")
    yield eng
    eng.close()


def remux_without_audio(src: Path, dst: Path) -> Path:
    """A copy of a real clip's video track alone (no re-encoding)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        for packet in inp.demux(vin):
            if packet.dts is None:
                continue
            packet.stream = vout
            out.mux(packet)
    return dst


def with_silent_audio(src: Path, dst: Path) -> Path:
    """A copy of a real clip whose audio track is digital silence of the same length."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        aout = out.add_stream("aac", rate=16000, layout="mono")
        duration = float(inp.duration / av.time_base)
        for packet in inp.demux(vin):
            if packet.dts is None:
                continue
            packet.stream = vout
            out.mux(packet)
        total = int(duration * 16000)
        for start in range(0, total, 1024):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, min(1024, total - start)), np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate = 16000
            frame.pts = start
            for packet in aout.encode(frame):
                out.mux(packet)
        for packet in aout.encode(None):
            out.mux(packet)
    return dst
