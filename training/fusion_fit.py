"""Learning fusion parameters from per-item modality scores (scipy, scikit-learn): what `vidsent evaluate`
cross-validates and `--save-fusion` writes. The live path only reads the result (models.fusion.FusionParams)."""

from __future__ import annotations

import itertools
import math

import numpy as np

from models.base import MODALITIES, ModalityScore
from models.fusion import FUSION_METHODS, FusedScore, FusionParams, evidence, fuse, logit, trust
from training.calibration import fit_calibration

# how each learnt fusion's score is calibrated, chosen by the music videos' leave-one-out ECE of all three modalities
# (identity / temperature / isotonic): weighted 0.141 / 0.120 / 0.179, product 0.093 / 0.144 / 0.186, stacking
# 0.137 / 0.101 / 0.241 (README, "Calibration")
FUSED_CALIBRATION = {"weighted": "temperature", "product": "identity", "stacking": "temperature"}


def subset_key(modalities) -> str:
    return "+".join(sorted(modalities, key=MODALITIES.index))


def _present(row: dict[str, ModalityScore]) -> dict[str, float]:
    """What each present modality counts for in fusion (models.fusion.evidence)."""
    return {m: evidence(s) for m, s in row.items() if s.available and s.score is not None}


def fit_fusion(rows: list[dict[str, ModalityScore]], positive, *, l2: float = 0.05, stacking_c: float = 1.0,
               min_per_class: int = 10, card: dict | None = None,
               methods: tuple[str, ...] = FUSION_METHODS,
               calibrate: dict[str, str] | None = None) -> FusionParams:
    """Learn fusion parameters from per-item modality scores and the items' true polarity (True = positive).

    weighted: per-modality weights (log-weights with an L2 pull towards equal weights) minimising the log-loss of the
      confidence-weighted mean; product: non-negative logit weights of the product of experts (logistic regression
      without intercept, missing modalities contributing nothing); stacking: one logistic regression per subset of
      modalities, on the items where that subset is present. A modality (or subset) seen on fewer than
      min_per_class items of either class is not learnt from: it keeps the prior product weight 1, and stacking falls
      back to the weighted mean for it; with no modality score at all (say a cross-validation fold whose clips are
      all silent and dark) every method keeps its prior (equal weights). Only the parts the given methods use are
      fitted.
    calibrate: per method, how its fused score is then calibrated on the same items (training.calibration:
      "temperature", "isotonic" or "identity"; default FUSED_CALIBRATION).
    """
    from scipy.optimize import minimize
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(positive, dtype=bool)
    if len(rows) != len(y):
        raise ValueError("fit_fusion needs one label per row")
    present = [_present(r) for r in rows]
    used = [m for m in MODALITIES if any(m in p for p in present)]
    info = {"n_items": int(len(y)), "n_positive": int(y.sum()), "modalities": used, "l2": l2,
            "stacking_c": stacking_c}
    if not used:
        return FusionParams(card={**(card or {}), "fitted_on": info})
    has = np.array([[m in p for m in used] for p in present])
    scores = np.array([[p.get(m, 0.5) for m in used] for p in present])
    confidence = np.array([[trust(r[m]) if h else 0.0 for m, h in zip(used, row_has)]
                           for r, row_has in zip(rows, has)])
    logits = np.array([[logit(p[m]) if m in p else 0.0 for m in used] for p in present])
    any_present = has.any(axis=1)

    weights = {m: 1.0 for m in used}
    if "weighted" in methods and any_present.any():
        base = np.where(has, 0.05 + confidence, 0.0)[any_present]
        x, target = scores[any_present], y[any_present]

        def weighted_loss(theta: np.ndarray) -> float:
            w = base * np.exp(theta)
            q = np.clip((w * x).sum(axis=1) / w.sum(axis=1), 1e-4, 1 - 1e-4)
            return float(-np.where(target, np.log(q), np.log(1 - q)).mean() + l2 * (theta ** 2).sum())

        theta = minimize(weighted_loss, np.zeros(len(used)), method="L-BFGS-B", bounds=[(-3, 3)] * len(used)).x
        weights = {m: round(float(math.exp(t)), 6) for m, t in zip(used, theta)}

    def enough(mask: np.ndarray) -> bool:
        return int(y[mask].sum()) >= min_per_class and int((~y[mask]).sum()) >= min_per_class

    product: dict[str, float] = {}
    if "product" in methods:
        learnable = [i for i in range(len(used)) if enough(has[:, i])]
        product = {m: 1.0 for m in used}
        if learnable:
            model = LogisticRegression(C=stacking_c, fit_intercept=False, max_iter=1000)
            # modalities kept at the prior still count, as a fixed offset
            fixed = logits[:, [i for i in range(len(used)) if i not in learnable]].sum(axis=1)
            model.fit(np.column_stack([logits[:, learnable], fixed]), y)
            for i, c in zip(learnable, model.coef_[0]):
                product[used[i]] = round(max(0.0, float(c)), 6)

    stacking: dict[str, dict] = {}
    if "stacking" in methods:
        for size in range(1, len(used) + 1):
            for subset in itertools.combinations(range(len(used)), size):
                mask = has[:, list(subset)].all(axis=1)
                if not enough(mask):  # type: ignore[arg-type]  # numpy stubs: all(axis=1) of a 2-D array is an array
                    continue
                model = LogisticRegression(C=stacking_c, max_iter=1000).fit(logits[mask][:, list(subset)], y[mask])
                stacking[subset_key([used[i] for i in subset])] = {
                    "coef": [round(float(c), 6) for c in model.coef_[0]],
                    "intercept": round(float(model.intercept_[0]), 6), "n": int(mask.sum())}
    params = FusionParams(weights=weights, stacking=stacking, product=product,
                          card={**(card or {}), "fitted_on": info})
    calibrate = FUSED_CALIBRATION if calibrate is None else calibrate
    info["calibration"] = {m: calibrate[m] for m in methods if m in calibrate}
    for method in (m for m in methods if calibrate.get(m, "identity") != "identity"):
        fused = [fuse(r, method, params).score for r in rows]
        keep = [i for i, f in enumerate(fused) if f is not None]
        params.calibration[method] = fit_calibration(calibrate[method], [float(fused[i] or 0) for i in keep], y[keep])
    return params


def cross_validated_fusion(rows: list[dict[str, ModalityScore]], positive, methods=FUSION_METHODS,
                           folds: int | None = None, seed: int = 0, **fit_kwargs) -> dict[str, list[FusedScore]]:
    """Each item fused with parameters learned on the other folds only (folds=None or >= n: leave-one-out)."""
    y = np.asarray(positive, dtype=bool)
    n = len(rows)
    folds = n if folds is None or folds >= n else folds
    order = np.random.default_rng(seed).permutation(n)
    fold_of = np.empty(n, dtype=np.int64)
    fold_of[order] = np.arange(n) % folds
    out: dict[str, list[FusedScore | None]] = {m: [None] * n for m in methods}
    for f in range(folds):
        test = np.flatnonzero(fold_of == f)
        train = np.flatnonzero(fold_of != f)
        params = fit_fusion([rows[i] for i in train], y[train], methods=tuple(methods), **fit_kwargs)
        for i in test:
            for method in methods:
                out[method][i] = fuse(rows[i], method, params)
    return out  # type: ignore[return-value]
