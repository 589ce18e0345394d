"""Trained classification heads on top of frozen (or delta-tuned) embeddings.

A head is a small feed-forward net: standardise the embedding, then zero hidden layers (logistic regression) or two
hidden layers with LeakyReLU (the prototype's MLP; dropout only matters while training), then a temperature-scaled
softmax. Inference is plain numpy in float32, so a saved head predicts bit-for-bit what the trained one did.

On disk a head named NAME is two files in one folder:
  NAME.safetensors  the arrays (mean, scale, layer{i}.weight, layer{i}.bias), float32
  NAME.json         the card: classes, kind, temperature, embedding model id, training-data hash, metrics, ...
A card may name extra files beside it (for example a text head's fine-tuned encoder layers).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_HEADS_DIR = Path(__file__).resolve().parent / "default_heads"
HEAD_FORMAT = "vidsent-head/1"
LEAKY_SLOPE = 0.01
# Valence of each class, for positivity(): P(positive) + 0.5 * P(neutral) for the usual classes.
DEFAULT_VALENCE = {"negative": 0.0, "neutral": 0.5, "positive": 1.0}


class HeadFormatError(ValueError):
    """A head file is missing pieces, has the wrong shapes, or does not match its card."""


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _split_path(path: str | Path) -> tuple[Path, str]:
    """'<dir>/<name>', '<dir>/<name>.json' or '<dir>/<name>.safetensors' → (dir, name)."""
    path = Path(path)
    if path.suffix in (".json", ".safetensors"):
        return path.parent, path.stem
    return path.parent, path.name


@dataclass
class Head:
    name: str
    classes: list[str]
    params: dict[str, np.ndarray]
    temperature: float = 1.0
    card: dict[str, Any] = field(default_factory=dict)
    # the folder the head was loaded from (for files its card names); None for a head not yet saved
    source_dir: Path | None = None

    def __post_init__(self) -> None:
        self.params = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in self.params.items()}
        self._check()

    # ---------------------------------------------------------------- structure
    @property
    def n_layers(self) -> int:
        return sum(1 for k in self.params if k.endswith(".weight"))

    @property
    def kind(self) -> str:
        return "logreg" if self.n_layers == 1 else "mlp"

    @property
    def input_dim(self) -> int:
        return int(self.params["layer0.weight"].shape[1])

    def _check(self) -> None:
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise HeadFormatError(f"head {self.name!r}: classes must be 2 or more distinct names, got {self.classes}")
        for key in ("mean", "scale", "layer0.weight", "layer0.bias"):
            if key not in self.params:
                raise HeadFormatError(f"head {self.name!r}: missing array {key!r}")
        width = self.params["layer0.weight"].shape[1]
        if self.params["mean"].shape != (width,) or self.params["scale"].shape != (width,):
            raise HeadFormatError(f"head {self.name!r}: mean/scale do not match the input width {width}")
        for i in range(self.n_layers):
            w, b = self.params.get(f"layer{i}.weight"), self.params.get(f"layer{i}.bias")
            if w is None or b is None or w.ndim != 2 or b.shape != (w.shape[0],):
                raise HeadFormatError(f"head {self.name!r}: layer {i} is missing or malformed")
            if w.shape[1] != width:
                raise HeadFormatError(f"head {self.name!r}: layer {i} expects {w.shape[1]} inputs, gets {width}")
            width = w.shape[0]
        if width != len(self.classes):
            raise HeadFormatError(f"head {self.name!r}: {width} outputs but {len(self.classes)} classes")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise HeadFormatError(f"head {self.name!r}: temperature must be positive, got {self.temperature}")

    # ---------------------------------------------------------------- inference
    def logits(self, X: np.ndarray) -> np.ndarray:
        """Uncalibrated logits, (n, len(classes))."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.input_dim:
            raise ValueError(f"head {self.name!r} expects (n, {self.input_dim}) embeddings, got {X.shape}")
        h = (X - self.params["mean"]) / self.params["scale"]
        last = self.n_layers - 1
        for i in range(self.n_layers):
            h = h @ self.params[f"layer{i}.weight"].T + self.params[f"layer{i}.bias"]
            if i < last:
                h = np.where(h > 0, h, np.float32(LEAKY_SLOPE) * h)
        return h

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Temperature-calibrated class probabilities, (n, len(classes))."""
        return softmax(self.logits(X) / np.float32(self.temperature))

    def predict(self, X: np.ndarray) -> list[str]:
        return [self.classes[i] for i in self.predict_proba(X).argmax(axis=1)]

    @property
    def valence(self) -> np.ndarray:
        """Each class's valence in [0, 1]: from the card's "valence" map, else negative 0 / neutral 0.5 / positive 1."""
        mapping = {**DEFAULT_VALENCE, **self.card.get("valence", {})}
        missing = [c for c in self.classes if c not in mapping]
        if missing:
            raise HeadFormatError(f"head {self.name!r}: no valence for classes {missing}; "
                                  "add a 'valence' map to its card")
        return np.array([mapping[c] for c in self.classes], dtype=np.float32)

    def positivity(self, X: np.ndarray) -> np.ndarray:
        """P(positive) (+ 0.5 * P(neutral) for a 3-class head), (n,)."""
        return self.predict_proba(X) @ self.valence

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Gradient × input of positivity() for one embedding, per input feature, in the standardised space the head
        reads: how much each feature pushes this prediction up (positive) or down, to first order. (d,)"""
        x = np.asarray(x, dtype=np.float32).reshape(1, -1)
        z = (x - self.params["mean"]) / self.params["scale"]
        # forward, keeping each hidden layer's slope (1 or LEAKY_SLOPE) for the way back
        h, slopes, last = z, [], self.n_layers - 1
        for i in range(self.n_layers):
            h = h @ self.params[f"layer{i}.weight"].T + self.params[f"layer{i}.bias"]
            if i < last:
                slopes.append(np.where(h > 0, np.float32(1), np.float32(LEAKY_SLOPE)))
                h = h * slopes[-1]
        p = softmax(h / np.float32(self.temperature))[0]
        v = self.valence
        grad = (p * (v - p @ v) / np.float32(self.temperature))[None, :]  # d positivity / d logits
        for i in range(last, -1, -1):
            grad = grad @ self.params[f"layer{i}.weight"]
            if i > 0:
                grad = grad * slopes[i - 1]
        return (grad * z)[0]

    # ---------------------------------------------------------------- files
    def save(self, path: str | Path) -> None:
        """Write <dir>/<name>.safetensors and <dir>/<name>.json (path may be the folder + name, or either file)."""
        from safetensors.numpy import save_file

        folder, name = _split_path(path)
        folder.mkdir(parents=True, exist_ok=True)
        card = dict(self.card)
        card.update({"format": HEAD_FORMAT, "name": name, "classes": list(self.classes), "kind": self.kind,
                     "temperature": self.temperature, "input_dim": self.input_dim,
                     "hidden": [int(self.params[f"layer{i}.weight"].shape[0]) for i in range(self.n_layers - 1)]})
        save_file(self.params, str(folder / f"{name}.safetensors"), metadata={"format": HEAD_FORMAT})
        (folder / f"{name}.json").write_text(json.dumps(card, indent=2, sort_keys=False, default=_json_default) + "\n")
        self.card, self.name, self.source_dir = card, name, folder

    @classmethod
    def load(cls, path: str | Path) -> Head:
        from safetensors.numpy import load_file

        folder, name = _split_path(path)
        card_path, weights_path = folder / f"{name}.json", folder / f"{name}.safetensors"
        for p in (card_path, weights_path):
            if not p.is_file():
                raise FileNotFoundError(f"head {name!r}: {p} does not exist")
        try:
            card = json.loads(card_path.read_text())
        except json.JSONDecodeError as exc:
            raise HeadFormatError(f"head {name!r}: {card_path} is not valid JSON ({exc})") from exc
        if card.get("format") != HEAD_FORMAT:
            raise HeadFormatError(f"head {name!r}: {card_path} is not a {HEAD_FORMAT} card")
        try:
            params = load_file(str(weights_path))
        except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
            raise HeadFormatError(f"head {name!r}: cannot read {weights_path} ({exc})") from exc
        return cls(name=name, classes=list(card["classes"]), params=params,
                   temperature=float(card.get("temperature", 1.0)), card=card, source_dir=folder)

    @property
    def embedding_model_id(self) -> str | None:
        """The embedder model id the head was trained on (from its card)."""
        return self.card.get("embedding", {}).get("model_id")

    def check_embedder(self, model_id: str) -> str | None:
        """None when the head was trained on this embedder; else a warning to log (the scores may be off)."""
        trained_on = self.embedding_model_id
        if trained_on is None or trained_on == model_id:
            return None
        return (f"head {self.name!r} was trained on embeddings of {trained_on!r} but is given {model_id!r}; "
                f"retrain it (scripts/train_default_heads.py)")

    def sibling(self, filename: str) -> Path:
        """A file the card names, next to the head's own files."""
        if self.source_dir is None:
            raise FileNotFoundError(f"head {self.name!r} has not been saved or loaded from a folder")
        return self.source_dir / filename


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} into a head card")


def load_head(name: str, heads_dir: str | Path | None = None) -> Head | None:
    """The head NAME from heads_dir (default: the shipped models/default_heads/), or None when it is not there.

    A head that is there but broken raises HeadFormatError naming the file: a broken head is never silently skipped.
    """
    folder = Path(heads_dir) if heads_dir is not None else DEFAULT_HEADS_DIR
    if not (folder / f"{name}.json").is_file() or not (folder / f"{name}.safetensors").is_file():
        return None
    return Head.load(folder / name)


def head_from_arrays(name: str, classes: list[str], layers: list[tuple[np.ndarray, np.ndarray]],
                     mean: np.ndarray, scale: np.ndarray, temperature: float = 1.0,
                     card: dict[str, Any] | None = None) -> Head:
    """Build a Head from (weight (out, in), bias (out,)) pairs, first layer first."""
    params: dict[str, np.ndarray] = {"mean": np.asarray(mean), "scale": np.asarray(scale)}
    for i, (w, b) in enumerate(layers):
        params[f"layer{i}.weight"] = np.asarray(w)
        params[f"layer{i}.bias"] = np.asarray(b)
    return Head(name=name, classes=list(classes), params=params, temperature=float(temperature), card=dict(card or {}))
