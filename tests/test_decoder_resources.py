"""What a file's decoder holds in FFmpeg (its video decoder's frame threads and frame buffers, the demuxer, the audio
resampler's graph) goes when it is closed, or with its last reference, with Python's cyclic garbage collector off:
however its stream ends. Many streams in a row: test_faults.py (stream churn)."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time

import av
import numpy as np
import pytest

from engine import PipelineConfig, StreamPipeline
from stream.sources import VIDEO_DECODER_THREADS, Decoder, FileSource, MonoResampler
from testkit.data import need_data
from testkit.fakes import fake_engine

CLIP_1080P = ("videos", "vna_0008.mp4")  # 2.7 s, 1920x804 H.264 and AAC: the decoder that holds the most

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")


def native_only_threads() -> int:
    """Threads Python does not know of: the native libraries' own (FFmpeg's)."""
    return len(os.listdir("/proc/self/task")) - threading.active_count()


def native_only_threads_back_to(count: int, timeout_s: float = 1.0) -> bool:
    """Whether native_only_threads() is at most `count` within the timeout: a Python thread that has just ended
    (asyncio.run's executor) is no longer Python's a moment before the system's task list drops it."""
    deadline = time.monotonic() + timeout_s
    while native_only_threads() > count and time.monotonic() < deadline:
        time.sleep(0.01)
    return native_only_threads() <= count


@pytest.fixture
def no_cyclic_gc():
    was_on = gc.isenabled()
    gc.collect()
    gc.disable()
    yield
    if was_on:
        gc.enable()


def decoding(clip: tuple[str, str]) -> Decoder:
    """A clip's decoder, a few batches into the media (its threads started)."""
    decoder = FileSource(need_data(*clip), realtime=False)._open_blocking()
    for _ in range(3):
        assert decoder.read_batch()
    return decoder


def test_a_decoder_closed_mid_file_frees_its_threads_at_once(no_cyclic_gc):
    before = native_only_threads()
    decoder = decoding(CLIP_1080P)
    # frame threads, a few (FFmpeg's default is one per core and one more, up to 16), and none for the audio
    assert 0 < native_only_threads() - before <= VIDEO_DECODER_THREADS
    decoder.close()
    assert native_only_threads_back_to(before), (before, native_only_threads())
    assert decoder.read_batch() is None  # closed: the end, whoever still reads


def test_a_decoder_nobody_closed_goes_with_its_last_reference(no_cyclic_gc):
    """As when a stream is stopped while its source is still opening: the opened decoder is dropped, not closed."""
    before = native_only_threads()
    decoder = decoding(CLIP_1080P)
    assert native_only_threads() > before
    del decoder
    assert native_only_threads_back_to(before), (before, native_only_threads())


def test_a_stream_whose_decoder_fails_frees_its_threads_though_the_error_is_kept(no_cyclic_gc, monkeypatch):
    """An error out of the decoder ends the stream; the error stays referenced for a while (by the ingest task, in a
    reference cycle with the pipeline's frames), its traceback with it: that must not keep FFmpeg's decoder."""
    sample = Decoder._video_item

    def failing_after_a_second(self, frame, time_base):
        if frame.pts is not None and frame.pts * time_base[0] / time_base[1] > 1.0:
            raise RuntimeError("a decoder fault")
        return sample(self, frame, time_base)

    monkeypatch.setattr(Decoder, "_video_item", failing_after_a_second)
    before = native_only_threads()
    engine = fake_engine()
    try:
        source = FileSource(need_data(*CLIP_1080P), realtime=False)
        messages: list = []
        end = asyncio.run(StreamPipeline("failing", source, engine, PipelineConfig(), emit=messages.append).run())
    finally:
        engine.close()
    assert end.summary["reason"] == "error"
    assert any(m.type == "error" and m.code == "internal" for m in messages)
    assert native_only_threads_back_to(before), (before, native_only_threads())


def test_the_resampler_gives_av_resamplers_samples_on_one_thread():
    path = need_data(*CLIP_1080P)
    with av.open(str(path)) as container:
        frames = list(container.decode(audio=0))

    def resampled(resampler) -> np.ndarray:
        return np.concatenate([out.to_ndarray().reshape(-1) for frame in [*frames, None]
                               for out in resampler.resample(frame)])

    before = native_only_threads()
    resampler = MonoResampler()
    ours = resampled(resampler)
    assert native_only_threads_back_to(before)  # while it lives: av.AudioResampler's graph runs a thread per core
    assert ours.dtype == np.float32 and len(ours) > 40000
    assert np.array_equal(ours, resampled(av.AudioResampler(format="flt", layout="mono", rate=16000)))
