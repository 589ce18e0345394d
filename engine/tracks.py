"""The two slow halves of one stream, each with its own state and its own readiness: what speech recognition has
heard and settled (`SpeechTrack`), and which sampled frames wait for, are in, or have passed the visual analyzer
(`FrameTrack`). The pipeline asks each whether a window's part is ready, and hands each the results of its workers.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from typing import Any

from media import VideoFrame, Word
from models.tracking import PeopleTracker
from protocol import TranscriptMessage
from speech import AsrUpdate, Transcriber
from speech.language import SpokenLanguage
from stream.buffers import FrameQueue, TimedResults
from stream.windows import WordStore, join_phrases, join_words, language_seconds, main_language, words_between

TRANSCRIPT_KEPT = 2000  # committed phrases the end summary's transcript keeps (the newest)


class SpeechTrack:
    """One stream's speech recognition: its transcriber, the words committed so far (a bounded store), the current
    unconfirmed tail, how far the audio has been transcribed (`heard_until`) and up to where its words can no longer
    change (`final_until`), and the compute its passes took."""

    def __init__(self, stream_id: str, keep_s: float) -> None:
        self.stream_id = stream_id
        self.asr: Transcriber | None = None
        self.words = WordStore(keep_s=keep_s)
        self.pending: list[Word] = []
        self.phrases: deque[str] = deque(maxlen=TRANSCRIPT_KEPT)
        self.heard_until = 0.0
        self.final_until = 0.0
        self.busy_s = 0.0  # compute seconds of this stream's passes (busy_s / heard_until: the real-time factor)
        self.language: SpokenLanguage | None = None  # the stream's language now, as its transcriber follows it
        self.language_p: dict[str, float] = {}  # each language's probability in its latest identification
        self.speech_s: dict[str, float] = {}  # seconds of committed words per language

    def follow_language(self, update: AsrUpdate) -> SpokenLanguage | None:
        """Take the language a pass reports; returns it when it differs from before (another language, or speech
        outside the allowed ones starting or stopping), else None."""
        now, before = update.language, self.language
        if now is None:
            return None
        self.language = now
        if now.language is not None and now.p is not None:
            self.language_p[now.language] = round(now.p, 3)
        if before is None:
            return now if now.language is not None or now.outside is not None else None
        return now if (now.language, now.outside is None) != (before.language, before.outside is None) else None

    def probability(self, language: str | None) -> float | None:
        return None if language is None else self.language_p.get(language)

    @property
    def language_shares(self) -> dict[str, float]:
        """Each language's share of the committed speech (by word duration), largest first."""
        total = sum(self.speech_s.values())
        if not total:
            return {}
        return {code: round(s / total, 4) for code, s in sorted(self.speech_s.items(), key=lambda kv: -kv[1])}

    def take(self, update: AsrUpdate, audio_end: float, final: bool = False,
             speaker_of: Callable[[float, float], int | None] | None = None) -> list[TranscriptMessage]:
        """A pass's result: the committed words stored, and the transcript messages it gives (the committed words
        once each, then the new unconfirmed guess). `final`: the pass that closed the stream's audio. `speaker_of`:
        each committed word's speaker as the stream's voices know it now (engine/voices.py), None when not known."""
        messages = []
        if update.committed:
            self.words.add(update.committed)
            for code, seconds in language_seconds(update.committed).items():
                self.speech_s[code] = self.speech_s.get(code, 0.0) + seconds
        for language, words in itertools.groupby(update.committed, key=lambda w: w.language):
            phrase = list(words)  # one message per language, should a pass's words hold two
            text = join_words(phrase)
            self.phrases.append(text)
            speakers = [speaker_of(w.start, w.end) if speaker_of else None for w in phrase]
            messages.append(TranscriptMessage(
                self.stream_id, round(phrase[0].start, 3), round(phrase[-1].end, 3), text, True,
                [{"start": round(w.start, 3), "end": round(w.end, 3), "word": w.text.strip(),
                  "p": round(w.probability, 3), "speaker": who} for w, who in zip(phrase, speakers)],
                language, self.probability(language), main_speaker(phrase, speakers)))
        if update.pending != self.pending and update.pending:
            language = main_language(update.pending)
            messages.append(TranscriptMessage(self.stream_id, round(update.pending[0].start, 3),
                                              round(update.pending[-1].end, 3), join_words(update.pending), False,
                                              language=language, language_p=self.probability(language)))
        self.pending = list(update.pending)
        self.heard_until = audio_end if final else max(self.heard_until, update.processed_until)
        settled = update.processed_until if update.final_until is None else update.final_until
        self.final_until = audio_end if final else max(self.final_until, settled)
        return messages

    def ready(self, t_end: float, realtime: bool) -> bool:
        """Live, a window needs the audio up to its end transcribed (its tail may still be unconfirmed words); a
        file replayed as fast as possible waits until its words can no longer change, so a replay is repeatable."""
        if self.asr is None:
            return True
        return (self.heard_until if realtime else self.final_until) >= t_end - 0.05

    def words_between(self, t0: float, t1: float) -> tuple[list[Word], list[Word]]:
        """(committed, unconfirmed) words inside [t0, t1)."""
        return self.words.between(t0, t1), words_between(self.pending, t0, t1)

    @property
    def transcript(self) -> str:
        return join_phrases(self.phrases)


def main_speaker(words: list[Word], speakers: list[int | None]) -> int | None:
    """The speaker of most of the words' duration (None when no word's speaker is known)."""
    seconds: dict[int, float] = {}
    for w, who in zip(words, speakers):
        if who is not None:
            seconds[who] = seconds.get(who, 0.0) + max(w.end - w.start, 1e-3)
    return max(seconds, key=lambda k: seconds[k]) if seconds else None


class FrameTrack:
    """One stream's sampled frames on their way through the visual analyzer: those waiting (a bounded queue that
    drops the oldest live), the batch in flight, and the analyses that came back, stamped with their media time,
    with the faces in them followed from frame to frame (`people`).

    Only the frames on the sample_fps grid are key frames, analysed whole. Where mouths are followed (the source
    then samples at PipelineConfig.mouth_fps: Engine.source_fps), the frames between them wait in `mouth_frames`
    for the mouth reader (engine/people.py), which reads the mouths of the faces found in the key frame before
    them; else they are let go as they come."""

    def __init__(self, backlog: int, keep_s: float, sample_fps: float, follow_mouths: bool = False,
                 source_fps: float = 0.0) -> None:
        self.waiting = FrameQueue(backlog)
        self.results: TimedResults = TimedResults(keep_s=keep_s)
        self.people = PeopleTracker()
        self.sample_fps = sample_fps
        self.follow_mouths = follow_mouths  # else the frames between key frames are let go as they come
        # the frames between key frames of one second or more of analysis behind: beyond it, the oldest go
        self.mouth_frames = FrameQueue(max(1, int(round(max(source_fps, sample_fps) * max(1.0, backlog / sample_fps)))))
        self.inflight_t: float | None = None  # media time of the first frame of the batch being analysed
        self.video_end = -1.0  # media time of the last frame received
        self._next_key_t = 0.0
        self._key_period = 1.0 / sample_fps
        self._sifting = source_fps > sample_fps  # the source samples faster: only its frames on the grid are keys

    def put(self, frame: VideoFrame) -> None:
        self.video_end = max(self.video_end, frame.t)
        if not self._sifting or frame.t + 1e-6 >= self._next_key_t:
            self._next_key_t = max(self._next_key_t + self._key_period, frame.t + self._key_period / 2)
            self.waiting.put(frame)
        elif self.follow_mouths:
            self.mouth_frames.put(frame)

    def full(self) -> bool:
        """Whether a file replayed as fast as possible should wait before it reads more frames."""
        return len(self.waiting) >= self.waiting.max_waiting or len(self.mouth_frames) >= self.mouth_frames.max_waiting

    def take(self, most: int) -> list[VideoFrame]:
        batch = self.waiting.take(most)
        self.inflight_t = batch[0].t if batch else None
        return batch

    def take_mouth_frames(self) -> list[VideoFrame]:
        """The waiting frames between key frames that come before the next key frame still to be analysed."""
        before = self.waiting.oldest_t()
        out = []
        while len(self.mouth_frames) and (before is None or self.mouth_frames.oldest_t() < before):  # type: ignore[operator]
            out += self.mouth_frames.take(1)
        if out and self.inflight_t is None:
            self.inflight_t = out[0].t
        return out

    def analysed(self, batch: list[VideoFrame], analyses: list[Any]) -> None:
        """The analyses of a batch taken with `take`, in order: each stamped with its frame's media time (where it
        has a `t`), its faces given their person ids, and kept for the windows. The batch stays in flight until
        `done` (its mouths may still be read)."""
        for frame, analysis in zip(batch, analyses):
            if hasattr(analysis, "t"):
                analysis.t = frame.t
            self.people.observe(frame.t, analysis)
            self.results.add(frame.t, analysis)

    def done(self) -> None:
        self.inflight_t = None

    def ready(self, t_end: float, eof: bool) -> bool:
        """Whether every frame before t_end that will ever be analysed has been."""
        if self.inflight_t is not None and self.inflight_t < t_end:
            return False
        for queue in (self.waiting, self.mouth_frames):
            oldest = queue.oldest_t()
            if oldest is not None and oldest < t_end:
                return False
        if self._sifting:
            # the source samples faster than the key frames: a frame between them says nothing of whether the key
            # frame before t_end is in, the next key's due time does (readiness by video_end let a replay's window
            # go without its last key frame now and then, so a replay did not always repeat)
            return eof or self._next_key_t >= t_end
        return eof or self.video_end >= t_end - 1.0 / self.sample_fps

    @property
    def dropped(self) -> int:
        """Key frames dropped because the visual analyzer was behind (frames between key frames not counted)."""
        return self.waiting.dropped
