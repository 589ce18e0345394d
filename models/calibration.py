"""Calibration maps: a scorer's P(positive) turned into one that is right as often as it says.

A `Calibration` is fitted on held-out data (training/calibration.py picks temperature or isotonic by measurement)
and stored in the heads folder's `calibration.json`, keyed by what produced a score: a text head's name (`text`,
`text_multilingual`), else the modality (`audio`, `visual`). The fused score's calibration sits in fusion.json
beside the fusion it belongs to. A score with no calibration for it is left as it is.

    temperature  logit(p') = logit(p) / T: one number, 0.5 stays 0.5 (T > 1 softens an over-confident scorer)
    isotonic     a monotone piecewise-linear map through fitted knots (can also move where 0.5 falls)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from models.base import ModalityScore, label_for

CALIBRATION_FILE = "calibration.json"
CALIBRATION_FORMAT = "vidsent-calibration/1"
KINDS = ("identity", "temperature", "isotonic")
_EDGE = 1e-4  # probabilities are kept inside (0, 1): a calibrated score is never a certainty


@dataclass(frozen=True)
class Calibration:
    kind: str = "identity"
    temperature: float = 1.0
    knots: tuple[tuple[float, float], ...] = ()  # isotonic: (raw, calibrated) points, raw increasing
    card: dict[str, Any] = field(default_factory=dict, compare=False)  # what it was fitted on, measured ECE, ...

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown calibration {self.kind!r}: choose one of {', '.join(KINDS)}")
        if self.kind == "temperature" and not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"a calibration temperature must be positive, got {self.temperature}")
        if self.kind == "isotonic":
            xs = [x for x, _ in self.knots]
            ys = [y for _, y in self.knots]
            if len(xs) < 2 or any(b < a for a, b in zip(xs, xs[1:])) or any(b < a for a, b in zip(ys, ys[1:])):
                raise ValueError("isotonic calibration needs two or more knots, increasing in both coordinates")

    def __call__(self, p: float) -> float:
        return float(self.apply(np.asarray([p], dtype=np.float64))[0])

    def apply(self, p: np.ndarray) -> np.ndarray:
        p = np.clip(np.asarray(p, dtype=np.float64), _EDGE, 1 - _EDGE)
        if self.kind == "temperature":
            z = np.log(p / (1 - p)) / self.temperature
            return 1.0 / (1.0 + np.exp(-z))
        if self.kind == "isotonic":
            xs, ys = zip(*self.knots)
            return np.clip(np.interp(p, xs, ys), _EDGE, 1 - _EDGE)
        return p

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "temperature":
            out["temperature"] = self.temperature
        if self.kind == "isotonic":
            out["knots"] = [[x, y] for x, y in self.knots]
        if self.card:
            out["card"] = self.card
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        return cls(kind=data.get("kind", "identity"), temperature=float(data.get("temperature", 1.0)),
                   knots=tuple((float(x), float(y)) for x, y in data.get("knots", [])), card=data.get("card", {}))


IDENTITY = Calibration()


def load_calibrations(heads_dir: str | Path) -> dict[str, Calibration]:
    """The calibrations in heads_dir/calibration.json by key (empty when the folder has none). A file that is there
    but unreadable is an error naming it, never silently skipped."""
    path = Path(heads_dir) / CALIBRATION_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        if data.get("format") != CALIBRATION_FORMAT:
            raise ValueError(f"not a {CALIBRATION_FORMAT} file")
        return {key: Calibration.from_json(value) for key, value in data["calibrations"].items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: cannot read the calibrations ({exc})") from exc


def save_calibrations(heads_dir: str | Path, calibrations: dict[str, Calibration], card: dict | None = None) -> Path:
    path = Path(heads_dir) / CALIBRATION_FILE
    data = {"format": CALIBRATION_FORMAT, "card": card or {},
            "calibrations": {k: c.to_json() for k, c in calibrations.items()}}
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def calibration_key(modality: str, score: ModalityScore) -> str:
    """What a score's calibration is keyed by: the text head that made it (heads differ by language), else the
    modality."""
    head = score.details.get("head") if modality == "text" else None
    return str(head) if head else modality


def calibrated(score: ModalityScore, calibration: Calibration | None) -> ModalityScore:
    """The score through its calibration; the label follows, and the confidence keeps the share of the score's
    margin the scorer gave it (a scorer that trusts its input less says so in its confidence). The raw score is
    kept in details["raw_score"]."""
    if calibration is None or calibration.kind == "identity" or not score.available or score.score is None:
        return score
    raw = float(score.score)
    new = calibration(raw)
    margin = abs(2 * raw - 1)
    trust = min(1.0, score.confidence / margin) if margin > 1e-6 else 1.0
    return replace(score, score=new, label=label_for(new), confidence=abs(2 * new - 1) * trust,
                   details={**score.details, "raw_score": round(raw, 4)})
