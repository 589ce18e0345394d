"""Classification metrics shared by training cards and evaluation tables (scikit-learn underneath)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE: the mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if len(confidence) == 0:
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(total / len(confidence))


def binary_ece(p_positive: np.ndarray, is_positive: np.ndarray, bins: int = 15) -> float:
    """ECE of P(positive) read as a two-class prediction (positive when P(positive) > 0.5)."""
    p = np.asarray(p_positive, dtype=np.float64)
    y = np.asarray(is_positive, dtype=bool)
    predicted_positive = p > 0.5
    return expected_calibration_error(np.where(predicted_positive, p, 1 - p), predicted_positive == y, bins)


def classification_summary(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str],
                           proba: np.ndarray | None = None, p_positive: np.ndarray | None = None) -> dict[str, Any]:
    """accuracy, macro / weighted F1, confusion matrix (rows = true, columns = predicted, in `classes` order), and:
    ece (top-label, from proba when given, else from p_positive on a two-class task), and for tasks with a neutral
    class the positive-vs-negative accuracy and ECE of p_positive on the items labelled positive or negative
    (an item counts as called positive when p_positive > 0.5: a score of exactly 0.5 takes no side)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    y_true, y_pred = list(y_true), list(y_pred)
    out: dict[str, Any] = {"n": len(y_true)}
    if not y_true:
        return out
    out["accuracy"] = float(accuracy_score(y_true, y_pred))
    out["macro_f1"] = float(f1_score(y_true, y_pred, labels=list(classes), average="macro", zero_division=0))
    out["weighted_f1"] = float(f1_score(y_true, y_pred, labels=list(classes), average="weighted", zero_division=0))
    out["confusion"] = confusion_matrix(y_true, y_pred, labels=list(classes)).tolist()
    if proba is not None:
        proba = np.asarray(proba, dtype=np.float64)
        index = {c: i for i, c in enumerate(classes)}
        truth = np.array([index[c] for c in y_true])
        out["ece"] = expected_calibration_error(proba.max(axis=1), proba.argmax(axis=1) == truth)
    if p_positive is not None and "positive" in classes and "negative" in classes:
        p = np.asarray(p_positive, dtype=np.float64)
        polar = np.array([c in ("positive", "negative") for c in y_true])
        if polar.any():
            is_pos = np.array([c == "positive" for c in y_true])[polar]
            ece = binary_ece(p[polar], is_pos)
            if len(classes) == 2:
                out.setdefault("ece", ece)
            else:
                out["posneg_accuracy"] = float(((p[polar] > 0.5) == is_pos).mean())
                out["posneg_n"] = int(polar.sum())
                out["posneg_ece"] = ece
    return out


def rounded(summary: dict[str, Any], digits: int = 4) -> dict[str, Any]:
    return {k: round(v, digits) if isinstance(v, float) else v for k, v in summary.items()}
