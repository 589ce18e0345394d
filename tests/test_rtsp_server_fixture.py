"""The loopback RTSP test server serves a real clip's own pictures and sound, paced in real time, over TCP."""

from __future__ import annotations

import os
import time
from pathlib import Path

import av
import numpy as np
import pytest

from testkit.data import DATA, need_data
from testkit.rtsp_server import rtsp_server_available, start_rtsp_server, stop

CLIP = DATA / "videos" / "vna_0008.mp4"  # 2.7 s, 1920x804 25 fps H.264 + 48 kHz stereo AAC: served as 1280x536
OPTIONS = {"rtsp_transport": "tcp"}
TIMEOUT = (5.0, 5.0)

pytestmark = pytest.mark.slow  # the real RTSP server, at real-time pace


@pytest.fixture(scope="module", autouse=True)
def _needs_server_and_data() -> None:
    need_data(*CLIP.relative_to(DATA).parts)
    ok, reason = rtsp_server_available()
    if not ok:
        if os.environ.get("VIDSENT_REQUIRE_RTSP_SERVER") == "1":
            pytest.fail(f"RTSP test server required here but unavailable: {reason}")
        pytest.skip(reason)


def _mono_16k(frames: list[av.AudioFrame]) -> np.ndarray:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
    out = [f.to_ndarray().reshape(-1) for frame in frames for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out)


def _best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int) -> float:
    """Highest normalised correlation of ``a`` delayed by 0..max_lag samples against ``b``."""
    n = min(len(a), len(b)) - max_lag
    ref = b[:n] - b[:n].mean()
    best = -1.0
    for lag in range(max_lag + 1):
        seg = a[lag:lag + n] - a[lag:lag + n].mean()
        best = max(best, float(seg @ ref / (np.linalg.norm(seg) * np.linalg.norm(ref) + 1e-9)))
    return best


def _grey(frame: av.VideoFrame, size: tuple[int, int] = (64, 27)) -> np.ndarray:
    img = frame.reformat(width=size[0], height=size[1], format="gray").to_ndarray().astype(np.float32)
    return (img - img.mean()) / (img.std() + 1e-6)


def _read(url: str, media_seconds: float) -> tuple[list[av.VideoFrame], list[av.AudioFrame], float]:
    """Decode until both streams reach ``media_seconds``; returns the frames and the wall time it took after open."""
    video, audio = [], []
    with av.open(url, options=OPTIONS, timeout=TIMEOUT) as container:
        start = time.monotonic()
        for packet in container.demux():
            for frame in packet.decode():
                (video if packet.stream.type == "video" else audio).append(frame)
            ends = [frames[-1].time or 0.0 for frames in (video, audio) if frames]
            if len(ends) == 2 and min(ends) >= media_seconds:
                break
            assert time.monotonic() - start < media_seconds + 10, "stream stalled"
        return video, audio, time.monotonic() - start


def test_serves_the_clips_pictures_and_sound_in_real_time_and_loops() -> None:
    proc, url = start_rtsp_server(CLIP, loop=True)
    try:
        video, audio, wall = _read(url, media_seconds=3.5)  # longer than the clip: crosses one loop
    finally:
        stop(proc)
    assert proc.returncode == 0, "SIGTERM should end the server cleanly"

    assert (video[-1].width, video[-1].height) == (1280, 536)
    assert 3.5 * 25 - 5 <= len(video) <= 3.5 * 25 + 10
    video_times = [f.time for f in video if f.time is not None]
    audio_times = [f.time for f in audio]
    assert np.all(np.diff(video_times) > 0) and np.all(np.diff(audio_times) > 0), "timestamps run on across the loop"
    assert audio[0].sample_rate == 48000
    # av.open reads about a second ahead to probe the streams; the rest arrives at the clip's own pace.
    assert wall > 3.5 - 1.6

    with av.open(str(CLIP)) as original:
        source_audio = _mono_16k(list(original.decode(audio=0)))
    with av.open(str(CLIP)) as original:
        source_frame = next(f for f in original.decode(video=0) if f.time >= 1.0)
    served_audio = _mono_16k(audio)[: 16000 * 2]
    reference = source_audio[: 16000 * 2]
    assert np.sqrt(np.mean(served_audio**2)) > 0.01, "the clip's speech, not silence"
    # The AAC encoder's priming delays the served sound by one frame (1024 samples, ~21 ms); allow up to 60 ms.
    assert _best_correlation(served_audio, reference, max_lag=960) > 0.9
    served_frame = next(f for f in video if f.time is not None and f.time >= 1.0)
    assert np.mean(_grey(served_frame) * _grey(source_frame)) > 0.9, "the same picture as the file at 1 s"


def test_a_clip_without_audio_is_served_as_video_only(tmp_path: Path) -> None:
    video_only = tmp_path / "video_only.mp4"
    with av.open(str(CLIP)) as src, av.open(str(video_only), "w") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = out
                dst.mux(packet)
    proc, url = start_rtsp_server(video_only)
    try:
        with av.open(url, options=OPTIONS, timeout=TIMEOUT) as container:
            assert [s.type for s in container.streams] == ["video"]
            frames = [f for _, f in zip(range(25), container.decode(video=0))]
    finally:
        stop(proc)
    assert len(frames) == 25 and frames[-1].width == 1280


def test_a_file_that_is_not_media_fails_with_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("not a video")
    with pytest.raises(RuntimeError, match="cannot read"):
        start_rtsp_server(bogus)
