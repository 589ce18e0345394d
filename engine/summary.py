"""What a stream adds up to: running means per modality for the end summary, and the rolling verdict's JSON."""

from __future__ import annotations

from collections import Counter
from typing import cast

from models.base import MODALITIES, ModalityScore, Quality, label_for
from models.fusion import RollingSentiment, grade_for_score
from protocol import RollingVerdict


class OverallScores:
    """Running means per modality (constant memory, for the end summary): of the scores and of their inputs'
    quality, with the quality notes of at least a third of the windows; and the last reason each was missing."""

    def __init__(self) -> None:
        self.sums = {m: 0.0 for m in MODALITIES}
        self.counts = {m: 0 for m in MODALITIES}
        self.quality_sums = {m: 0.0 for m in MODALITIES}
        self.quality_counts = {m: 0 for m in MODALITIES}
        self.quality_notes: dict[str, Counter[str]] = {m: Counter() for m in MODALITIES}
        self.reasons: dict[str, str] = {}
        self.windows = 0

    def add(self, scores: dict[str, ModalityScore]) -> None:
        self.windows += 1
        for m, s in scores.items():
            if s.available and s.score is not None:
                self.sums[m] += s.score
                self.counts[m] += 1
                if s.quality is not None:
                    self.quality_sums[m] += s.quality.value
                    self.quality_counts[m] += 1
                    # a note's kind, without its numbers ("small faces (20 px)" → "small faces"): bounded memory
                    self.quality_notes[m].update({note.split(" (")[0] for note in s.quality.notes})
            elif s.reason:
                self.reasons[m] = s.reason

    def _quality(self, m: str) -> Quality | None:
        n = self.quality_counts[m]
        if not n:
            return None
        notes = tuple(note for note, seen in self.quality_notes[m].most_common() if seen * 3 >= n)
        return Quality(self.quality_sums[m] / n, notes)

    def merge(self, other: OverallScores) -> None:
        """Takes in another's windows (a person's voice heard alone before it was tied to their face)."""
        self.windows += other.windows
        for m in MODALITIES:
            self.sums[m] += other.sums[m]
            self.counts[m] += other.counts[m]
            self.quality_sums[m] += other.quality_sums[m]
            self.quality_counts[m] += other.quality_counts[m]
            self.quality_notes[m].update(other.quality_notes[m])
        self.reasons = {**other.reasons, **self.reasons}

    def modalities(self) -> dict[str, ModalityScore]:
        out = {}
        for m in MODALITIES:
            if self.counts[m]:
                out[m] = ModalityScore.of(self.sums[m] / self.counts[m], details={"windows": self.counts[m]},
                                          quality=self._quality(m))
            else:
                out[m] = ModalityScore.missing(self.reasons.get(m, "no windows"))
        return out


def rolling_json(rolling: RollingSentiment) -> RollingVerdict:
    """The rolling verdict as `window.rolling` and `end.summary.rolling` carry it."""
    score, certainty = rolling.score, rolling.certainty
    return cast(RollingVerdict, {
        "score": None if score is None else round(score, 4),
        "label": None if score is None else label_for(score),
        "graded": None if score is None else grade_for_score(score),
        "half_life_s": rolling.half_life_s,
        "certainty": None if certainty is None else round(certainty, 4),
        "uncertain": rolling.uncertain,
    })
