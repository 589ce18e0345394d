"""Training heads on cached embeddings: `vidsent train MANIFEST --modality M [--out DIR]`.

Two kinds of head, both ending in temperature calibration on a validation split:
- logreg: multinomial logistic regression (scikit-learn), C picked on the validation split;
- mlp: the prototype's head, two hidden layers with LeakyReLU and dropout 0.3, trained with AdamW on class-weighted
  cross-entropy or focal loss, early-stopped on the validation loss.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from app.options import add_model_arguments
from models.heads import Head, head_from_arrays

HEAD_KINDS = ("mlp", "logreg")
LOSSES = ("weighted", "focal", "plain")


@dataclass
class TrainConfig:
    kind: str = "mlp"
    hidden: tuple[int, int] = (256, 128)
    dropout: float = 0.3
    input_dropout: float = 0.1
    loss: str = "weighted"          # class-weighted cross-entropy, focal loss (class-weighted too), or plain
    focal_gamma: float = 2.0
    lr: float = 1e-3
    weight_decay: float = 1e-3
    max_epochs: int = 300
    patience: int = 20
    batch_size: int = 128
    c_grid: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
    # mlp: train this many MLPs (seeds seed, seed + 1, ...) and ship their logit average, stored exactly as one MLP
    # with block-diagonal layers; averaging lowers the variance of a head trained on few speakers or songs
    ensemble: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise ValueError(f"unknown head kind {self.kind!r}: choose {' or '.join(HEAD_KINDS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}: choose one of {', '.join(LOSSES)}")


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature T that minimises the negative log-likelihood of softmax(logits / T) on held-out data."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return 1.0

    def nll(log_t: float) -> float:
        z = logits / math.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(y)), y].mean())

    best = minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded")
    return float(math.exp(best.x))


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights, normalised to mean 1 over the samples ('balanced')."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32)


def stratified_split(y: np.ndarray, fraction: float, seed: int = 0,
                     groups: Sequence[Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation). With groups (speakers, songs, images), no group is on both sides."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    if groups is None:
        val: list[int] = []
        for c in np.unique(y):
            idx = np.flatnonzero(y == c)
            rng.shuffle(idx)
            val.extend(idx[:max(1, int(round(len(idx) * fraction)))].tolist())
        val_idx = np.array(sorted(val), dtype=np.int64)
    else:
        group_of = np.asarray(groups)
        unique = np.unique(group_of)
        # stratify groups by their majority label so every class reaches the validation side
        majority = {g: np.bincount(y[group_of == g]).argmax() for g in unique}
        chosen: list[Any] = []
        for c in np.unique(list(majority.values())):
            members = np.array([g for g in unique if majority[g] == c], dtype=object)
            rng.shuffle(members)
            chosen.extend(members[:max(1, int(round(len(members) * fraction)))].tolist())
        val_idx = np.flatnonzero(np.isin(group_of, np.array(chosen, dtype=group_of.dtype)))
    train_idx = np.setdiff1d(np.arange(len(y)), val_idx)
    return train_idx, val_idx


def standardiser(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    return mean.astype(np.float32), np.where(scale > 1e-6, scale, 1.0).astype(np.float32)


def _fit_logreg(X_tr, y_tr, X_val, y_val, n_classes: int, config: TrainConfig, w_tr=None, w_val=None):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    mean, scale = standardiser(X_tr)
    Z_tr, Z_val = (X_tr - mean) / scale, (X_val - mean) / scale
    best = None
    for c in config.c_grid:
        model = LogisticRegression(C=c, class_weight="balanced" if config.loss != "plain" else None,
                                   max_iter=2000, random_state=config.seed)
        model.fit(Z_tr, y_tr, sample_weight=w_tr)
        f1 = f1_score(y_val, model.predict(Z_val), average="macro", sample_weight=w_val)
        if best is None or f1 > best[0]:
            best = (f1, c, model)
    if best is None:
        raise ValueError("config.c_grid is empty: give at least one C to try")
    _, c, model = best
    coef, intercept = model.coef_.astype(np.float32), model.intercept_.astype(np.float32)
    if n_classes == 2 and coef.shape[0] == 1:
        # scikit-learn keeps one row for binary problems: logits [0, z] give the same softmax
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.array([0.0, intercept[0]], dtype=np.float32)
    return [(coef, intercept)], mean, scale, {"C": c}


def _fit_mlp(X_tr, y_tr, X_val, y_val, n_classes: int, config: TrainConfig, w_tr=None, w_val=None):
    if config.ensemble <= 1:
        return _fit_one_mlp(X_tr, y_tr, X_val, y_val, n_classes, config, w_tr, w_val)
    members = [_fit_one_mlp(X_tr, y_tr, X_val, y_val, n_classes, replace(config, seed=config.seed + k, ensemble=1),
                            w_tr, w_val) for k in range(config.ensemble)]
    layers = merge_mlps([m[0] for m in members])
    _, mean, scale, _ = members[0]
    return layers, mean, scale, {"ensemble_best_epochs": [m[3]["best_epoch"] for m in members],
                                 "ensemble_val_losses": [m[3]["val_loss"] for m in members]}


def merge_mlps(members: list[list[tuple[np.ndarray, np.ndarray]]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """One MLP whose logits are the mean of the members' logits (members: same depth, same input): the first layers
    are stacked, the hidden ones block-diagonal, the output layer side by side and divided by the member count."""
    k = len(members)
    last = len(members[0]) - 1
    merged = []
    for i in range(last + 1):
        weights = [m[i][0] for m in members]
        biases = [m[i][1] for m in members]
        if i == 0:
            w, b = np.vstack(weights), np.concatenate(biases)
        elif i == last:
            w, b = np.hstack(weights) / k, np.mean(biases, axis=0)
        else:
            w = np.zeros((sum(x.shape[0] for x in weights), sum(x.shape[1] for x in weights)), dtype=np.float32)
            r = c = 0
            for x in weights:
                w[r:r + x.shape[0], c:c + x.shape[1]] = x
                r, c = r + x.shape[0], c + x.shape[1]
            b = np.concatenate(biases)
        merged.append((w.astype(np.float32), b.astype(np.float32)))
    return merged


def _fit_one_mlp(X_tr, y_tr, X_val, y_val, n_classes: int, config: TrainConfig, w_tr=None, w_val=None):
    import torch
    from torch import nn

    torch.manual_seed(config.seed)
    mean, scale = standardiser(X_tr)
    Z_tr = torch.from_numpy((X_tr - mean) / scale)
    Z_val = torch.from_numpy((X_val - mean) / scale)
    t_tr, t_val = torch.from_numpy(y_tr.astype(np.int64)), torch.from_numpy(y_val.astype(np.int64))
    h1, h2 = config.hidden
    net = nn.Sequential(nn.Dropout(config.input_dropout), nn.Linear(Z_tr.shape[1], h1), nn.LeakyReLU(0.01),
                        nn.Dropout(config.dropout), nn.Linear(h1, h2), nn.LeakyReLU(0.01), nn.Dropout(config.dropout),
                        nn.Linear(h2, n_classes))
    weight = torch.from_numpy(class_weights(y_tr, n_classes)) if config.loss != "plain" else None
    loss_fn = _loss(config, weight)
    s_tr = torch.from_numpy(np.asarray(w_tr if w_tr is not None else np.ones(len(y_tr)), np.float32))
    s_val = torch.from_numpy(np.asarray(w_val if w_val is not None else np.ones(len(y_val)), np.float32))
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    best_loss, best_state, best_epoch, stale = math.inf, None, 0, 0
    for epoch in range(config.max_epochs):
        net.train()
        perm = torch.randperm(len(Z_tr), generator=generator)
        for start in range(0, len(perm), config.batch_size):
            idx = perm[start:start + config.batch_size]
            opt.zero_grad()
            loss_fn(net(Z_tr[idx]), t_tr[idx], s_tr[idx]).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(net(Z_val), t_val, s_val))
        if val_loss < best_loss - 1e-4:
            best_loss, best_epoch, stale = val_loss, epoch, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            stale += 1
            if stale >= config.patience:
                break
    if best_state is None:
        raise RuntimeError("no epoch gave a finite validation loss (or max_epochs is 0): nothing to keep")
    net.load_state_dict(best_state)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    layers = [(m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy()) for m in linears]
    return layers, mean, scale, {"best_epoch": best_epoch + 1, "val_loss": round(best_loss, 5)}


def _loss(config: TrainConfig, weight):
    """loss(logits, target, sample_weight): class-weighted (weight) cross-entropy or focal loss, averaged with the
    items' own weights times their class weights as nn.CrossEntropyLoss(weight=...) averages."""
    import torch

    gamma = config.focal_gamma if config.loss == "focal" else 0.0

    def loss(logits, target, sample_weight):
        logp = torch.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
        w = sample_weight * (weight[target] if weight is not None else 1.0)
        per_item = -logp if gamma == 0.0 else -(1 - logp.exp()) ** gamma * logp
        return (per_item * w).sum() / w.sum()

    return loss


def fit_head(X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray, y_val: np.ndarray,
             classes: list[str], config: TrainConfig | None = None, name: str = "head",
             card: dict[str, Any] | None = None, w_train: np.ndarray | None = None,
             w_val: np.ndarray | None = None) -> Head:
    """Train a head on (X_train, y_train), select and calibrate it on (X_val, y_val). y are class indices; w_train
    and w_val are optional per-item weights."""
    config = config or TrainConfig()
    X_train, X_val = np.asarray(X_train, np.float32), np.asarray(X_val, np.float32)
    y_train, y_val = np.asarray(y_train, np.int64), np.asarray(y_val, np.int64)
    if len(X_train) == 0 or len(X_val) == 0:
        raise ValueError("training needs items on both the training and the validation side")
    missing = [classes[c] for c in range(len(classes)) if not (y_train == c).any()]
    if missing:
        raise ValueError(f"no training items of class {missing}")
    fit = _fit_logreg if config.kind == "logreg" else _fit_mlp
    started = time.time()
    layers, mean, scale, info = fit(X_train, y_train, X_val, y_val, len(classes), config, w_train, w_val)
    head = head_from_arrays(name, classes, layers, mean, scale, 1.0, card)
    head.temperature = fit_temperature(head.logits(X_val), y_val)
    head.card = {**(card or {}), "training": {**(card or {}).get("training", {}), **{
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
        "n_train": int(len(y_train)), "n_val": int(len(y_val)),
        "train_counts": {c: int((y_train == i).sum()) for i, c in enumerate(classes)},
        "seconds": round(time.time() - started, 1), **info}}}
    return head


def data_hash(keys: Sequence[str], labels: Sequence[str]) -> str:
    """A hash of the training items (their content keys) and labels, for the card."""
    digest = hashlib.sha256()
    for key, label in zip(keys, labels):
        digest.update(f"{key}\t{label}\n".encode())
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------------------- from manifests
DEFAULT_HEAD_NAME = {"text": "text", "audio": "audio", "visual": "scene"}


@dataclass
class Splits:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def describe(self) -> str:
        return f"{len(self.train)} train / {len(self.val)} validation / {len(self.test)} test"


def manifest_splits(manifest, val_fraction: float = 0.15, seed: int = 0) -> Splits:
    """The manifest's own split column when it has one (val rows; test rows are held out), else a stratified
    validation split that keeps each group (speaker, song) on one side."""
    split = np.array([it.split or "train" for it in manifest.items])
    test = np.flatnonzero(split == "test")
    val = np.flatnonzero(split == "val")
    pool = np.flatnonzero(split == "train")
    if len(val) == 0:
        y = np.asarray(manifest.label_indices())[pool]
        groups = [manifest.items[i].group for i in pool]
        use_groups = all(g is not None for g in groups) and len(set(groups)) > 1
        tr, va = stratified_split(y, val_fraction, seed, groups if use_groups else None)
        return Splits(pool[tr], pool[va], test)
    return Splits(pool, val, test)


def train_from_manifest(manifest, *, name: str, config: TrainConfig, out_dir: Path | None, device: str = "auto",
                        asr: str = "tiny.en", cache=None, val_fraction: float = 0.15, finetune=None,
                        card: dict[str, Any] | None = None,
                        log=print) -> tuple[Head, dict[str, Any]]:
    """Embed a manifest (through the cache), train and calibrate a head, measure it on validation and on the
    manifest's test rows, and save it to out_dir (with the fine-tuned encoder delta for a fine-tuned text head).

    finetune: a training.text_finetune.FinetuneConfig to tune MiniLM's top layers first (text only)."""
    from training.embed_cache import (
        EmbeddingCache,
        embed_manifest,
        make_embedder,
        text_key,
    )
    from training.metrics import classification_summary, rounded

    cache = cache or EmbeddingCache()
    classes = manifest.classes
    y = np.asarray(manifest.label_indices(), dtype=np.int64)
    splits = manifest_splits(manifest, val_fraction, config.seed)
    log(f"{name}: {len(manifest.items)} items ({splits.describe()}), classes {classes}")
    delta_file = None
    if finetune is not None:
        if manifest.modality != "text":
            raise ValueError("only text heads can fine-tune their encoder")
        if out_dir is None:
            raise ValueError("a fine-tuned text head needs an output folder for its encoder layers")
        X, embedder, delta_file = _finetuned_text_embeddings(manifest, y, splits, finetune, out_dir, name, device, log)
        keys = [text_key(it.text) for it in manifest.items]
        cache.get_or_compute(keys, lambda idx: X[idx], modality="text", model_id=embedder.model_id, progress=False)
    else:
        embedder = make_embedder(manifest.modality, device, asr)
        X = embed_manifest(manifest, embedder, cache)
    base_card = {
        "embedding": {"model_id": embedder.model_id, "dim": int(X.shape[1]), "modality": manifest.modality},
        "training": {"manifest": str(manifest.path),
                     "data_hash": data_hash([manifest.items[i].ref for i in splits.train],
                                            [manifest.items[i].label for i in splits.train])},
        **(card or {}),
    }
    if delta_file is not None:
        base_card["encoder_delta"] = delta_file.name
        base_card["training"]["finetune"] = {**asdict(finetune), **getattr(finetune, "result", {})}
    weights = np.asarray(manifest.weights, dtype=np.float64)
    unweighted = bool(np.all(weights == 1.0))
    head = fit_head(X[splits.train], y[splits.train], X[splits.val], y[splits.val], classes, config, name, base_card,
                    None if unweighted else weights[splits.train], None if unweighted else weights[splits.val])
    metrics: dict[str, Any] = {}
    for part, idx in (("validation", splits.val), ("test", splits.test)):
        if len(idx) == 0:
            continue
        proba = head.predict_proba(X[idx])
        truth = [classes[i] for i in y[idx]]
        pred = [classes[i] for i in proba.argmax(axis=1)]
        p_pos = proba @ head.valence if set(classes) <= {"negative", "neutral", "positive"} else None
        metrics[part] = rounded(classification_summary(truth, pred, classes, proba, p_pos))
        log(f"{name} {part}: " + ", ".join(f"{k} {v}" for k, v in metrics[part].items() if k != "confusion"))
    head.card["metrics"] = metrics
    if out_dir is not None:
        head.save(Path(out_dir) / name)
        log(f"saved {Path(out_dir) / name}.safetensors and .json")
    return head, metrics


def _finetuned_text_embeddings(manifest, y, splits: Splits, finetune, out_dir: Path, name: str, device: str, log):
    from models.text import TextEmbedder
    from training.text_finetune import (
        FrozenBottom,
        embed_from_bottom,
        finetune_top_layers,
        save_delta,
    )

    embedder = TextEmbedder(device)
    texts = [it.text for it in manifest.items]
    n_frozen = len(embedder.model.encoder.layer) - finetune.tune_layers
    log(f"{name}: computing the {n_frozen} frozen MiniLM layers once for {len(texts)} sentences")
    bottom = FrozenBottom(embedder, texts, n_frozen)
    train_bottom, val_bottom = _sub_bottom(bottom, splits.train), _sub_bottom(bottom, splits.val)
    result = finetune_top_layers(embedder, train_bottom, y[splits.train], len(manifest.classes), finetune,
                                 val_bottom, y[splits.val], log=log)
    finetune.result = {"history": result["history"]}
    delta = save_delta(embedder, result["tuned_layers"], Path(out_dir) / f"{name}.encoder.safetensors")
    return embed_from_bottom(embedder, bottom), embedder, delta


def _sub_bottom(bottom, idx):
    from training.text_finetune import FrozenBottom

    sub = FrozenBottom.__new__(FrozenBottom)
    sub.n_frozen, sub.states = bottom.n_frozen, [bottom.states[i] for i in idx]
    return sub


# ------------------------------------------------------------------------------------------------- CLI
def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", type=Path, help="CSV manifest (see training/manifest.py for the columns)")
    parser.add_argument("--modality", required=True, choices=("text", "audio", "visual"))
    parser.add_argument("--out", type=Path, default=Path("heads"), help="folder for the head files (default: heads)")
    parser.add_argument("--name", help="head name (default: text, audio or scene)")
    parser.add_argument("--kind", default="mlp", choices=HEAD_KINDS, help="the prototype's MLP or logistic regression")
    parser.add_argument("--loss", default="weighted", choices=LOSSES,
                        help="class-weighted cross-entropy, focal loss, or plain cross-entropy")
    parser.add_argument("--hidden", default="256,128", help="MLP hidden sizes (two)")
    parser.add_argument("--classes", help="comma-separated class names, when the labels are not sentiment classes")
    parser.add_argument("--label-column", help="the manifest column holding the label")
    parser.add_argument("--val-fraction", type=float, default=0.15,
                        help="validation share when the manifest has no split column")
    parser.add_argument("--max-epochs", type=int, default=300)
    parser.add_argument("--patience", type=int, default=20, help="early stopping: epochs without improvement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--finetune-layers", type=int, default=0,
                        help="text only: fine-tune this many top MiniLM layers before training the head")
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--finetune-polar-weight", type=float, default=0.0,
                        help="3-class text heads: weight of an extra positive-vs-negative loss while fine-tuning")
    parser.add_argument("--cache", type=Path, help="cache folder (default: $VIDSENT_CACHE)")
    add_model_arguments(parser, heads=False, threads=True, asr_help="Whisper model whose encoder embeds audio")


def main_train(args: argparse.Namespace) -> int:
    import torch

    from training.embed_cache import EmbeddingCache
    from training.manifest import ManifestError, read_manifest

    torch.set_num_threads(max(1, args.threads))
    try:
        hidden = tuple(int(h) for h in args.hidden.split(","))
        if len(hidden) != 2:
            raise ValueError("--hidden takes two sizes, e.g. 256,128")
        config = TrainConfig(kind=args.kind, loss=args.loss, hidden=hidden, max_epochs=args.max_epochs,
                             patience=args.patience, seed=args.seed)
        classes = args.classes.split(",") if args.classes else None
        manifest = read_manifest(args.manifest, args.modality, classes, args.label_column)
        finetune = None
        if args.finetune_layers:
            from training.text_finetune import FinetuneConfig

            finetune = FinetuneConfig(tune_layers=args.finetune_layers, epochs=args.finetune_epochs, seed=args.seed,
                                      polar_weight=args.finetune_polar_weight)
        cache = EmbeddingCache(args.cache / "embeddings" if args.cache else None)
        name = args.name or DEFAULT_HEAD_NAME[args.modality]
        train_from_manifest(manifest, name=name, config=config, out_dir=args.out, device=args.device, asr=args.asr,
                            cache=cache, val_fraction=args.val_fraction, finetune=finetune,
                            log=lambda m: print(m, file=sys.stderr, flush=True))
    except (ManifestError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
