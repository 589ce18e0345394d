"""What every modality scorer returns, and the label conventions shared by heads, fusion and the protocol."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

MODALITIES = ("text", "audio", "visual")
LABELS = ("negative", "neutral", "positive")

# A 2-class score becomes a 3-way label with a neutral band around 0.5.
POSITIVE_AT = 0.6
NEGATIVE_AT = 0.4


def label_for(score: float) -> str:
    if score >= POSITIVE_AT:
        return "positive"
    if score <= NEGATIVE_AT:
        return "negative"
    return "neutral"


@dataclass(frozen=True)
class Quality:
    """How good a scorer's input was: `value` in [0, 1] (1: nothing wrong that the scorer can see), `notes` saying
    what lowered it, and the `features` measured (faces: size, sharpness, pose, frames with a face; words: Whisper's
    word probabilities and how many; voice: loudness, clipping, noise)."""

    value: float
    notes: tuple[str, ...] = ()
    features: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"value": round(self.value, 4), "notes": list(self.notes),
                "features": {k: round(v, 4) for k, v in self.features.items()}}


@dataclass
class ModalityScore:
    """One modality's verdict on one window.

    score: P(positive) in [0, 1] (for a 3-class head: P(positive) + 0.5 * P(neutral)).
    confidence: how much fusion should trust this score, in [0, 1].
    available: False when the modality could not be scored; reason then says why
      ("no audio track", "silence", "no speech", "no frames", ...). An available score can carry a reason too
      (for example visual "no faces; scene only").
    details: modality-specific extras that explain the score (VADER compound, faces found, emotions, ...).
    quality: how good the input was (None: not assessed); a scorer folds it into `confidence` as well, and fusion
      counts a poor input less (models.fusion).
    """

    score: float | None
    label: str | None
    available: bool
    reason: str | None = None
    confidence: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    quality: Quality | None = None

    @classmethod
    def missing(cls, reason: str) -> ModalityScore:
        return cls(score=None, label=None, available=False, reason=reason, confidence=0.0)

    @classmethod
    def of(cls, score: float, *, label: str | None = None, confidence: float | None = None,
           reason: str | None = None, details: dict[str, Any] | None = None,
           quality: Quality | None = None) -> ModalityScore:
        """An available score; its confidence defaults to its margin |2·score − 1| times its input's quality."""
        score = float(min(1.0, max(0.0, score)))
        if confidence is None:
            confidence = abs(score - 0.5) * 2.0 * (1.0 if quality is None else quality.value)
        return cls(
            score=score,
            label=label or label_for(score),
            available=True,
            reason=reason,
            confidence=float(confidence),
            details=details or {},
            quality=quality,
        )

    def assessed(self, quality: Quality) -> ModalityScore:
        """This score with its input's quality stated, its confidence scaled by it."""
        return replace(self, quality=quality, confidence=self.confidence * quality.value)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "score": None if self.score is None else round(self.score, 4),
            "label": self.label,
            "available": self.available,
            "reason": self.reason,
            "confidence": round(self.confidence, 4),
        }
        if self.details:
            out["details"] = self.details
        if self.quality is not None:
            out["quality"] = self.quality.to_json()
        return out
