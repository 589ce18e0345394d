"""StreamPipeline without any model: fake scorers, a fake transcriber and a scripted source (models/scoring.py's
interface; testkit/fakes.py), for scheduling, end of media, drop policy, missing tracks and faults. Fast; no real
data needed."""

from __future__ import annotations

import asyncio
import time

import pytest

from engine import Engine, PipelineConfig, StreamPipeline
from media import Word
from models.scoring import ScorerSet
from protocol import (
    EndMessage,
    ErrorMessage,
    StatusMessage,
    TranscriptMessage,
    WindowMessage,
)
from speech import AsrUpdate
from stream.sources import MediaSource
from testkit.data import need_data
from testkit.fakes import ConstantScorer, FakeASR, ScriptedSource, SlowFrames, fake_engine


def run(source: MediaSource, engine: Engine, **config) -> tuple[list, EndMessage]:
    messages: list = []
    pipeline = StreamPipeline("fake", source, engine, PipelineConfig(**config), emit=messages.append)
    try:
        end = asyncio.run(pipeline.run())
    finally:
        engine.close()
    return messages, end


def windows(messages) -> list[WindowMessage]:
    return [m for m in messages if isinstance(m, WindowMessage)]


def test_windows_cover_the_media_to_its_end_and_carry_every_part():
    source = ScriptedSource(9.0)
    messages, end = run(source, fake_engine())
    spans = [(w.index, w.t_start, w.t_end) for w in windows(messages)]
    assert spans == [(0, 0.0, 4.0), (1, 2.0, 6.0), (2, 4.0, 8.0), (3, 5.0, 9.0)]
    for w in windows(messages):
        assert {m: s["score"] for m, s in w.modalities.items()} == {"text": 0.8, "audio": 0.7, "visual": 0.6}
        assert w.fused["used"] == ["text", "audio", "visual"] and w.fused["missing"] == []
    assert windows(messages)[0].transcript == "zero one two three"
    finals = [m for m in messages if isinstance(m, TranscriptMessage) and m.final]
    assert " ".join(m.text for m in finals).split() == FakeASR.names[:9]
    assert end.summary["reason"] == "eof" and end.summary["windows"] == 4 and end.summary["duration"] == 9.0
    assert end.summary["label"] == "positive" and source.closed
    assert isinstance(messages[0], StatusMessage) and messages[0].state == "starting"


def test_a_scorer_that_raises_marks_its_modality_missing_and_the_stream_carries_on():
    messages, end = run(ScriptedSource(6.0), fake_engine(fail=("audio",)))
    assert len(windows(messages)) == 2
    for w in windows(messages):
        assert w.modalities["audio"] == {"score": None, "label": None, "available": False,
                                         "reason": "audio scorer failed: RuntimeError", "confidence": 0.0}
        assert w.modalities["text"]["available"] and w.modalities["visual"]["available"]
        assert w.fused["missing"] == ["audio"]
    assert end.summary["reason"] == "eof"
    assert end.summary["modalities"]["audio"]["reason"] == "audio scorer failed: RuntimeError"


@pytest.mark.parametrize("has_audio,has_video,missing", [
    (True, False, {"visual": "no video track"}),
    (False, True, {"text": "no audio track", "audio": "no audio track"}),
])
def test_a_missing_track_is_named_not_guessed(has_audio, has_video, missing):
    engine = fake_engine()
    messages, end = run(ScriptedSource(5.0, has_audio=has_audio, has_video=has_video), engine)
    assert windows(messages)
    for w in windows(messages):
        for modality, reason in missing.items():
            assert w.modalities[modality]["reason"] == reason and not w.modalities[modality]["available"]
    assert engine.scorers.text.calls == (len(windows(messages)) if has_audio else 0)
    assert end.summary["windows"] == len(windows(messages))


@pytest.mark.slow  # real-time pace
def test_at_real_time_pace_a_slow_frame_analyzer_drops_frames_but_never_audio():
    engine = fake_engine(frames_delay=0.5)
    messages, end = run(ScriptedSource(5.0, realtime=True, fps=20.0), engine, frame_backlog=4)
    assert end.summary["dropped_frames"] > 0
    assert engine.scorers.frames.seen + end.summary["dropped_frames"] <= 100
    assert [(w.t_start, w.t_end) for w in windows(messages)] == [(0.0, 4.0), (1.0, 5.0)]
    assert all(w.latency_s is not None for w in windows(messages))
    assert end.summary["duration"] == 5.0  # every audio chunk arrived and was kept


def test_windows_far_behind_the_frame_analysis_still_get_all_their_frames():
    """Replayed as fast as possible, frames are analysed up to half the audio ring ahead of slow windows; each window
    must still pool every frame sampled inside it."""
    class SettlingASR(FakeASR):
        settle_s = 15.0

    engine = fake_engine()
    engine.transcriber = SettlingASR
    messages, end = run(ScriptedSource(40.0, fps=2.0), engine)
    full = [n for w, n in zip(windows(messages), engine.scorers.visual.frames_seen) if w.t_end - w.t_start == 4.0]
    assert len(full) == 19 and full == [8] * 19


def test_replayed_as_fast_as_possible_nothing_is_dropped():
    engine = fake_engine(frames_delay=0.05)
    messages, end = run(ScriptedSource(5.0, realtime=False, fps=20.0), engine, frame_backlog=4)
    assert end.summary["dropped_frames"] == 0 and engine.scorers.frames.seen == 100


def test_a_source_that_breaks_mid_stream_ends_with_its_error_after_the_windows_before_it():
    source = ScriptedSource(10.0, fail_at=7.0)
    messages, end = run(source, fake_engine())
    errors = [m for m in messages if isinstance(m, ErrorMessage)]
    assert [(e.code, e.stream) for e in errors] == [("corrupt_media", "fake")]
    assert len(windows(messages)) >= 2 and end.summary["reason"] == "error" and source.closed


@pytest.mark.slow  # real-time pace
def test_stop_ends_a_live_stream_with_reason_stopped():
    async def main():
        messages: list = []
        engine = fake_engine()
        pipeline = StreamPipeline("fake", ScriptedSource(30.0, realtime=True), engine, PipelineConfig(),
                                  emit=messages.append)
        task = asyncio.create_task(pipeline.run())
        while not windows(messages):
            await asyncio.sleep(0.05)
        pipeline.stop()
        end = await asyncio.wait_for(task, 5)
        engine.close()
        return messages, end

    messages, end = asyncio.run(main())
    assert end.summary["reason"] == "stopped" and end.summary["duration"] < 10


@pytest.mark.slow  # twelve timed stops
def test_stopping_a_file_stream_while_it_decodes_never_crashes_the_process():
    """Stopping closes the container; FFmpeg crashes the whole process on a container closed under a decode still
    running in its worker thread, so the close waits for that batch."""
    from stream.sources import FileSource

    path = need_data("videos", "vna_test.mp4")  # 1280x720: each batch decodes for a while

    async def main():
        engine = fake_engine()
        ends = []
        for attempt in range(12):
            pipeline = StreamPipeline("fake", FileSource(path, realtime=False), engine, PipelineConfig())
            task = asyncio.create_task(pipeline.run())
            await asyncio.sleep(0.05 + 0.02 * attempt)
            pipeline.stop()
            ends.append(await asyncio.wait_for(task, 10))
        engine.close()
        return ends

    ends = asyncio.run(main())
    assert all(end.summary["reason"] in ("stopped", "eof") for end in ends)


def test_long_asr_passes_behind_settling_words_never_stall_a_replay():
    """A replay whose ASR waits for 20 s of audio per pass while its words settle 10 s behind: reading must go on
    while the ASR waits for audio (it once stopped at the 30 s read-ahead bound and every task waited forever)."""
    class SettlingASR(FakeASR):
        settle_s = 10.0

    engine = fake_engine()
    engine.transcriber = SettlingASR

    async def main():
        pipeline = StreamPipeline("fake", ScriptedSource(80.0), engine, PipelineConfig(asr_fast_step_s=20.0))
        return await asyncio.wait_for(pipeline.run(), 30)

    try:
        end = asyncio.run(main())
    finally:
        engine.close()
    assert end.summary["reason"] == "eof" and end.summary["windows"] == 39 and end.summary["duration"] == 80.0


def logged_run(source: MediaSource, asr, text_delay: float = 0.0,
               **config) -> tuple[list, list[tuple[str, int]], list, StreamPipeline]:
    """Runs a pipeline whose scorers log (modality, window) as they score, and whose engine logs each scoring request
    as (modalities, window, whether the window's words were final when it was asked for)."""
    scored: list[tuple[str, int]] = []
    requests: list[tuple[tuple[str, ...], int, bool]] = []
    pipelines: list[StreamPipeline] = []

    class Logged(ConstantScorer):
        def score_batch(self, batch):
            scored.extend((self.modality, w.index) for w in batch)
            return super().score_batch(batch)

    scorers = ScorerSet(Logged("text", 0.8, delay=text_delay), Logged("audio", 0.7), Logged("visual", 0.6),
                        SlowFrames())
    engine = Engine(scorers=scorers, transcriber=asr, device="cpu")
    score_window = engine.score_window

    async def logged(stream, window, has_audio, has_video, modalities=("text", "audio", "visual"), done=None):
        requests.append((tuple(modalities), window.index, pipelines[0].asr_final_until >= window.t_end - 0.05))
        return await score_window(stream, window, has_audio, has_video, modalities, done)

    engine.score_window = logged
    messages: list = []
    pipelines.append(StreamPipeline("fake", source, engine, PipelineConfig(**config), emit=messages.append))
    try:
        asyncio.run(pipelines[0].run())
    finally:
        engine.close()
    return messages, scored, requests, pipelines[0]


def assert_each_modality_scored_once(scored, sent: list[WindowMessage]) -> None:
    for modality in ("text", "audio", "visual"):
        assert sorted(i for m, i in scored if m == modality) == [w.index for w in sent], modality
    for w in sent:
        assert {m: s["score"] for m, s in w.modalities.items()} == {"text": 0.8, "audio": 0.7, "visual": 0.6}


class SlowASR(FakeASR):
    pass_s = 0.1  # each pass takes this long: the source reads on ahead of the words

    def process(self):
        time.sleep(self.pass_s)
        return super().process()


def test_a_windows_audio_and_visual_are_scored_while_its_words_are_still_to_come():
    """Words that settle 6 s behind the audio: each window's audio and visual are asked for as soon as its media is
    in, ahead of the words; its text once they are final. Every modality of every window is scored exactly once, and
    the messages carry all three."""
    class SettlingASR(SlowASR):
        settle_s = 6.0

    messages, scored, requests, pipeline = logged_run(ScriptedSource(20.0), SettlingASR, asr_fast_step_s=2.0)
    sent = windows(messages)
    assert [w.index for w in sent] == list(range(9))
    assert_each_modality_scored_once(scored, sent)
    ahead = [i for modalities, i, final in requests if modalities == ("audio", "visual") and not final]
    assert len(ahead) >= 5, requests  # most windows' media went before their words were final
    # then each of those windows asked for its text alone; every text waited for its words
    assert sorted(i for modalities, i, _ in requests if modalities == ("text",)) == ahead
    assert all(final for modalities, _, final in requests if "text" in modalities)
    assert not pipeline.media_scores  # nothing scored ahead was left behind


@pytest.mark.slow  # real-time pace
def test_a_live_window_sent_before_its_words_is_scored_once():
    """Live, a window goes after a short grace even when speech recognition has not reached its end: its media,
    scored while it waited, is not scored again while its (slow) text is."""
    class SlowerASR(SlowASR):
        pass_s = 0.6

    messages, scored, requests, pipeline = logged_run(ScriptedSource(7.0, realtime=True), SlowerASR,
                                                      text_delay=0.3, asr_grace_s=0.2)
    sent = windows(messages)
    assert len(sent) == 3
    assert_each_modality_scored_once(scored, sent)
    assert not pipeline.media_scores


@pytest.mark.slow  # real-time pace
def test_a_live_window_that_goes_before_any_of_its_words_says_so():
    """Live, a window goes after a short grace even when speech recognition is behind (its first pass is slow, as
    a model warming up is): a window that has no words yet has its text missing because they are late, not "no
    speech"; the windows after it, once recognition caught up, have their text."""
    class ColdASR(FakeASR):
        first_pass_s = 5.0

        def process(self):
            time.sleep(self.first_pass_s)
            self.first_pass_s = 0.0
            return super().process()

    engine = fake_engine()
    engine.transcriber = ColdASR
    messages, _ = run(ScriptedSource(9.0, realtime=True), engine, asr_grace_s=0.2)
    sent = windows(messages)
    first, last = sent[0], sent[-1]
    assert first.transcript == ""
    assert not first.modalities["text"]["available"]
    assert first.modalities["text"]["reason"].startswith("words not in yet (speech recognition ")
    assert first.fused["missing"] == ["text"] and first.fused["used"] == ["audio", "visual"]
    assert last.transcript and last.modalities["text"]["available"]


class ScriptedFile(ScriptedSource):
    """A scripted source that says which file it replays, as FileSource does (the whole-file transcriber reads it)."""

    path = "scripted.mp4"


class FakeWholeFileASR:
    """Reports as speech.WholeFileASR does: per call, the words of one more segment (`segment_s` long), final up to
    its end; then done, with the transcript final everywhere. The first call takes first_call_s (Whisper's first
    window and the VAD over the whole file)."""

    whole_file = True
    pending_audio_s = 0.0
    step_s = 600.0

    def __init__(self, path, seconds: float, first_call_s: float = 0.0, segment_s: int = 2):
        self.path, self.seconds, self.first_call_s, self.segment_s = path, seconds, first_call_s, segment_s
        self.t, self.done, self.calls = 0.0, False, 0

    def insert_audio(self, samples, t):
        pass

    def process(self) -> AsrUpdate:
        self.calls += 1
        if self.calls == 1:
            time.sleep(self.first_call_s)
        if self.t >= self.seconds:
            self.done = True
            return AsrUpdate([], [], self.seconds, final_until=float("inf"))
        i = int(self.t)
        words = [Word(self.t + k + 0.2, self.t + k + 0.8, " " + FakeASR.names[(i + k) % len(FakeASR.names)])
                 for k in range(self.segment_s) if self.t + k < self.seconds]
        self.t += self.segment_s
        return AsrUpdate(words, [], min(self.t, self.seconds), final_until=min(self.t, self.seconds))


def test_a_replay_transcribed_whole_waits_for_final_words_and_scores_ready_windows_together():
    made = []

    def whole_file(path, language):
        # 4 s segments: each one after the first makes two windows' words final at once (with 2 s segments, one
        # window at a time, they went together only when scoring lagged behind the passes: not on a busy machine)
        made.append(FakeWholeFileASR(path, 9.0, first_call_s=0.3, segment_s=4))
        return made[-1]

    engine = fake_engine()
    engine.transcriber = lambda step_s, realtime, language: pytest.fail("the streaming transcriber was built")
    engine.whole_file_transcriber = whole_file
    messages, end = run(ScriptedFile(9.0), engine, asr_whole_file=True)
    assert [m.path for m in made] == ["scripted.mp4"] and made[0].done
    spans = [(w.index, w.t_start, w.t_end) for w in windows(messages)]
    assert spans == [(0, 0.0, 4.0), (1, 2.0, 6.0), (2, 4.0, 8.0), (3, 5.0, 9.0)]  # in order, each once
    assert windows(messages)[0].transcript == "zero one two three"
    assert windows(messages)[-1].transcript == "five six seven eight"
    assert end.summary["transcript"].split() == FakeASR.names[:9]
    # the source read on while the first segment was decoded: the windows that were then ready went as one batch
    assert engine.scorers.text.calls < len(spans) and engine.batcher.stats.largest > 1


def test_a_replay_whose_whole_file_decode_fails_is_transcribed_in_passes(caplog):
    def whole_file(path, language):
        raise RuntimeError("undecodable audio")

    engine = fake_engine()
    engine.whole_file_transcriber = whole_file
    with caplog.at_level("WARNING", logger="engine.pipeline"):
        messages, end = run(ScriptedFile(9.0), engine, asr_whole_file=True)
    assert "transcribing in passes, the whole-file decode failed: RuntimeError: undecodable audio" in caplog.text
    assert end.summary["reason"] == "eof" and end.summary["transcript"].split() == FakeASR.names[:9]


@pytest.mark.parametrize("realtime,whole_file", [pytest.param(True, True, marks=pytest.mark.slow), (False, False)])
def test_only_a_replay_as_fast_as_possible_with_asr_whole_file_is_transcribed_whole(realtime, whole_file):
    engine = fake_engine()
    engine.whole_file_transcriber = lambda path, language: pytest.fail("the whole-file transcriber was built")
    messages, end = run(ScriptedFile(5.0, realtime=realtime), engine, asr_whole_file=whole_file)
    assert end.summary["transcript"].split() == FakeASR.names[:5]
