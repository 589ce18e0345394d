"""Fixed windows over media time (default 4 s long, 2 s hop), each holding its audio, its analysed frames and the
transcript words that fall inside it."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from media import Word


def join_words(words: list[Word]) -> str:
    return "".join(w.text for w in words).strip()


# Scripts written without spaces between words (Chinese, Japanese, Thai, Lao, Khmer, Myanmar): phrases in them
# join without one.
_UNSPACED = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
                       r"\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff]")


def join_phrases(phrases) -> str:
    """Committed phrases as one text: a space between them, except between two in a script without spaces."""
    out = ""
    for phrase in phrases:
        if out and phrase and not (_UNSPACED.match(out[-1]) and _UNSPACED.match(phrase[0])):
            out += " "
        out += phrase
    return out


@dataclass
class Window:
    index: int
    t_start: float
    t_end: float
    audio: np.ndarray  # float32 16 kHz mono, empty when the source has no audio
    frames: list[Any]  # per-frame visual analyses of the frames sampled inside the window
    words: list[Word]  # committed words whose middle falls inside the window
    pending_words: list[Word] = field(default_factory=list)  # not yet committed hypothesis words inside the window

    @property
    def transcript(self) -> str:
        return join_words(self.words + self.pending_words)

    @property
    def language(self) -> str | None:
        """The language most of its words (by duration) were transcribed in; None without words."""
        return main_language(self.words + self.pending_words)

    @property
    def word_probabilities(self) -> tuple[float, ...]:
        """The recogniser's probability of each of its words."""
        return tuple(float(w.probability) for w in self.words + self.pending_words if w.probability is not None)

    @property
    def speech_spans(self) -> list[tuple[float, float]]:
        """Where the recognised words are, in seconds from the window's start (clipped to the window)."""
        length = self.t_end - self.t_start
        return [(max(w.start - self.t_start, 0.0), min(w.end - self.t_start, length))
                for w in self.words + self.pending_words]


class WindowSchedule:
    """Which window comes next. Windows start at multiples of the hop; at the end of the media a last, possibly
    shorter window covers whatever the full windows left uncovered, so the windows span the whole duration."""

    def __init__(self, window_s: float = 4.0, hop_s: float = 2.0):
        if window_s <= 0 or hop_s <= 0:
            raise ValueError("window and hop must be positive")
        if hop_s > window_s:
            raise ValueError("the hop may not be longer than the window (media would be skipped)")
        self.window_s = window_s
        self.hop_s = hop_s
        self.index = 0
        self.covered_until = 0.0

    def next_span(self, ahead: int = 0) -> tuple[int, float, float]:
        """The next window's (index, start, end), or the one `ahead` windows after it."""
        t0 = (self.index + ahead) * self.hop_s
        return self.index + ahead, t0, t0 + self.window_s

    def advance(self) -> None:
        _, _, t1 = self.next_span()
        self.covered_until = t1
        self.index += 1

    def final_span(self, media_end: float) -> tuple[int, float, float] | None:
        """The closing window at the end of the media, or None when the full windows already covered it."""
        if media_end <= self.covered_until + 1e-3 or media_end <= 0:
            return None
        t0 = max(0.0, min(self.index * self.hop_s, media_end - self.window_s))
        return self.index, t0, media_end


def window_spans(duration: float, window_s: float = 4.0, hop_s: float = 2.0) -> list[tuple[float, float]]:
    """The (t_start, t_end) of every window the live pipeline emits for `duration` seconds of media: the full
    windows that fit, then the closing window over what they left uncovered."""
    schedule = WindowSchedule(window_s, hop_s)
    spans = []
    while (span := schedule.next_span())[2] <= duration + 1e-9:
        spans.append(span[1:])
        schedule.advance()
    final = schedule.final_span(duration)
    if final is not None:
        spans.append(final[1:])
    return spans


class WordStore:
    """Committed words of the recent past (bounded by media time)."""

    def __init__(self, keep_s: float = 60.0):
        self.keep_s = keep_s
        self._words: deque[Word] = deque()

    def add(self, words: list[Word]) -> None:
        self._words.extend(words)
        if self._words:
            horizon = self._words[-1].end - self.keep_s
            while self._words and self._words[0].end < horizon:
                self._words.popleft()

    def between(self, t0: float, t1: float) -> list[Word]:
        return words_between(self._words, t0, t1)


def language_seconds(words) -> dict[str, float]:
    """Seconds of speech per language the words were transcribed in (words without a language left out)."""
    seconds: dict[str, float] = {}
    for w in words:
        if w.language:
            seconds[w.language] = seconds.get(w.language, 0.0) + max(0.0, w.end - w.start)
    return seconds


def main_language(words) -> str | None:
    seconds = language_seconds(words)
    return max(seconds, key=seconds.__getitem__) if seconds else None


def words_between(words, t0: float, t1: float) -> list[Word]:
    return [w for w in words if t0 <= (w.start + w.end) / 2 < t1]
