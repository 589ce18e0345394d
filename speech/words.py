"""Words as Whisper writes them: their normal form for comparing, the marks that are not words ("[Music]",
"♪"), and keeping a list of words in time order."""

from __future__ import annotations

import re

from media import Word

PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"
NON_LEXICAL = re.compile(r"^\s*[\[(♪*].*|.*[\])♪*]\s*$")  # "[Music]", "(upbeat music)", "♪", "*laughs*"


def normalise_word(text: str) -> str:
    """Lower case without punctuation, for comparing words across passes and against references."""
    return re.sub(r"[^\w']+", "", text.lower()).strip("'")


def normalise_text(text: str) -> list[str]:
    return [w for w in (normalise_word(t) for t in text.split()) if w]


def in_time_order(words: list[Word], after: float) -> list[Word]:
    """The words as committed: each starts no earlier than the one before it ends (and than `after`), lasts at least
    10 ms, and has its times rounded to the millisecond."""
    out: list[Word] = []
    last_end = after
    for w in words:
        start = max(w.start, last_end)
        end = max(w.end, start + 0.01)
        out.append(Word(round(start, 3), round(end, 3), w.text, w.probability, w.language))
        last_end = out[-1].end
    return out
