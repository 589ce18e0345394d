"""The bad-input matrix (issue #14): every kind of awkward input through `vidsent analyze` and through a websocket
`start`. Each gives a clear error code and message, or windows whose missing modalities say why; never a traceback,
never a hang. The media is made from the real clips by testkit/media.py."""

from __future__ import annotations

import asyncio
import json
import socket
import zlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import connect

from protocol import parse_message
from stream.sources import sample_video
from testkit.data import VIDEOS, need_data
from testkit.media import BAD_MEDIA, FACE, apply_file_modes_in_this_thread, build_bad_media, file_modes_apply_argv
from testkit.servers import VIDSENT, RunningServer, collect, make_hub, start

pytestmark = pytest.mark.models  # `vidsent analyze`, a server on the real Engine, the face detector


@dataclass
class Outcome:
    """What one input gave, the same whether it came from `vidsent analyze` or over a websocket."""

    error: dict | None  # {code, message} of the first error
    windows: list[dict]
    modalities: dict  # the overall verdict's, per modality
    transcript: str
    duration: float


@dataclass(frozen=True)
class Expect:
    error: str | None = None  # the error code; None: a result with windows
    says: str = ""  # words the error message contains
    available: tuple[str, ...] = ()
    missing: dict[str, str] = field(default_factory=dict)  # modality → words its reason contains
    windows: int | None = None
    transcript: str = ""  # words the transcript contains (lower case)
    check: Callable[[Outcome], None] | None = None


def no_repetition_loop(outcome: Outcome) -> None:
    """An English-only recogniser on Mandarin may write odd English, but never a phrase looped over and over."""
    text = outcome.transcript
    words = text.lower().split()
    assert words, "no transcript at all"
    assert len(text.encode()) / len(zlib.compress(text.encode())) < 2.4, text
    assert Counter(words).most_common(1)[0][1] <= max(3, len(words) // 3), text
    # the fastest speech runs at about 6 syllables a second and tiny.en writes at most about one English word per
    # Mandarin syllable (32 words in 7.9 s on an AMD EPYC, 4.05/s, where an Intel CPU's int8 kernels wrote fewer);
    # a loop writes far more
    assert len(words) <= 6 * outcome.duration, f"more words than anyone speaks: {text!r}"


def media_ends_at(seconds: float) -> Callable[[Outcome], None]:
    def check_end(outcome: Outcome) -> None:
        assert outcome.duration == pytest.approx(seconds, abs=0.1)
        assert outcome.windows[-1]["t_end"] == pytest.approx(seconds, abs=0.1)
    return check_end


def faces_in_every_window(outcome: Outcome) -> None:
    for window in outcome.windows:
        assert window["modalities"]["visual"]["details"]["faces_found"] >= 1, window["modalities"]["visual"]


NO_AUDIO = {"text": "no audio track", "audio": "no audio track"}
NO_VIDEO = {"visual": "no video track"}
ALL = ("text", "audio", "visual")
EXPECTED: dict[str, Expect] = {
    "zero_byte": Expect("empty_file", "0 bytes"),
    "truncated": Expect(available=ALL, windows=3, transcript="sugarcoat",
                        check=media_ends_at(6.2)),  # the first half of 12.3 s plays
    "truncated_no_index": Expect("not_media", "not a readable audio/video file"),
    "random_bytes": Expect("not_media", "not a readable audio/video file"),
    "wrong_extension": Expect(available=("text", "visual"), windows=1, transcript="impressive"),
    "text_file": Expect("not_media", "text file"),
    "directory": Expect("not_a_file", "directory"),
    "unreadable": Expect("unreadable", "cannot be read"),
    "missing": Expect("not_found", "no such file"),
    "audio_only": Expect(available=("text",), missing=NO_VIDEO, windows=1, transcript="impressive"),
    "video_only": Expect(available=("visual",), missing=NO_AUDIO, windows=1),
    "silence": Expect(available=("visual",), missing={"text": "no speech", "audio": "silence"}, windows=1),
    "one_frame": Expect(available=("visual",), missing=NO_AUDIO, windows=1, check=faces_in_every_window),
    "still_image": Expect(available=("visual",), missing=NO_AUDIO, windows=1, check=faces_in_every_window),
    "huge_resolution": Expect(available=("visual",), missing={"text": "no speech", "audio": "too short"}, windows=1,
                              check=faces_in_every_window),
    "rotated": Expect(available=("visual",), windows=1, check=faces_in_every_window),
    "variable_frame_rate": Expect(available=("text", "visual"), windows=1, transcript="impressive"),
    "short_clip": Expect(available=("visual",), missing={"audio": "too short"}, windows=1,
                         check=media_ends_at(0.3)),
    "surround_96k": Expect(available=("text", "visual"), windows=1, transcript="impressive"),
    "mandarin": Expect(available=("audio",), missing=NO_VIDEO, windows=3, check=no_repetition_loop),
    "empty_audio_track": Expect(available=("visual",), missing=NO_AUDIO, windows=1, check=faces_in_every_window),
}
URLS_FOR_ANALYZE = ["rtsp://127.0.0.1:9/live", "http://example.com/clip.mp4"]  # analyze reads files only


def check(kind: str, outcome: Outcome) -> None:
    expect = EXPECTED[kind]
    if expect.error:
        assert outcome.error is not None and outcome.error["code"] == expect.error, (kind, outcome.error)
        assert expect.says in outcome.error["message"], (kind, outcome.error)
        assert outcome.windows == [], kind
        return
    assert outcome.error is None, (kind, outcome.error)
    if expect.windows is not None:
        assert len(outcome.windows) == expect.windows, (kind, len(outcome.windows))
    for modality in expect.available:
        assert outcome.modalities[modality]["available"], (kind, modality, outcome.modalities[modality])
    for modality, reason in expect.missing.items():
        m = outcome.modalities[modality]
        assert not m["available"] and reason in m["reason"], (kind, modality, m)
        assert all(reason in w["modalities"][modality]["reason"] for w in outcome.windows), (kind, modality)
    assert expect.transcript in outcome.transcript.lower().replace(" ", ""), (kind, outcome.transcript)
    if expect.check is not None:
        expect.check(outcome)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    need_data("videos")
    folder = tmp_path_factory.mktemp("bad_media")
    kinds = build_bad_media(folder)
    assert set(kinds) == set(EXPECTED)
    return folder


def file_names() -> dict[str, str]:
    return {kind: name for kind, (name, _) in BAD_MEDIA.items()}


async def test_analyze_reports_every_bad_input_and_carries_on(media, tmp_path):
    """One `vidsent analyze` over every kind at once, held to file modes even as root (the unreadable case)."""
    paths = [str(media / name) for name in file_names().values()] + URLS_FOR_ANALYZE
    out_json = tmp_path / "results.json"
    process = await asyncio.create_subprocess_exec(
        *file_modes_apply_argv(), *VIDSENT, "analyze", *paths, "--json", str(out_json),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 240)
    finally:
        if process.returncode is None:
            process.kill()
    out, err = stdout.decode(), stderr.decode()
    assert "Traceback" not in out + err, err
    errors = [e.error for e in EXPECTED.values() if e.error] + ["bad_url"] * len(URLS_FOR_ANALYZE)
    assert process.returncode == 1 and f"{len(errors)} of {len(paths)} file(s) could not be analysed" in err, err
    lines = [line for line in out.splitlines() if line.startswith(("✓ ", "✗ "))]  # not the lines per person
    results = json.loads(out_json.read_text())
    assert [r["file"] for r in results] == paths
    for kind, line, result in zip(EXPECTED, lines, results):
        expected_error = EXPECTED[kind].error
        mark = "✗" if expected_error else "✓"
        assert line.startswith(f"{mark} {result['file']}: "), (kind, line)
        if expected_error:
            assert line.endswith(f"[{expected_error}]"), (kind, line)
        check(kind, Outcome(result.get("error"), result["windows"], result["modalities"], result["transcript"],
                            result["duration"]))
    for url, line in zip(URLS_FOR_ANALYZE, lines[len(EXPECTED):]):
        assert line.startswith(f"✗ {url}: ") and line.endswith("[bad_url]") and "is a URL, not a file" in line


async def next_of_type(ws, type_: str, timeout: float = 10.0):
    async with asyncio.timeout(timeout):
        while (message := parse_message(await ws.recv())).type != type_:
            assert message.type != "error", message
    return message


async def test_every_bad_input_through_a_websocket_start(engine, media):
    """Each kind started by its relative name on one connection: an error then `end`, or windows then `end` (eof);
    the connection answers `list` after each, and no message names where the media folder is."""
    loop = asyncio.get_running_loop()
    # the server opens and decodes files in the loop's worker threads: hold them to file modes, as root too
    loop.set_default_executor(ThreadPoolExecutor(4, initializer=apply_file_modes_in_this_thread))
    with pytest.raises(PermissionError):  # the unreadable case is real
        await asyncio.to_thread((media / file_names()["unreadable"]).read_bytes)
    never_streams = socket.create_server(("127.0.0.1", 0))  # the kernel accepts connections; nothing ever answers
    rtsp_url = f"rtsp://127.0.0.1:{never_streams.getsockname()[1]}/live"
    hub = make_hub(engine, media, rtsp_hosts=["127.0.0.1"], rtsp_options={"open_timeout_s": 1, "read_timeout_s": 1})
    texts: list[str] = []
    try:
        async with RunningServer(hub) as server, connect(server.url) as ws:
            await next_of_type(ws, "hello")
            for kind, name in file_names().items():
                messages = await collect(ws, await start(ws, name), timeout=60)
                texts += [m.dumps() for m in messages]
                errors = [m for m in messages if m.type == "error"]
                end = messages[-1]
                assert end.type == "end" and end.summary["reason"] == ("error" if errors else "eof"), (kind, end)
                windows = [m.to_json() for m in messages if m.type == "window"]
                error = {"code": errors[0].code, "message": errors[0].message} if errors else None
                check(kind, Outcome(error, windows, end.summary["modalities"], end.summary["transcript"],
                                    end.summary["duration"]))
                if kind == "empty_audio_track":
                    assert any(m.type == "status" and "audio track is empty" in m.detail for m in messages)
                await ws.send(json.dumps({"type": "list"}))
                await next_of_type(ws, "streams")

            started = loop.time()
            messages = await collect(ws, await start(ws, rtsp_url), timeout=15)
            texts += [m.dumps() for m in messages]
            assert [m.code for m in messages if m.type == "error"] == ["unreachable"], messages
            assert messages[-1].type == "end" and messages[-1].summary["reason"] == "error"
            assert loop.time() - started < 15

            for disallowed in ("http://127.0.0.1/clip.mp4", f"file:{media / file_names()['wrong_extension']}",
                               "file:///etc/passwd"):
                await ws.send(json.dumps({"type": "start", "source": disallowed, "realtime": False}))
                message = parse_message(await asyncio.wait_for(ws.recv(), 10))
                assert message.type == "error" and message.code == "not_allowed" and message.message, message
            await ws.send(json.dumps({"type": "list"}))
            await next_of_type(ws, "streams")
    finally:
        never_streams.close()
    leaks = [t for t in texts if str(media) in t or str(VIDEOS) in t]
    assert not leaks, leaks[:3]


def test_rotated_video_reaches_the_face_detector_upright(media):
    """The display matrix is applied: the rotated copy's sampled frames are the original's, faces and all."""
    from models.visual import FaceDetector

    original = sample_video(need_data("videos", FACE), 2.0)
    rotated = sample_video(media / file_names()["rotated"], 2.0)
    assert len(rotated) == len(original) >= 4
    detector = FaceDetector("full")
    for a, b in zip(original, rotated):
        assert b.image.shape == a.image.shape == (360, 640, 3)
        assert np.abs(a.image.astype(np.int16) - b.image).mean() < 8  # only re-encoding differs
    assert [len(detector.detect(f.image)) for f in rotated] == [len(detector.detect(f.image)) for f in original]
    assert all(detector.detect(f.image) for f in rotated)
