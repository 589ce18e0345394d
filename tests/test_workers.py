"""The shared workers (workers.py): Whisper passes in fair turn across streams, and scoring batched across
streams — batched scores equal one-by-one scores on real clips, a slow stream delays another by at most its fair
share, one stream's bad request fails only that request, and the thread plan follows the machine."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import threading
import time

import numpy as np
import pytest

from engine import Engine, PipelineConfig, StreamPipeline, analyze_file
from engine.workers import FairScheduler, ScoreBatcher, WorkersClosed
from models.base import MODALITIES, ModalityScore
from models.runtime import thread_plan, usable_cores
from models.scoring import ScorerSet
from models.whisper import compute_type
from protocol import WindowMessage
from stream.windows import Window
from testkit.data import need_data
from testkit.fakes import Brightness, ConstantScorer, FakeASR, ScriptedSource, SlowFrames, fake_engine


# --------------------------------------------------------------------------------------------- FairScheduler
def test_the_least_served_stream_goes_first():
    async def main():
        scheduler = FairScheduler(1, "test-asr")
        gate = threading.Event()
        order: list[str] = []
        try:
            # accounts: "mid" has used 0.1 s of passes; "long" joins level with it and uses 0.3 s more
            await scheduler.run("mid", time.sleep, 0.1)
            await scheduler.run("long", time.sleep, 0.3)
            blocker = asyncio.ensure_future(scheduler.run("blocker", gate.wait))
            await asyncio.sleep(0.05)  # the one worker is busy: the next three wait together
            waiting = [asyncio.ensure_future(scheduler.run(key, order.append, key)) for key in ("long", "mid", "new")]
            await asyncio.sleep(0.05)
            gate.set()
            await asyncio.gather(blocker, *waiting)
        finally:
            scheduler.close()
        return order, scheduler

    order, scheduler = asyncio.run(main())
    # a newcomer starts level with the least-served stream ("mid"; a tie goes in arrival order), and "long", which
    # has been served most, waits for both although it asked first
    assert order == ["mid", "new", "long"]


@pytest.mark.slow  # real passes: seconds of wall time
def test_a_live_stream_waits_at_most_one_pass_of_a_stream_that_replays_as_fast_as_it_can():
    events: list[str] = []  # appended from the loop ("live asks") and the worker ("replay pass", "live pass")

    def replay_pass():
        events.append("replay pass")
        time.sleep(0.2)

    async def main():
        scheduler = FairScheduler(1, "test-asr")
        stop = False

        async def greedy():  # always has a pass waiting
            while not stop:
                await scheduler.run("replay", replay_pass)

        hog = [asyncio.ensure_future(greedy()) for _ in range(3)]  # even three passes queued at once
        await asyncio.sleep(0.3)
        for _ in range(5):
            events.append("live asks")
            await scheduler.run("live", events.append, "live pass")
            await asyncio.sleep(0.3)
        stop = True
        await asyncio.gather(*hog)
        scheduler.close()
        return scheduler.served_s("replay")

    replay_served = asyncio.run(main())
    waits = []  # replay passes begun between each live request and its pass
    for asked in (i for i, event in enumerate(events) if event == "live asks"):
        served = events.index("live pass", asked)
        waits.append(events[asked:served].count("replay pass"))
    assert len(waits) == 5 and max(waits) <= 1, waits  # one replay pass at most, never the three queued
    assert replay_served > 1.0  # the replay still used the worker the rest of the time


def test_errors_reach_their_caller_and_close_fails_the_waiting():
    async def main():
        scheduler = FairScheduler(1, "test-asr")

        def broken():
            raise ValueError("bad pass")

        with pytest.raises(ValueError, match="bad pass"):
            await scheduler.run("a", broken)
        assert await scheduler.run("a", lambda: 42) == 42
        gate = threading.Event()
        busy = asyncio.ensure_future(scheduler.run("a", gate.wait, 5))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(scheduler.run("b", lambda: 1))
        await asyncio.sleep(0.05)
        closing = asyncio.ensure_future(asyncio.to_thread(scheduler.close))  # close waits for the busy pass
        with pytest.raises(WorkersClosed):
            await queued
        gate.set()
        await closing
        await busy
        with pytest.raises(WorkersClosed):
            await scheduler.run("c", lambda: 1)

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------- ScoreBatcher
class RecordingScorer(ConstantScorer):
    """Scores a window by its index; remembers the batch sizes; raises on the window indices in `broken`."""

    def __init__(self, modality: str, broken=(), delay_for=None):
        super().__init__(modality, 0.5)
        self.batches: list[int] = []
        self.broken = set(broken)
        self.delay_for = delay_for or (lambda window: 0.0)

    def score_batch(self, windows):
        self.batches.append(len(windows))
        time.sleep(sum(self.delay_for(w) for w in windows))
        if any(w.index in self.broken for w in windows):
            raise RuntimeError("injected fault")
        return [ModalityScore.of(0.1 + 0.01 * (w.index % 50)) for w in windows]


class FakeWindow:
    def __init__(self, index: int):
        self.index, self.audio, self.frames, self.transcript, self.speech_spans = index, np.zeros(0), [], "x", []


class CountingFrames:
    def __init__(self):
        self.calls: list[int] = []

    def analyze(self, images):
        self.calls.append(len(images))
        if any(image.shape[0] == 1 for image in images):
            raise ValueError("a frame of one row")
        return [Brightness(float(image.mean())) for image in images]


def recording_set(**kwargs) -> ScorerSet:
    return ScorerSet(RecordingScorer("text", **kwargs), RecordingScorer("audio", **kwargs),
                     RecordingScorer("visual", **kwargs), CountingFrames())


def test_requests_of_several_streams_arrive_as_one_batch_and_each_gets_its_own_answer():
    async def main():
        scorers = recording_set()
        batcher = ScoreBatcher(scorers, max_wait_s=0.2, frames_together=True)
        for stream in ("a", "b", "c"):
            batcher.join(stream)
        try:
            results = await asyncio.gather(
                batcher.score("a", FakeWindow(1)), batcher.score("b", FakeWindow(2)),
                batcher.score("c", FakeWindow(3), has_video=False),
                batcher.analyze("a", [np.full((4, 4, 3), 10, np.uint8)]),
                batcher.analyze("b", [np.full((4, 4, 3), v, np.uint8) for v in (20, 30)]))
        finally:
            batcher.close()
        return scorers, batcher, results

    scorers, batcher, (a, b, c, frames_a, frames_b) = asyncio.run(main())
    assert [a["text"].score, b["text"].score, c["text"].score] == pytest.approx([0.11, 0.12, 0.13])
    assert c["visual"].reason == "no video track" and a["visual"].available
    assert scorers.text.batches == [3] and scorers.visual.batches == [2]  # one batch per modality
    assert scorers.frames.calls == [3]
    assert [f.value for f in frames_a] == [10.0] and [f.value for f in frames_b] == [20.0, 30.0]
    assert batcher.stats.batches == 1 and batcher.stats.multi_stream == 1


def test_a_request_that_breaks_the_batch_fails_alone():
    async def main():
        batcher = ScoreBatcher(recording_set(broken={2}), max_wait_s=0.2, frames_together=True)
        for stream in ("a", "b"):
            batcher.join(stream)
        try:
            return await asyncio.gather(
                batcher.score("a", FakeWindow(1)), batcher.score("b", FakeWindow(2)),
                batcher.analyze("a", [np.zeros((4, 4, 3), np.uint8)]),
                batcher.analyze("b", [np.zeros((1, 4, 3), np.uint8)]), return_exceptions=True)
        finally:
            batcher.close()

    a, b, frames_a, frames_b = asyncio.run(main())
    assert all(a[m].available for m in MODALITIES)
    assert all(b[m].reason == f"{m} scorer failed: RuntimeError" for m in MODALITIES)
    assert isinstance(frames_b, ValueError) and len(frames_a) == 1


@pytest.mark.slow  # real-time pace
def test_a_slow_stream_delays_another_by_at_most_its_fair_share():
    """Stream "slow" is replayed as fast as possible and every one of its frames costs the analyzer 0.1 s; stream
    "live" plays at real-time pace. Each request of the live stream (its frames, its windows' scores) waits at most
    for the slow stream's request in progress and one more, never a backlog of them, and the slow stream has the
    analyzer the rest of the time. Counted in the order things happen (a request is served when the batcher
    starts on it), not timed, so a busy machine cannot fail it."""
    order = itertools.count()
    slow_starts: list[int] = []  # when each of the slow stream's analyses started
    live_frames_served: list[int] = []  # when each analysis of the live stream's frames started
    live_windows_served: dict[int, int] = {}  # id of a live window → when the batch that scored it started

    class SlowForWideFrames:
        def __init__(self):
            self.slow_images = 0

        def analyze(self, images):
            wide = sum(image.shape[1] > 64 for image in images)
            (slow_starts if wide else live_frames_served).append(next(order))
            self.slow_images += wide
            time.sleep(0.1 * wide)
            return [Brightness(float(image.mean())) for image in images]

    class WideFrames(ScriptedSource):
        async def __aiter__(self):
            async for item in super().__aiter__():
                if hasattr(item, "image"):
                    item = type(item)(item.t, np.repeat(item.image, 2, axis=1))
                yield item

    scorers = fake_engine().scorers
    scorers.frames = SlowForWideFrames()
    engine = Engine(scorers=scorers, transcriber=FakeASR, device="cpu")
    frames_asked: list[int] = []  # when the live stream asked for each analysis of its frames
    windows_asked: dict[int, tuple[Window, int]] = {}  # id → (a live window, when its scores were asked for);
    # the windows are kept, so no other object takes one's id
    analyze_frames, score_window, score = engine.analyze_frames, engine.score_window, scorers.score

    async def logged_frames(stream, images):
        if stream.stream_id == "live":
            frames_asked.append(next(order))
        return await analyze_frames(stream, images)

    async def logged_window(stream, window, *args):
        if stream.stream_id == "live":
            windows_asked[id(window)] = (window, next(order))
        return await score_window(stream, window, *args)

    def logged_score(windows, *args):
        started = next(order)
        live_windows_served.update((id(w), started) for w in windows if id(w) in windows_asked)
        return score(windows, *args)

    engine.analyze_frames, engine.score_window, scorers.score = logged_frames, logged_window, logged_score
    live: list[WindowMessage] = []

    async def main():
        slow = StreamPipeline("slow", WideFrames(60.0, fps=4.0), engine, PipelineConfig())
        fast = StreamPipeline("live", ScriptedSource(8.0, realtime=True, fps=4.0), engine, PipelineConfig(),
                              emit=lambda m: isinstance(m, WindowMessage) and live.append(m))
        slow_task = asyncio.ensure_future(slow.run())
        await fast.run()
        slow.stop()
        await slow_task

    try:
        asyncio.run(main())
    finally:
        engine.close()
    assert len(live) == 3
    waits = [("frames", asked, served) for asked, served in zip(frames_asked, live_frames_served, strict=True)]
    waits += [("window", asked, live_windows_served[key]) for key, (_, asked) in windows_asked.items()]
    assert len(waits) >= 6
    for what, asked, served in waits:
        started_meanwhile = sum(asked < start < served for start in slow_starts)
        assert started_meanwhile <= 1, (what, started_meanwhile)
    assert scorers.frames.slow_images >= 40  # ~8 s of the slow stream's 4 fps at 0.1 s each, not starved


def test_media_and_text_requests_share_batches_and_scoring_the_text_adds_what_the_audio_heard():
    from models.audio import heard_shares

    class SpokenWindow(FakeWindow):
        def __init__(self, index: int):
            super().__init__(index)
            self.audio = np.full(4 * 16000, 0.1, np.float32)  # 4 s of sound, speech in its first second
            self.speech_spans = [(0.0, 1.0)]

    async def main():
        scorers = recording_set()
        batcher = ScoreBatcher(scorers, max_wait_s=0.2)
        for stream in ("a", "b"):
            batcher.join(stream)
        try:
            media = await asyncio.gather(batcher.score("a", SpokenWindow(1), modalities=("audio", "visual")),
                                         batcher.score("b", SpokenWindow(2), modalities=("audio", "visual")))
            both = await asyncio.gather(
                batcher.score("a", SpokenWindow(1), modalities=("text",), scored=media[0]),
                batcher.score("b", SpokenWindow(3)))
        finally:
            batcher.close()
        return scorers, media, both

    scorers, (media_a, media_b), (text_a, all_b) = asyncio.run(main())
    assert list(media_a) == ["audio", "visual"] and "speech_share" not in media_a["audio"].details
    assert list(text_a) == list(all_b) == list(MODALITIES)
    assert text_a["audio"].score == media_a["audio"].score and text_a["text"].score == pytest.approx(0.11)
    # the call that reads the words says what the audio heard; the earlier score itself is left as it was
    for row in (text_a, all_b):
        heard = row["audio"].details
        assert heard == heard_shares(SpokenWindow(0).audio, [(0.0, 1.0)])
        assert heard["speech_share"] == pytest.approx(0.25, abs=0.01) and heard["silence_share"] == 0.0
    assert media_a["audio"].details == {}
    # the media of both streams in one batch; then the text-only request and the whole one in one batch too
    assert scorers.audio.batches == [2, 1] and scorers.text.batches == [2] and scorers.visual.batches == [2, 1]


def test_beside_runs_two_halves_at_once_and_keeps_the_side_half_single_user():
    from models.runtime import beside

    gate = threading.Barrier(2, timeout=5)  # both halves must be running at the same time to pass it
    assert beside(lambda: gate.wait() is not None and "side", lambda: gate.wait() is not None and "here") == \
        ("side", "here")
    finished = []

    def slow_side():
        time.sleep(0.2)
        finished.append("side")

    def failing_here():
        raise ValueError("bad frame")

    with pytest.raises(ValueError, match="bad frame"):
        beside(slow_side, failing_here)
    assert finished == ["side"]  # the side half ended before the error was raised
    with pytest.raises(KeyError):
        beside(lambda: {}["missing"], lambda: None)


def test_thread_plan_follows_the_cores_and_the_device():
    assert usable_cores() >= 1
    small = thread_plan("cpu", 2)
    assert (small.asr_workers, small.asr_threads, small.torch_threads) == (1, 2, 1)
    big = thread_plan("cpu", 16)
    assert big.torch_threads == 4 and big.asr_workers == 6 and big.asr_threads == 2
    assert big.asr_workers * big.asr_threads + big.torch_threads <= 16
    gpu = thread_plan("cuda", 8)
    assert gpu.asr_workers == 2 and gpu.batch_windows > small.batch_windows
    assert compute_type("cuda") == "float16" and compute_type("cpu") == "int8"


# ---------------------------------------------------------------------------- real models: batch == one by one
def test_batched_scores_equal_one_by_one_scores_on_real_clips(engine):
    """Windows of three clips scored together (their media before their words, their text after) give each window
    the scores that one ScorerSet.score of that window alone gives."""
    clips = [need_data("videos", name) for name in ("vna_mosi_2.6.mp4", "pyfeat_single_face.mp4",
                                                     "vna_original_2.mp4")]
    shared = Engine(scorers=engine.scorers, transcriber=engine.transcriber, device=engine.device,
                    batch_wait_s=0.05)
    seen: list[tuple] = []
    score_window = shared.score_window

    async def recording(stream, window, has_audio, has_video, modalities=MODALITIES, scored=None):
        scores = await score_window(stream, window, has_audio, has_video, modalities, scored)
        seen.append((window, has_audio, has_video, modalities, scores))
        return scores

    shared.score_window = recording

    async def main():
        return await asyncio.gather(*(analyze_file(clip, shared, PipelineConfig()) for clip in clips))

    try:
        results = asyncio.run(main())
    finally:
        shared.close()
    final = [(window, has_audio, has_video, scores) for window, has_audio, has_video, modalities, scores in seen
             if "text" in modalities]
    assert all("error" not in r for r in results) and len(final) == sum(len(r["windows"]) for r in results)
    assert len(seen) > len(final)  # some windows had their audio and visual scored before their words were in
    assert shared.batcher.stats.multi_stream > 0  # windows of different clips were scored together
    assert any("impressive" in r["transcript"].lower() for r in results)
    for window, has_audio, has_video, batched in final:
        alone = engine.scorers.score([window], has_audio, has_video)[0]
        assert list(batched) == list(MODALITIES)
        for modality in MODALITIES:
            assert batched[modality].available == alone[modality].available, (window.index, modality)
            assert batched[modality].reason == alone[modality].reason
            if alone[modality].available:
                assert batched[modality].score == pytest.approx(alone[modality].score, abs=1e-4)
                assert batched[modality].confidence == pytest.approx(alone[modality].confidence, abs=1e-4)
        if alone["audio"].available:  # what the audio heard, from the words the text was scored with
            shares = ("speech_share", "silence_share", "other_sound_share")
            assert [batched["audio"].details[k] for k in shares] == [alone["audio"].details[k] for k in shares]


def test_device_cuda_without_a_gpu_is_one_clear_line_not_a_traceback(capsys):
    import torch

    import cli

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --device cuda is valid here")
    clip = need_data("videos", "vna_mosi_2.6.mp4")
    assert cli.main(["analyze", "--device", "cuda", str(clip)]) == 2
    err = capsys.readouterr().err
    assert "torch sees no CUDA GPU" in err and "Traceback" not in err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="only Linux gives each thread its own nice value")
def test_the_scoring_thread_can_yield_the_cpu_to_whisper():
    batcher = ScoreBatcher(scorers=None)
    try:
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        assert batcher.lower_priority(10)
        (thread,) = batcher._threads
        assert os.getpriority(os.PRIO_PROCESS, thread.native_id) == min(19, mine + 10)
        assert os.getpriority(os.PRIO_PROCESS, 0) == mine  # the caller's own priority is untouched
    finally:
        batcher.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="only Linux gives each thread its own nice value")
def test_analyze_fast_lowers_the_scorers_runtime_threads_but_not_whispers(monkeypatch):
    """A model runtime may compute on threads of its own (CTranslate2 runs the audio encoder on a worker started
    with the model): Engine.lower_scoring_priority lowers the threads started while the scorers were built, and
    leaves those started while Whisper was loaded."""
    import engine.engine as engine_module

    stop = threading.Event()
    started: dict[str, threading.Thread] = {}

    def runtime_thread(name: str) -> None:
        thread = threading.Thread(target=stop.wait, name=name, daemon=True)
        thread.start()
        started[name] = thread

    class WhisperTranscribers:
        def __init__(self, size, device):
            runtime_thread("whisper-runtime")
            self.streaming, self.whole_file = FakeASR, None

    def build_scorers(device, heads_dir, fusion, text_evidence):
        runtime_thread("encoder-runtime")
        return ScorerSet(ConstantScorer("text", 0.5), ConstantScorer("audio", 0.5), ConstantScorer("visual", 0.5),
                         frames=SlowFrames(0.0))

    monkeypatch.setattr(engine_module, "WhisperTranscribers", WhisperTranscribers)
    monkeypatch.setattr(engine_module, "build_scorers", build_scorers)
    engine = Engine(device="cpu")
    try:
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        assert engine.lower_scoring_priority(10)
        nice = {name: os.getpriority(os.PRIO_PROCESS, thread.native_id) for name, thread in started.items()}
        (batcher_thread,) = engine.batcher._threads
        assert nice["encoder-runtime"] == min(19, mine + 10)
        assert os.getpriority(os.PRIO_PROCESS, batcher_thread.native_id) == min(19, mine + 10)
        assert nice["whisper-runtime"] == mine
        assert os.getpriority(os.PRIO_PROCESS, 0) == mine
    finally:
        stop.set()
        engine.close()
