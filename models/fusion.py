"""Late fusion of the per-modality scores of one window, and the rolling (EMA) sentiment over windows.

Every method renormalises over the modalities present: a missing modality is left out and named, never guessed.
A modality whose input was poor counts less (a documented rule, see `evidence`): its score is drawn towards the
undecided 0.5 by its input's quality before any method fuses it, keeping the weight it would have had (`trust`), so
a degraded input pulls the verdict towards the middle instead of handing it to the other modalities: on the music
videos' degraded copies, lowering its weight as well let a weaker modality flip the verdict.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.base import MODALITIES, NEGATIVE_AT, POSITIVE_AT, ModalityScore, label_for
from models.calibration import Calibration

FUSION_METHODS = ("weighted", "vote", "product", "stacking")
GRADES = ("Strong Negative", "Negative", "Slight Negative", "Positive")
# The prototype's graded scale of a fused P(positive): each grade from its lowest score up, highest grade first.
GRADE_BANDS = (("Positive", 0.5), ("Slight Negative", 0.35), ("Negative", 0.2), ("Strong Negative", 0.0))


def grade_for_score(score: float) -> str:
    """The prototype's four grades from a fused P(positive)."""
    for grade, lowest in GRADE_BANDS:
        if score >= lowest:
            return grade
    return GRADE_BANDS[-1][0]  # below 0 (or NaN): the lowest grade, as before


def sentiment_scale() -> dict:
    """The label thresholds and grade bands, as the `hello` message's `scale` tells clients (the dashboard draws
    its chart bands and colours from it): {labels: {positive, negative}, grades: [{grade, min}, ...]}."""
    return {"labels": {"positive": POSITIVE_AT, "negative": NEGATIVE_AT},
            "grades": [{"grade": grade, "min": lowest} for grade, lowest in GRADE_BANDS]}


def grade_for_vote(positive: int, present: int) -> str:
    """The prototype's graded vote, renormalised over the modalities present: with three present,
    3 positive → Positive, 2 → Slight Negative, 1 → Negative, 0 → Strong Negative."""
    if present == 0:
        raise ValueError("no modality to vote")
    fraction = positive / present
    if fraction >= 1.0:
        return "Positive"
    if fraction >= 0.5:
        return "Slight Negative"
    if fraction > 0.0:
        return "Negative"
    return "Strong Negative"


@dataclass
class FusionParams:
    """Learned fusion settings (from training.fusion_fit.fit_fusion, e.g. `vidsent evaluate --save-fusion`);
    defaults: equal weights.

    weights: per-modality weights of the confidence-weighted mean.
    product: per-modality weights of the product of experts (the weights above when empty).
    stacking: logistic regression on logit(score) per modality, one model per subset of present modalities,
      keyed "text+audio" etc. in MODALITIES order: {"coef": [...], "intercept": b}.
    calibration: per method, the calibration of its fused score (models.calibration; none: as fused).
    """

    weights: dict[str, float] = field(default_factory=lambda: {m: 1.0 for m in MODALITIES})
    stacking: dict[str, dict] = field(default_factory=dict)
    card: dict = field(default_factory=dict)
    product: dict[str, float] = field(default_factory=dict)
    calibration: dict[str, Calibration] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> FusionParams:
        data = json.loads(Path(path).read_text())
        return cls(weights=data.get("weights", {}), stacking=data.get("stacking", {}), card=data.get("card", {}),
                   product=data.get("product", {}),
                   calibration={m: Calibration.from_json(c) for m, c in data.get("calibration", {}).items()})

    def save(self, path: str | Path) -> None:
        data: dict = {"weights": self.weights, "stacking": self.stacking, "card": self.card}
        if self.product:
            data["product"] = self.product
        if self.calibration:
            data["calibration"] = {m: c.to_json() for m, c in self.calibration.items()}
        Path(path).write_text(json.dumps(data, indent=2) + "\n")


# A verdict is "uncertain" when its certainty is below this, or when its modalities disagree this much or more.
UNCERTAIN_BELOW = 0.2
DISAGREE_AT = 0.5


@dataclass
class FusedScore:
    score: float | None
    label: str | None
    graded: str | None
    method: str
    used: list[str]
    missing: list[str]
    certainty: float | None = None  # see certainty_of
    disagreement: float | None = None
    doubts: list[str] = field(default_factory=list)  # why the verdict is uncertain; empty when it is not

    @property
    def uncertain(self) -> bool:
        return bool(self.doubts)

    def to_json(self) -> dict:
        return {
            "score": None if self.score is None else round(self.score, 4),
            "label": self.label,
            "graded": self.graded,
            "method": self.method,
            "used": self.used,
            "missing": self.missing,
            "certainty": None if self.certainty is None else round(self.certainty, 4),
            "disagreement": None if self.disagreement is None else round(self.disagreement, 4),
            "uncertain": self.uncertain,
            "doubts": self.doubts,
        }


def certainty_of(score: float, scores: dict[str, float], weights: dict[str, float]) -> tuple[float, float, list[str]]:
    """(certainty, disagreement, doubts) of a fused P(positive) from the modality scores it fused.

    disagreement: twice the weighted mean distance of the modalities' scores from their weighted mean, in [0, 1]:
      0 when they all say the same, 1 when two equal-weighted modalities sit at opposite ends (one modality: 0).
    certainty: the verdict's distance from the undecided middle, |2·score − 1|, times (1 − disagreement): a
      verdict near 0.5, or one whose modalities pull apart, is not one to act on.
    doubts: why the verdict is uncertain, when its certainty is below UNCERTAIN_BELOW or the disagreement reaches
      DISAGREE_AT."""
    names = list(scores)
    w = np.array([max(weights.get(m, 1.0), 1e-6) for m in names])
    x = np.array([scores[m] for m in names])
    centre = float((w * x).sum() / w.sum())
    disagreement = float(min(1.0, 2.0 * (w * np.abs(x - centre)).sum() / w.sum()))
    margin = abs(2.0 * score - 1.0)
    certainty = margin * (1.0 - disagreement)
    doubts = []
    if disagreement >= DISAGREE_AT:
        doubts.append("the modalities disagree: " + ", ".join(f"{m} {scores[m]:.2f}" for m in names))
    if margin < UNCERTAIN_BELOW:
        doubts.append(f"close to the middle ({score:.2f})")
    elif certainty < UNCERTAIN_BELOW and not doubts:
        doubts.append(f"weak evidence (certainty {certainty:.2f})")
    return certainty, disagreement, doubts


# A verdict resting on an input whose quality is below this says so in its doubts.
POOR_QUALITY_BELOW = 0.5


def evidence(score: ModalityScore) -> float:
    """What a modality's score counts for in fusion: 0.5 + quality × (score − 0.5), the score itself when its
    quality was not assessed."""
    value = float(score.score if score.score is not None else 0.5)
    if score.quality is None:
        return value
    return 0.5 + max(0.0, min(1.0, score.quality.value)) * (value - 0.5)


def trust(score: ModalityScore) -> float:
    """How much the weighted mean weighs a score: its confidence before its input's quality scaled it (quality acts
    through `evidence` instead)."""
    q = 1.0 if score.quality is None else score.quality.value
    if q <= 1e-3:
        return abs(2.0 * float(score.score if score.score is not None else 0.5) - 1.0)
    return min(1.0, score.confidence / q)


def quality_doubts(scores: dict[str, ModalityScore]) -> list[str]:
    """A doubt per modality whose input was poor, with what made it so."""
    doubts = []
    for m, s in scores.items():
        if s.quality is not None and s.quality.value < POOR_QUALITY_BELOW:
            why = f": {', '.join(s.quality.notes)}" if s.quality.notes else ""
            doubts.append(f"poor {m} input (quality {s.quality.value:.2f}{why})")
    return doubts


def logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def fuse(scores: dict[str, ModalityScore], method: str = "weighted",
         params: FusionParams | None = None) -> FusedScore:
    if method not in FUSION_METHODS:
        raise ValueError(f"unknown fusion method {method!r}: choose one of {', '.join(FUSION_METHODS)}")
    params = params or FusionParams()
    present = {m: s for m, s in scores.items() if s.available and s.score is not None}
    value = {m: evidence(s) for m, s in present.items()}  # what each present score counts for
    missing = [m for m in scores if m not in present]
    used = sorted(present, key=MODALITIES.index)
    if not present:
        return FusedScore(None, None, None, method, [], missing)

    weights = {m: params.weights.get(m, 1.0) for m in used}
    if method == "vote":
        positive = sum(1 for v in value.values() if v >= 0.5)
        score = positive / len(present)
        graded = grade_for_vote(positive, len(present))
        return _verdict(score, graded, method, used, missing, value, weights, present)

    if method == "product":
        # product of experts: multiply the odds, i.e. sum the logits, weighted
        experts = params.product or params.weights
        z = sum(experts.get(m, 1.0) * logit(value[m]) for m in present)
        score = 1.0 / (1.0 + math.exp(-z))
    elif method == "stacking" and "+".join(used) in params.stacking:
        model = params.stacking["+".join(used)]
        z = model["intercept"] + sum(c * logit(value[m]) for c, m in zip(model["coef"], used))
        score = 1.0 / (1.0 + math.exp(-z))
    else:
        # confidence-weighted mean; a stacking request without a model for this subset falls back here
        w = np.array([params.weights.get(m, 1.0) * (0.05 + trust(s)) for m, s in present.items()])
        x = np.array([value[m] for m in present])
        score = float((w * x).sum() / w.sum())
    if method in params.calibration:
        score = params.calibration[method](score)
    return _verdict(score, grade_for_score(score), method, used, missing, value, weights, present)


def _verdict(score: float, graded: str, method: str, used: list[str], missing: list[str], value: dict[str, float],
             weights: dict[str, float], present: dict[str, ModalityScore]) -> FusedScore:
    certainty, disagreement, doubts = certainty_of(score, {m: value[m] for m in used}, weights)
    return FusedScore(score, label_for(score), graded, method, used, missing, certainty, disagreement,
                      doubts + quality_doubts({m: present[m] for m in used}))


class RollingSentiment:
    """Exponential moving average of the fused score, and of its certainty, over media time, with a half-life in
    seconds."""

    def __init__(self, half_life_s: float = 6.0):
        if half_life_s <= 0:
            raise ValueError("half-life must be positive")
        self.half_life_s = half_life_s
        self.score: float | None = None
        self.certainty: float | None = None
        self._last_t: float | None = None

    def update(self, score: float | None, t: float, certainty: float | None = None) -> float | None:
        if score is None:
            return self.score
        if self.score is None or self._last_t is None:
            self.score, self.certainty = score, certainty
        else:
            alpha = 1.0 - 0.5 ** (max(t - self._last_t, 0.0) / self.half_life_s)
            self.score = self.score + alpha * (score - self.score)
            if certainty is not None:
                self.certainty = certainty if self.certainty is None else \
                    self.certainty + alpha * (certainty - self.certainty)
        self._last_t = t
        return self.score

    @property
    def uncertain(self) -> bool:
        """The rolling verdict is not one to act on: its recent windows were uncertain, or it sits in the middle."""
        if self.score is None:
            return False
        return abs(2 * self.score - 1) < UNCERTAIN_BELOW or (self.certainty is not None
                                                             and self.certainty < UNCERTAIN_BELOW)
