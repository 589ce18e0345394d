"""Shared fixtures: the real media folder, one Engine (models load once per test session), derived test media."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import av
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
VIDEOS = DATA / "videos"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/rtsp_server.py


REQUIRE_DATA = os.environ.get("VIDSENT_REQUIRE_DATA") == "1"  # CI: real data must be there, no test may skip for it


def pytest_configure(config):
    if REQUIRE_DATA and not DATA.is_dir():
        raise pytest.UsageError(f"VIDSENT_REQUIRE_DATA=1 but the real data is not at {DATA}")


@pytest.fixture(scope="session", autouse=True)
def data_dir_of_the_session(tmp_path_factory):
    """`vidsent serve` keeps a history in its data directory by default: never the real home's, in tests (the
    serve subprocesses inherit it too)."""
    before = os.environ.get("VIDSENT_DATA_DIR")
    os.environ["VIDSENT_DATA_DIR"] = str(tmp_path_factory.mktemp("vidsent-data"))
    yield
    if before is None:
        os.environ.pop("VIDSENT_DATA_DIR", None)
    else:
        os.environ["VIDSENT_DATA_DIR"] = before


# What the servers of the tests sent that docs/protocol.schema.json does not allow, in the running test.
SCHEMA_VIOLATIONS: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def server_messages_follow_the_schema():
    """Every text message a test's websocket client receives (the tests' own connections and VidsentClient's) is
    checked against the committed schema; a vidsent message it does not allow fails the test that received it.
    Checked where it is received, not in protocol.parse_message: tests parse hand-made partial messages too."""
    from websockets.asyncio.client import ClientConnection

    from protocol_schema import received_text_checker

    check = received_text_checker()
    receive = ClientConnection.recv

    async def receive_checked(self, *args, **kwargs):
        data = await receive(self, *args, **kwargs)
        if isinstance(data, str) and (problem := check(data)):
            SCHEMA_VIOLATIONS.append(problem)
        return data

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ClientConnection, "recv", receive_checked)  # `async for` on a connection calls recv too
        yield


def _fail_on_schema_violations() -> None:
    if SCHEMA_VIOLATIONS:
        found = list(SCHEMA_VIOLATIONS)
        SCHEMA_VIOLATIONS.clear()
        pytest.fail(f"the server sent {len(found)} message(s) that docs/protocol.schema.json does not allow:\n"
                    + "\n".join(found[:5]), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    SCHEMA_VIOLATIONS.clear()
    result = yield
    _fail_on_schema_violations()
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    _fail_on_schema_violations()
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield
    _fail_on_schema_violations()
    return result


def need_data(*parts: str) -> Path:
    """The path of real test data under ../shared/data; the test skips (fails under VIDSENT_REQUIRE_DATA=1) when it
    is absent."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        message = f"real test media not found at {path} (the repo never ships it; CI has ../shared/data)"
        if REQUIRE_DATA:
            pytest.fail(message + " and VIDSENT_REQUIRE_DATA=1")
        pytest.skip(message)
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


@pytest.fixture(scope="session")
def looped_mosi(tmp_path_factory) -> Path:
    """vna_mosi_2.6.mp4 ("I mean that was impressive.", 1.3 s) played 9 times over: about 12 s of a live talker."""
    import subprocess

    src = need_data("videos", "vna_mosi_2.6.mp4")
    out = tmp_path_factory.mktemp("media") / "mosi_looped.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "8", "-i", str(src), "-c:v", "libx264",
                    "-preset", "veryfast", "-c:a", "aac", str(out)], check=True, timeout=120)
    return out


def own_threads() -> list[str]:
    """Threads other than the bounded worker pools (asyncio's default executor, the Engine's ASR and scoring
    threads), which live as long as the process: what a stream leaves behind shows here."""
    import threading

    from benchmarks.reliability import POOL_THREAD_PREFIXES

    return sorted(t.name for t in threading.enumerate() if not t.name.startswith(POOL_THREAD_PREFIXES))


async def settled(check, timeout: float = 5.0) -> bool:
    """Polls check() until it is true or the timeout passes (resources are released a moment after an end)."""
    from benchmarks.reliability import until_true

    return await until_true(check, timeout)


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
