"""How far a transcript is from what was said: the word error rate over normalised words, and the character error
rate for the languages written without spaces between words (Chinese, Japanese, Thai, ...), where words are not
marked and WER would count a whole sentence as one word."""

from __future__ import annotations

import re
from collections.abc import Sequence

from speech.words import normalise_text

UNSPACED_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "km", "my", "bo"})


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance over the reference length, both sides normalised."""
    ref, hyp = normalise_text(reference), normalise_text(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)


def characters(text: str) -> list[str]:
    return list(re.sub(r"[^\w]+", "", text.lower()))


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Character-level Levenshtein distance over the reference length, punctuation and spaces left out."""
    ref, hyp = characters(reference), characters(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)


def error_rate(reference: str, hypothesis: str, language: str | None) -> tuple[str, float]:
    """('CER', rate) for a language written without spaces, else ('WER', rate)."""
    if language in UNSPACED_LANGUAGES:
        return "CER", character_error_rate(reference, hypothesis)
    return "WER", word_error_rate(reference, hypothesis)
