"""Classification metrics shared by training cards and evaluation tables (scikit-learn underneath)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

ECE_BINS = 15


def reliability_diagram(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """The reliability diagram of predictions stated with `confidence` (each in [0, 1]) that were `correct` or not:
    `bins` equal-width bins over [0, 1], a bin holding the confidences in (lower, upper] (the first also 0); for each
    bin that holds a prediction, its lower and upper edge, count, mean confidence and observed accuracy (the share
    of its predictions that were correct), in order. A calibrated scorer's bins lie on the diagonal: accuracy equals
    confidence."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if len(confidence) == 0:
        return []
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    diagram: list[dict[str, Any]] = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            diagram.append({"lower": float(edges[b]), "upper": float(edges[b + 1]), "count": int(mask.sum()),
                            "confidence": float(confidence[mask].mean()), "accuracy": float(correct[mask].mean())})
    return diagram


def calibration_error(diagram: Sequence[dict[str, Any]]) -> float:
    """The ECE of a reliability diagram: the mean |accuracy - confidence| of its bins, weighted by their counts (NaN
    for a diagram of no prediction)."""
    n = sum(b["count"] for b in diagram)
    if n == 0:
        return float("nan")
    return float(sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in diagram) / n)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: the mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size (the
    calibration_error of the reliability_diagram)."""
    return calibration_error(reliability_diagram(confidence, correct, bins))


def binary_reliability(p_positive: np.ndarray, is_positive: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """The reliability diagram of P(positive) read as a two-class prediction (positive when P(positive) > 0.5, with
    confidence P(positive), else negative with confidence 1 - P(positive))."""
    p = np.asarray(p_positive, dtype=np.float64)
    y = np.asarray(is_positive, dtype=bool)
    predicted_positive = p > 0.5
    return reliability_diagram(np.where(predicted_positive, p, 1 - p), predicted_positive == y, bins)


def binary_ece(p_positive: np.ndarray, is_positive: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE of P(positive) read as a two-class prediction (positive when P(positive) > 0.5)."""
    return calibration_error(binary_reliability(p_positive, is_positive, bins))


def classification_summary(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str],
                           proba: np.ndarray | None = None, p_positive: np.ndarray | None = None, *,
                           with_reliability: bool = False) -> dict[str, Any]:
    """accuracy, macro / weighted F1, confusion matrix (rows = true, columns = predicted, in `classes` order), and:
    ece (top-label, from proba when given, else from p_positive on a two-class task), and for tasks with a neutral
    class the positive-vs-negative accuracy and ECE of p_positive on the items labelled positive or negative
    (an item counts as called positive when p_positive > 0.5: a score of exactly 0.5 takes no side).
    with_reliability: also the reliability diagrams those ECEs are computed from, `reliability` beside `ece` and
    `posneg_reliability` beside `posneg_ece` (lists of bins, see reliability_diagram)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    y_true, y_pred = list(y_true), list(y_pred)
    out: dict[str, Any] = {"n": len(y_true)}
    if not y_true:
        return out
    out["accuracy"] = float(accuracy_score(y_true, y_pred))
    out["macro_f1"] = float(f1_score(y_true, y_pred, labels=list(classes), average="macro", zero_division=0))
    out["weighted_f1"] = float(f1_score(y_true, y_pred, labels=list(classes), average="weighted", zero_division=0))
    out["confusion"] = confusion_matrix(y_true, y_pred, labels=list(classes)).tolist()
    diagrams: dict[str, list[dict[str, Any]]] = {}
    if proba is not None:
        proba = np.asarray(proba, dtype=np.float64)
        index = {c: i for i, c in enumerate(classes)}
        truth = np.array([index[c] for c in y_true])
        diagrams["reliability"] = reliability_diagram(proba.max(axis=1), proba.argmax(axis=1) == truth)
        out["ece"] = calibration_error(diagrams["reliability"])
    if p_positive is not None and "positive" in classes and "negative" in classes:
        p = np.asarray(p_positive, dtype=np.float64)
        polar = np.array([c in ("positive", "negative") for c in y_true])
        if polar.any():
            is_pos = np.array([c == "positive" for c in y_true])[polar]
            diagram = binary_reliability(p[polar], is_pos)
            if len(classes) == 2:
                if "ece" not in out:
                    diagrams["reliability"] = diagram
                    out["ece"] = calibration_error(diagram)
            else:
                out["posneg_accuracy"] = float(((p[polar] > 0.5) == is_pos).mean())
                out["posneg_n"] = int(polar.sum())
                out["posneg_ece"] = calibration_error(diagram)
                diagrams["posneg_reliability"] = diagram
    if with_reliability:
        out.update(diagrams)
    return out


def rounded(summary: dict[str, Any], digits: int = 4) -> dict[str, Any]:
    """The summary with its floats rounded, also those inside lists and dicts (the reliability bins)."""
    return {k: _rounded(v, digits) for k, v in summary.items()}


def _rounded(value: Any, digits: int) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return value
