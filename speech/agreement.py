"""When a word is settled (LocalAgreement): the words two passes agree on, and a hypothesis that only repeats what
was committed already."""

from __future__ import annotations

from media import Word
from speech.words import normalise_word


def agreed_prefix_length(previous: list[Word], current: list[Word]) -> int:
    n = 0
    for a, b in zip(previous, current):
        if normalise_word(a.text) != normalise_word(b.text):
            break
        n += 1
    return n


def repeated_tail_length(committed: list[Word], hypothesis: list[Word], longest: int = 5) -> int:
    """How many leading hypothesis words repeat the last committed words (audio left over at a cut)."""
    tail = [normalise_word(w.text) for w in committed[-longest:]]
    head = [normalise_word(w.text) for w in hypothesis[:longest]]
    for k in range(min(len(tail), len(head)), 0, -1):
        if tail[-k:] == head[:k]:
            return k
    return 0
