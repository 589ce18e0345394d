"""Fakes of the models behind models/scoring.py's interface and of a media source: a StreamPipeline, an Engine or a
server runs on them without loading any model (fast; no real data needed)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np

from engine import Engine
from media import SAMPLE_RATE, AudioChunk, VideoFrame, Word
from models.base import ModalityScore
from models.scoring import ScorerSet
from speech import AsrUpdate
from speech.language import SpokenLanguage
from stream.sources import MediaSource, SourceError, SourceInfo


class ScriptedSource(MediaSource):
    """`seconds` of a quiet tone in 0.1 s chunks and frames at `fps`, in media-time order; optionally at real-time
    pace, optionally failing at `fail_at` seconds."""

    kind = "file"

    def __init__(self, seconds: float, *, has_audio=True, has_video=True, realtime=False, fps=2.0, fail_at=None):
        self.seconds, self.has_audio, self.has_video = seconds, has_audio, has_video
        self.realtime, self.fps, self.fail_at = realtime, fps, fail_at
        self.closed = False

    async def open(self) -> SourceInfo:
        return SourceInfo("file", "scripted", self.has_audio, self.has_video, self.seconds, 64, 48, self.fps)

    async def __aiter__(self):
        items = []
        if self.has_audio:
            tone = (0.1 * np.sin(np.arange(int(0.1 * SAMPLE_RATE)) * 0.2)).astype(np.float32)
            items += [(i / 10, AudioChunk(i / 10, tone)) for i in range(int(round(self.seconds * 10)))]
        if self.has_video:
            items += [(i / self.fps, VideoFrame(i / self.fps, np.full((48, 64, 3), i % 255, np.uint8)))
                      for i in range(int(self.seconds * self.fps))]
        start = time.monotonic()
        for t, item in sorted(items, key=lambda pair: (pair[0], isinstance(pair[1], VideoFrame))):
            if self.fail_at is not None and t >= self.fail_at:
                raise SourceError("corrupt_media", "the scripted source broke")
            ready = t + (0.1 if isinstance(item, AudioChunk) else 0.0)
            if self.realtime and (delay := start + ready - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)
            yield item

    async def close(self) -> None:
        self.closed = True


class FakeASR:
    """Commits one word per second of audio it was given ("one", "two", ...), as a transcriber would."""

    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"]
    whole_file = False
    done = False
    settle_s = 0.0  # how far behind what it heard its words are final (Whisper's buffer: up to ~10 s)

    def __init__(self, step_s: float, realtime: bool = True, language=None):
        self.step_s = step_s
        self.queued = 0.0
        self.until = 0.0
        self.said = 0

    def insert_audio(self, samples, t):
        self.queued += len(samples) / SAMPLE_RATE
        self.until = t + len(samples) / SAMPLE_RATE

    @property
    def pending_audio_s(self):
        return self.queued

    def _words(self, upto: float) -> list[Word]:
        words = []
        while self.said + 1 <= upto:
            words.append(Word(self.said + 0.2, self.said + 0.8, " " + self.names[self.said % len(self.names)]))
            self.said += 1
        return words

    def process(self) -> AsrUpdate:
        self.queued = 0.0
        return AsrUpdate(self._words(self.until), [], self.until, final_until=max(0.0, self.until - self.settle_s))

    def finish(self) -> AsrUpdate:
        self.queued = 0.0
        return AsrUpdate(self._words(self.until), [], self.until)


class PhrasesASR(FakeASR):
    """Commits scripted phrases, each (media start, text, language) spoken at seconds_per_word, as the audio
    reaches them, and reports the language of the latest phrase heard (p 0.95) as a transcriber that follows the
    language does."""

    phrases: list[tuple[float, str, str]] = []
    seconds_per_word = 1.0

    def __init__(self, step_s: float, realtime: bool = True, language=None):
        super().__init__(step_s, realtime, language)
        self.script: list[Word] = []
        for start, text, code in self.phrases:
            # as Whisper writes them: words with their leading space, or (Chinese, Japanese) one character each
            pieces = [" " + word for word in text.split()] if " " in text else list(text)
            step = self.seconds_per_word
            self.script += [Word(start + k * step, start + (k + 0.9) * step, piece, 0.9, code)
                            for k, piece in enumerate(pieces)]
        self.state: SpokenLanguage | None = None

    def _update(self, upto: float) -> AsrUpdate:
        """The words heard by `upto`, those of one language at most (a pass transcribes in one language)."""
        heard = [w for w in self.script if w.end <= upto]
        new = heard[:next((k for k, w in enumerate(heard) if w.language != heard[0].language), len(heard))]
        self.script = self.script[len(new):]
        if new and (self.state is None or self.state.language != new[0].language):
            previous = self.state.language if self.state else None
            self.state = SpokenLanguage(new[0].language, 0.95, new[0].start, previous)
        until = new[-1].end if len(new) < len(heard) else upto
        return AsrUpdate(new, [], until, language=self.state)

    def process(self) -> AsrUpdate:
        self.queued = 0.0
        return self._update(self.until)

    def finish(self) -> AsrUpdate:
        self.queued = 0.0
        return self._update(float("inf"))  # (the scripts of the tests end with their media's last step)


def phrases_asr(phrases: list[tuple[float, str, str]], seconds_per_word: float = 1.0) -> type[PhrasesASR]:
    """A PhrasesASR class (what an Engine's transcriber factory is) that says these phrases."""
    return type("ScriptedPhrasesASR", (PhrasesASR,), {"phrases": phrases, "seconds_per_word": seconds_per_word})


class ConstantScorer:
    """Scores every window `value` (or marks it missing where `part(window)` is false); raises when `fail`."""

    def __init__(self, modality: str, value: float, *, fail: bool = False, part=None, delay: float = 0.0):
        self.modality, self.value, self.fail, self.part, self.delay = modality, value, fail, part, delay
        self.calls = 0
        self.frames_seen: list[int] = []

    def score_batch(self, windows):
        self.calls += 1
        time.sleep(self.delay)
        self.frames_seen += [len(w.frames) for w in windows]
        if self.fail:
            raise RuntimeError("injected fault")
        out = []
        for w in windows:
            present = self.part(w) if self.part else True
            out.append(ModalityScore.of(self.value) if present else ModalityScore.missing("nothing to score"))
        return out


@dataclass
class Brightness:
    """A fake frame analysis: the picture's mean."""

    value: float


class SlowFrames:
    """A frame analyzer that takes `seconds_per_batch` per batch and counts the frames it saw."""

    def __init__(self, seconds_per_batch: float = 0.0):
        self.delay = seconds_per_batch
        self.seen = 0

    def analyze(self, images):
        time.sleep(self.delay)
        self.seen += len(images)
        return [Brightness(float(im.mean())) for im in images]


def fake_engine(*, text: float = 0.8, audio: float = 0.7, visual: float = 0.6, fail: tuple[str, ...] = (),
                frames_delay: float = 0.0) -> Engine:
    """An Engine on constant scorers (the modalities in `fail` raise) and FakeASR: no model loads."""
    scorers = ScorerSet(
        text=ConstantScorer("text", text, fail="text" in fail, part=lambda w: bool(w.transcript)),
        audio=ConstantScorer("audio", audio, fail="audio" in fail, part=lambda w: len(w.audio) > 0),
        visual=ConstantScorer("visual", visual, fail="visual" in fail, part=lambda w: bool(w.frames)),
        frames=SlowFrames(frames_delay))
    return Engine(scorers=scorers, transcriber=FakeASR, device="cpu")
