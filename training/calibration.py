"""Fitting calibration maps (models.calibration) on held-out scores, and choosing between them by measurement.

Every candidate (identity, temperature, isotonic) is scored by its cross-fitted ECE: the map is fitted on the other
folds' groups (actors, songs, dialogues, images, clips) and measured on the fold it never saw, so the "after" ECE
is honest. The kind with the lowest mean ECE over the held-out sets wins; a simpler kind wins ties (within
TIE_ECE), since one fitted number generalises better than a curve fitted to a few hundred items. A kind is not
eligible when its cross-fitted log-loss is worse than the raw scores' (binned ECE favours maps that state few
distinct values, an isotonic staircase, which can lower the ECE while making the probabilities worse) or when it
calls fewer items right at 0.5 (a map that moves the middle on one corpus moves it on every stream: OASIS's isotonic
curve cost the music videos' visual verdicts a tenth of their accuracy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from models.calibration import KINDS, Calibration
from training.metrics import ECE_BINS, binary_ece

TIE_ECE = 0.005
Floats = Sequence[float] | np.ndarray
Flags = Sequence[bool] | np.ndarray
ISOTONIC_LIMITS = (0.02, 0.98)  # a fitted curve never states a certainty the held-out sets cannot show


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def fit_calibration(kind: str, p: Floats, positive: Flags,
                    weight: Floats | None = None, card: dict | None = None) -> Calibration:
    """A calibration of P(positive) `p` to the outcomes `positive`: temperature by weighted log-loss, isotonic by
    weighted least squares (scikit-learn), identity as it is."""
    x = np.asarray(p, dtype=np.float64)
    y = np.asarray(positive, dtype=np.float64)
    w = np.ones_like(x) if weight is None else np.asarray(weight, dtype=np.float64)
    if kind == "identity" or len(x) == 0 or y.min() == y.max():
        return Calibration(card=card or {})
    if kind == "temperature":
        from scipy.optimize import minimize_scalar

        z = _logit(x)

        def loss(log_t: float) -> float:
            q = np.clip(1.0 / (1.0 + np.exp(-z / np.exp(log_t))), 1e-6, 1 - 1e-6)
            return float(-(w * (y * np.log(q) + (1 - y) * np.log(1 - q))).sum() / w.sum())

        log_t = minimize_scalar(loss, bounds=(np.log(0.1), np.log(20.0)), method="bounded").x
        return Calibration("temperature", temperature=float(np.exp(log_t)), card=card or {})
    if kind == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        model = IsotonicRegression(y_min=ISOTONIC_LIMITS[0], y_max=ISOTONIC_LIMITS[1], out_of_bounds="clip")
        model.fit(x, y, sample_weight=w)
        knots = tuple(zip(model.X_thresholds_.tolist(), model.y_thresholds_.tolist()))
        if len(knots) < 2:
            return Calibration(card=card or {})
        return Calibration("isotonic", knots=knots, card=card or {})
    raise ValueError(f"unknown calibration {kind!r}: choose one of {', '.join(KINDS)}")


def group_folds(groups: Sequence[str], folds: int, seed: int = 0) -> np.ndarray:
    """A fold number per item, whole groups to a fold (a speaker or a song is never on both sides)."""
    names = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(names))
    fold_of_group = {names[i]: k % folds for k, i in enumerate(order)}
    return np.array([fold_of_group[g] for g in groups])


def cross_fitted(kind: str, p: Floats, positive: Flags, groups: Sequence[str],
                 weight: Floats | None = None, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Each item's P(positive) through a calibration fitted on the other folds' groups only."""
    x = np.asarray(p, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    w = np.ones_like(x) if weight is None else np.asarray(weight, dtype=np.float64)
    fold = group_folds(groups, min(folds, len(set(groups))), seed)
    out = np.empty_like(x)
    for f in np.unique(fold):
        test, train = fold == f, fold != f
        out[test] = fit_calibration(kind, x[train], y[train], w[train]).apply(x[test])
    return out


def log_loss(p: np.ndarray, positive: np.ndarray, weight: np.ndarray | None = None) -> float:
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-4, 1 - 1e-4)
    y = np.asarray(positive, dtype=bool)
    w = np.ones_like(q) if weight is None else weight
    return float(-(w * np.where(y, np.log(q), np.log(1 - q))).sum() / w.sum())


def ece_floor(p: Floats, bins: int = ECE_BINS, draws: int = 200, seed: int = 0) -> float:
    """The ECE a perfectly calibrated scorer stating `p` would still show on this many items (outcomes drawn from
    p itself): below it, a measured ECE is noise. It is large on small sets (42 clips: about 0.1)."""
    x = np.asarray(p, dtype=np.float64)
    if len(x) == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    return float(np.mean([binary_ece(x, rng.random(len(x)) < x, bins) for _ in range(draws)]))


def choose_calibration(p: Floats, positive: Flags, groups: Sequence[str], sets: Sequence[str],
                       kinds: Sequence[str] = KINDS, folds: int = 5) -> tuple[Calibration, dict[str, Any]]:
    """The calibration to ship for scores pooled from several held-out sets (`sets` names each item's set; each set
    weighs the same in the fit): every kind's cross-fitted ECE per set, the kind with the lowest mean (the simpler
    one within TIE_ECE), fitted on everything. The report has, per set, n, the ECE before, each kind's ECE after,
    accuracy before and after (at 0.5), and the ECE floor of the set's size."""
    x = np.asarray(p, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    set_names = list(dict.fromkeys(sets))
    which = np.array(sets)
    weight = np.array([1.0 / (which == s).sum() for s in sets]) * len(x) / len(set_names)
    report: dict[str, Any] = {"sets": {}, "kinds": {}}
    after = {kind: cross_fitted(kind, x, y, groups, weight, folds) for kind in kinds}
    for s in set_names:
        m = which == s
        row: dict[str, Any] = {"n": int(m.sum()), "ece_before": round(binary_ece(x[m], y[m]), 4),
                               "accuracy_before": round(float(((x[m] > 0.5) == y[m]).mean()), 4),
                               "ece_floor": round(ece_floor(x[m]), 4)}
        for kind in kinds:
            row[f"ece_{kind}"] = round(binary_ece(after[kind][m], y[m]), 4)
            row[f"accuracy_{kind}"] = round(float(((after[kind][m] > 0.5) == y[m]).mean()), 4)
        report["sets"][s] = row
    mean_ece = {kind: float(np.mean([report["sets"][s][f"ece_{kind}"] for s in set_names])) for kind in kinds}
    losses = {kind: log_loss(after[kind], y, weight) for kind in kinds}
    report["kinds"] = {k: round(v, 4) for k, v in mean_ece.items()}
    report["log_loss"] = {k: round(v, 4) for k, v in losses.items()}
    raw_loss = log_loss(x, y, weight)
    accuracy = {k: float(np.mean([report["sets"][s][f"accuracy_{k}"] for s in set_names])) for k in kinds}
    raw_accuracy = float(np.mean([report["sets"][s]["accuracy_before"] for s in set_names]))
    eligible = [k for k in kinds if k == "identity" or (losses[k] <= raw_loss and accuracy[k] >= raw_accuracy)]
    best = min(mean_ece[k] for k in eligible)
    chosen = next(k for k in eligible if mean_ece[k] <= best + TIE_ECE)
    report["chosen"] = chosen
    calibration = fit_calibration(chosen, x, y, weight, card={"fitted_on": set_names, "n": int(len(x)),
                                                              "cross_fitted_ece": report["kinds"]})
    return calibration, report
