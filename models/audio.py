"""Audio tone and mood: an embedding of a 16 kHz mono clip, and the scorer that turns it into P(positive).

The embedding joins three views of the same clip:
- pooled states of the shared Whisper encoder (mean and standard deviation over its 20 ms frames), which carry voice
  quality, speaking style and the timbre, harmony and rhythm of music;
- a short vector of prosody and spectral statistics computed with numpy (energy, pitch, voicing, spectral shape,
  onset rate and pulse), which carries the loudness and pitch movement that mark arousal and valence in speech;
- tonal statistics of music (numpy chroma): how major or minor the clip sounds against the Krumhansl-Kessler key
  profiles, how clear its key is and how fast its harmony moves, and its key-normalised pitch-class profile. Mode is
  one of music's strongest valence cues and the speech encoder barely sees it (on held-out validation songs the
  tonal view raised per-song valence accuracy from 0.845 to 0.859).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from media import SAMPLE_RATE
from models.audio_features import (
    EPS,
    FRAME_SAMPLES,
    HOP_SAMPLES,
    MIN_SCORED_S,
    PROSODY_NAMES,
    QUIET_FRAME_DBFS,
    SILENCE_DBFS,
    TONAL_NAMES,
    active_level_db,
    frame_rms_db,
    mono_samples,
    prosody_features,
    tonal_features,
)
from models.base import ModalityScore, Quality

FEATURE_VERSION = 2

# Whisper's encoder takes at most 30 s (3000 mel frames); longer clips are cut into equal chunks of at most this.
MAX_CHUNK_SECONDS = 30.0
MAX_MEL_FRAMES = 3000
MIN_SECONDS = 0.25
ENCODE_BATCH = 8


# Whisper blocks the audio embedding reads by default: tiny.en's third of four blocks carries more of a voice's and a
# song's affect than the last one, which is tuned to words (RAVDESS actors 19-24 valence macro F1 0.86 vs 0.83, 4Q
# music per song 0.82 vs 0.74: scripts/explore_audio_features.py).
DEFAULT_ENCODER_BLOCKS = {"tiny.en": 3}
_MODEL_ID = re.compile(r"^whisper-(?P<size>[A-Za-z0-9.]+)-enc(?P<blocks>\d*)-meanstd\+prosody(?P<prosody>\d+)"
                       r"(\+tonal(?P<tonal>\d+))?-v(?P<v>\d+)$")


def _as_clip(clip: Any) -> np.ndarray:
    return mono_samples(clip, MIN_SECONDS)


def unscorable(audio: np.ndarray) -> str | None:
    """Why the live audio scorer leaves a window unscored (too short, silence), or None: one rule for the pipeline
    and for evaluation."""
    if len(audio) < MIN_SCORED_S * SAMPLE_RATE:
        return f"too short for the audio model ({len(audio) / SAMPLE_RATE:.1f} s < {MIN_SCORED_S:.0f} s)"
    if active_level_db(audio) < SILENCE_DBFS:
        return "silence"
    return None


def _chunks(audio: np.ndarray) -> list[np.ndarray]:
    """Equal pieces of at most MAX_CHUNK_SECONDS, so no piece is a sliver."""
    n = max(1, math.ceil(len(audio) / (MAX_CHUNK_SECONDS * SAMPLE_RATE)))
    return np.array_split(audio, n)


class AudioEmbedder:
    """Whisper encoder states (mean + std over frames, read after `encoder_blocks` blocks) joined with numpy prosody
    statistics.

    The mel features come from the process's shared Whisper model of that size (models.whisper.load_whisper); the
    encoder is that model's own when all blocks are read, else a copy that stops early (load_whisper_encoder).
    CTranslate2 encoders are thread-safe, so this embedder may run in a worker thread beside the ASR.
    """

    def __init__(self, whisper_size: str = "tiny.en", encoder_blocks: int | None = None, device: str = "auto") -> None:
        import ctranslate2

        from models.whisper import (
            encoder_block_count,
            load_whisper,
            load_whisper_encoder,
        )

        self._storage_view = ctranslate2.StorageView
        total = encoder_block_count(whisper_size)
        blocks = DEFAULT_ENCODER_BLOCKS.get(whisper_size, total) if encoder_blocks is None else int(encoder_blocks)
        if not 1 <= blocks <= total:
            raise ValueError(f"Whisper {whisper_size} has {total} encoder blocks; cannot read after block {blocks}")
        self.whisper_size = whisper_size
        self.encoder_blocks = blocks
        self._features = load_whisper(whisper_size, device).feature_extractor
        self._encoder = load_whisper_encoder(whisper_size, blocks, device)
        self.encoder_dim = int(self._encode([np.zeros(8000, dtype=np.float32)])[0].shape[-1])
        # the id of the full encoder has no block count, so embeddings and heads made before blocks were selectable
        # keep their id
        depth = "" if blocks == total else str(blocks)
        self.model_id = (f"whisper-{whisper_size}-enc{depth}-meanstd+prosody{len(PROSODY_NAMES)}"
                         f"+tonal{len(TONAL_NAMES)}-v{FEATURE_VERSION}")
        self.dim = 2 * self.encoder_dim + len(PROSODY_NAMES) + len(TONAL_NAMES)

    @classmethod
    def from_model_id(cls, model_id: str, device: str = "auto") -> AudioEmbedder:
        """The embedder that computes embeddings of this id (as a head's card names them)."""
        m = _MODEL_ID.match(model_id or "")
        if m is None or int(m["prosody"]) != len(PROSODY_NAMES) or int(m["tonal"] or 0) != len(TONAL_NAMES) \
                or int(m["v"]) != FEATURE_VERSION:
            raise ValueError(f"this build cannot compute audio embeddings {model_id!r} (it computes "
                             f"whisper-<size>-enc[<blocks>]-meanstd+prosody{len(PROSODY_NAMES)}"
                             f"+tonal{len(TONAL_NAMES)}-v{FEATURE_VERSION})")
        from models.whisper import encoder_block_count

        size = m["size"]
        blocks = int(m["blocks"]) if m["blocks"] else encoder_block_count(size)
        return cls(size, blocks, device)

    @classmethod
    def for_head(cls, head: Any | None, device: str = "auto") -> AudioEmbedder:
        """The embedder an audio head was trained on (the default one when there is no head, or its card does not
        say)."""
        model_id = head.embedding_model_id if head is not None else None
        if not model_id:
            return cls(device=device)
        try:
            return cls.from_model_id(model_id, device)
        except ValueError as exc:
            assert head is not None  # the model id came from its card
            raise RuntimeError(f"audio head {head.name!r}: {exc}; retrain it (scripts/train_default_heads.py)") \
                from None

    def _mel(self, audio: np.ndarray) -> np.ndarray:
        # Called without chunk_length: faster-whisper's extractor only mutates itself when that is given.
        return self._features(audio)[:, :MAX_MEL_FRAMES]

    def _encode(self, pieces: list[np.ndarray]) -> list[np.ndarray]:
        """Encoder states (frames x width) for each piece; pieces of equal mel length are batched together."""
        mels = [self._mel(p) for p in pieces]
        out: list[np.ndarray | None] = [None] * len(mels)
        by_length: dict[int, list[int]] = {}
        for i, mel in enumerate(mels):
            by_length.setdefault(mel.shape[1], []).append(i)
        for indices in by_length.values():
            for start in range(0, len(indices), ENCODE_BATCH):
                batch = indices[start:start + ENCODE_BATCH]
                stacked = np.ascontiguousarray(np.stack([mels[i] for i in batch]), dtype=np.float32)
                states = np.asarray(self._encoder.encode(self._storage_view.from_array(stacked), to_cpu=True))
                for j, i in enumerate(batch):
                    out[i] = states[j]
        return out  # type: ignore[return-value]

    def encoder_states(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """All encoder frames of each clip (a clip over 30 s is encoded in chunks and its frames joined)."""
        audios = [_as_clip(c) for c in clips]
        pieces: list[np.ndarray] = []
        owner: list[int] = []
        for i, audio in enumerate(audios):
            for piece in _chunks(audio):
                pieces.append(piece)
                owner.append(i)
        states = self._encode(pieces)
        joined: list[list[np.ndarray]] = [[] for _ in audios]
        for i, s in zip(owner, states):
            joined[i].append(s)
        return [np.concatenate(parts, axis=0) for parts in joined]

    def embed(self, clips: list[np.ndarray]) -> np.ndarray:
        """(n, dim) float32: [mean of encoder frames, std of encoder frames, prosody features, tonal features]."""
        if not clips:
            return np.zeros((0, self.dim), dtype=np.float32)
        from models.runtime import beside

        audios = [_as_clip(c) for c in clips]
        all_states, features = beside(lambda: self.encoder_states(audios),
                                      lambda: [np.concatenate([prosody_features(a), tonal_features(a)])
                                               for a in audios])
        rows = [np.concatenate([states.mean(axis=0), states.std(axis=0), own])
                for states, own in zip(all_states, features)]
        return np.stack(rows).astype(np.float32)


# An audio window's quality. Loudness: its active level (dBFS) ramps from LEVEL_POOR to LEVEL_GOOD (RAVDESS's quiet
# studio speech sits near -43 dBFS, music near -10). Noise: the mean spectral flatness (log10) of clean speech and
# music lies at -0.81 to -0.25; white noise added at 10 dB SNR lifts it to -0.20 to -0.10 and at 0 dB to about -0.08
# (RAVDESS actors 20-24, 4Q songs and the music videos). Clipping: the share of samples on a flat top at full scale.
LEVEL_POOR, LEVEL_GOOD = -60.0, -45.0
FLATNESS_CLEAN, FLATNESS_NOISE = -0.25, -0.08
CLIPPED_POOR = 0.02


def clipped_share(audio: np.ndarray) -> float:
    """The share of samples that sit on a flat top at (or near) full scale: hard clipping."""
    a = np.abs(np.asarray(audio, dtype=np.float32))
    if len(a) < 2:
        return 0.0
    flat_top = (a[1:] >= 0.98) & (np.abs(np.diff(audio)) < 1e-4)
    return float(flat_top.mean())


def audio_quality(level_db: float, flatness: float, clipped: float) -> Quality:
    """How good a window's sound is to judge: loud enough, not buried in noise, not clipped."""
    loud_q = float(np.clip((level_db - LEVEL_POOR) / (LEVEL_GOOD - LEVEL_POOR), 0.0, 1.0))
    clean_q = float(np.clip((FLATNESS_NOISE - flatness) / (FLATNESS_NOISE - FLATNESS_CLEAN), 0.0, 1.0))
    clip_q = float(np.clip(1.0 - clipped / CLIPPED_POOR, 0.0, 1.0))
    notes = []
    if loud_q < 1:
        notes.append(f"quiet ({level_db:.0f} dBFS)")
    if clean_q < 1:
        notes.append("noisy")
    if clip_q < 1:
        notes.append(f"clipped ({100 * clipped:.1f} % of samples)")
    return Quality(loud_q * clean_q * clip_q, tuple(notes),
                   {"level_dbfs": level_db, "spectral_flatness": flatness, "clipped_share": clipped})


class AudioScorer:
    """P(positive) of each clip from the audio head; silence and empty clips are reported missing, not guessed."""

    def __init__(self, embedder: AudioEmbedder, head: Any | None) -> None:
        self.embedder = embedder
        self.head = head

    def score(self, clips: list[np.ndarray]) -> list[ModalityScore]:
        results: list[ModalityScore | None] = [None] * len(clips)
        to_embed: list[int] = []
        audios: list[np.ndarray] = []
        levels: list[float] = []
        for i, clip in enumerate(clips):
            if clip is None or np.size(clip) == 0:
                results[i] = ModalityScore.missing("no audio")
                continue
            try:
                audio = _as_clip(clip)
            except ValueError as exc:
                results[i] = ModalityScore.missing(f"unusable audio: {exc}")
                continue
            problem = unscorable(audio)
            if problem is not None:
                results[i] = ModalityScore.missing(problem)
                continue
            level = active_level_db(audio)
            if self.head is None:
                results[i] = ModalityScore.missing("no audio head")
                continue
            to_embed.append(i)
            audios.append(audio)
            levels.append(level)
        if to_embed:
            assert self.head is not None  # windows are embedded only with a head (missing above without one)
            X = self.embedder.embed(audios)
            positivity = np.asarray(self.head.positivity(X), dtype=np.float64)
            prosody_at = 2 * self.embedder.encoder_dim
            names = feature_names(self.embedder.encoder_dim)
            for i, audio, p, level, row in zip(to_embed, audios, positivity, levels, X):
                rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
                prosody = dict(zip(PROSODY_NAMES, row[prosody_at:prosody_at + len(PROSODY_NAMES)].tolist()))
                details = {
                    "rms_db": round(20.0 * math.log10(rms + EPS), 1),
                    "active_db": round(level, 1),
                    "voiced_ratio": round(prosody["voiced_ratio"], 3),
                }
                if prosody["voiced_ratio"] > 0.05:  # the pitch statistics (semitones above 100 Hz, / 12)
                    details["pitch_hz"] = round(100.0 * 2.0 ** prosody["f0_semitones_median"], 1)
                    details["pitch_variability_st"] = round(12.0 * prosody["f0_semitones_std"], 2)
                if hasattr(self.head, "contributions"):
                    details["top_features"] = top_features(self.head.contributions(row), names)
                quality = audio_quality(level, prosody["flatness_mean"], clipped_share(audio))
                results[i] = ModalityScore.of(float(p), details=details, quality=quality)
        return results  # type: ignore[return-value]


def heard_shares(audio: np.ndarray, speech_spans: list[tuple[float, float]]) -> dict[str, float]:
    """What a clip holds, 25 ms frame by frame: speech (frames inside the spans, in seconds from the clip's start),
    silence (quiet frames outside them) and other sound (music, noise): three shares that add up to one."""
    levels = frame_rms_db(np.asarray(audio, dtype=np.float32))
    centres = (np.arange(len(levels)) * HOP_SAMPLES + FRAME_SAMPLES / 2) / SAMPLE_RATE
    speech = np.zeros(len(levels), dtype=bool)
    for start, end in speech_spans:
        speech |= (centres >= start) & (centres < end)
    quiet = levels < QUIET_FRAME_DBFS
    frames = max(len(levels), 1)
    return {"speech_share": round(float(speech.sum()) / frames, 3),
            "silence_share": round(float((quiet & ~speech).sum()) / frames, 3),
            "other_sound_share": round(float((~quiet & ~speech).sum()) / frames, 3)}


def feature_names(encoder_dim: int) -> list[str]:
    """The name of each embedding dimension; the Whisper encoder's pooled states share one name."""
    return ["voice_and_timbre"] * (2 * encoder_dim) + list(PROSODY_NAMES) + list(TONAL_NAMES)


def top_features(contributions: np.ndarray, names: list[str], top: int = 3) -> list[dict]:
    """The named features (the encoder's states summed as one) that pushed this score most, with their signed
    first-order effect on P(positive)."""
    totals: dict[str, float] = {}
    for name, value in zip(names, contributions.tolist()):
        totals[name] = totals.get(name, 0.0) + value
    ranked = sorted(totals.items(), key=lambda item: -abs(item[1]))[:top]
    return [{"feature": name, "effect": round(value, 3)} for name, value in ranked]


# what the audio scorer is used by, from wherever it is defined
__all__ = ["AudioEmbedder", "AudioScorer", "heard_shares", "prosody_features", "tonal_features", "unscorable"]
