"""What a stream adds up to: running means per modality for the end summary, and the rolling verdict's JSON."""

from __future__ import annotations

from typing import cast

from models.base import MODALITIES, ModalityScore, label_for
from models.fusion import RollingSentiment, grade_for_score
from protocol import RollingVerdict


class OverallScores:
    """Running means per modality (constant memory, for the end summary), and the last reason each was missing."""

    def __init__(self) -> None:
        self.sums = {m: 0.0 for m in MODALITIES}
        self.counts = {m: 0 for m in MODALITIES}
        self.reasons: dict[str, str] = {}
        self.windows = 0

    def add(self, scores: dict[str, ModalityScore]) -> None:
        self.windows += 1
        for m, s in scores.items():
            if s.available and s.score is not None:
                self.sums[m] += s.score
                self.counts[m] += 1
            elif s.reason:
                self.reasons[m] = s.reason

    def modalities(self) -> dict[str, ModalityScore]:
        out = {}
        for m in MODALITIES:
            if self.counts[m]:
                out[m] = ModalityScore.of(self.sums[m] / self.counts[m],
                                          details={"windows": self.counts[m]})
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
