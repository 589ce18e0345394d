"""The scorer interface: what the live pipeline (and anything that batches or scores remotely) talks to.

Each modality scorer takes a batch of windows and returns one `ModalityScore` per window; it reads only its own
part of a window (`transcript`, `audio` or `frames`). A `FrameAnalyzer` turns sampled RGB frames into per-frame
analyses (faces, expressions, scene embedding) ahead of the windows that pool them. A `ScorerSet` holds one of
each plus the fusion settings; `build_scorers` makes the real ones from the shipped (or given) heads, and tests make
fake ones, so the pipeline runs without any model.

    window(s) ─▶ ScorerSet.score(windows, has_audio, has_video) ─▶ [{text, audio, visual: ModalityScore}]
              ─▶ ScorerSet.fuse(scores) ─▶ FusedScore

A window's audio and visual scores need only its media, its text score needs its words, which speech recognition
may deliver much later: the pipeline scores MEDIA_MODALITIES as soon as a window's media is in and the text once the
words are (`modalities=` and `scored=` of `ScorerSet.score`), so the scoring runs while Whisper still works.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from models.audio import heard_shares
from models.base import MODALITIES, ModalityScore
from models.calibration import Calibration, calibrated, calibration_key, load_calibrations
from models.fusion import FusedScore, FusionParams, fuse

log = logging.getLogger(__name__)

# the modalities that a window's media alone decides (its text needs its words)
MEDIA_MODALITIES = ("audio", "visual")


def modalities_per_window(modalities: Sequence[str] | Sequence[Sequence[str]], n: int) -> list[tuple[str, ...]]:
    """The modalities to score of each of n windows, given one set for all of them or one set per window."""
    if all(isinstance(m, str) for m in modalities):
        return [tuple(modalities)] * n  # type: ignore[arg-type]
    return [tuple(m) for m in modalities]


class WindowParts(Protocol):
    """What a scorer may read of a window (stream.windows.Window has these)."""

    index: int
    audio: np.ndarray  # float32 16 kHz mono
    frames: list[Any]  # the FrameAnalyzer's results for the frames sampled inside the window

    @property
    def transcript(self) -> str: ...

    @property
    def speech_spans(self) -> list[tuple[float, float]]: ...  # seconds from the window's start

    @property
    def language(self) -> str | None: ...  # ISO 639-1 code of its words' language, None when not known

    @property
    def word_probabilities(self) -> tuple[float, ...]: ...  # the recogniser's probability of each word


@runtime_checkable
class Scorer(Protocol):
    modality: str

    def score_batch(self, windows: Sequence[WindowParts]) -> list[ModalityScore]:
        """One score per window, in order; a part it cannot score is `ModalityScore.missing(reason)`."""


@runtime_checkable
class FrameAnalyzer(Protocol):
    def analyze(self, images: list[np.ndarray]) -> list[Any]:
        """One analysis per RGB frame, in order."""


class Scorers(Protocol):
    """What the pipeline and its batcher score windows with: the in-process `ScorerSet`, or a client of scorers that
    run elsewhere (engine.ray_scorers.RayScorerSet). `score` as ScorerSet.score; `fuse` a window's scores into one
    verdict; `frames` the analyzer of sampled frames."""

    frames: FrameAnalyzer

    def score(self, windows: Sequence[WindowParts], has_audio: bool | Sequence[bool] = True,
              has_video: bool | Sequence[bool] = True,
              modalities: Sequence[str] | Sequence[Sequence[str]] = MODALITIES,
              scored: Sequence[dict[str, ModalityScore]] | None = None) -> list[dict[str, ModalityScore]]: ...

    def fuse(self, scores: dict[str, ModalityScore]) -> FusedScore: ...


class WindowPartScorer:
    """A modality scorer as a `Scorer`: hands it the part of each window it reads. `batched` scorers take the parts
    of all windows in one call (text: transcripts, audio: clips); the visual scorer pools one window's frames."""

    def __init__(self, modality: str, scorer, part: Callable[[WindowParts], Any], batched: bool = True):
        self.modality, self.scorer, self.part, self.batched = modality, scorer, part, batched

    def score_batch(self, windows: Sequence[WindowParts]) -> list[ModalityScore]:
        parts = [self.part(w) for w in windows]
        return self.scorer.score(parts) if self.batched else [self.scorer.score(p) for p in parts]


@dataclass
class ScorerSet:
    text: Scorer
    audio: Scorer
    visual: Scorer
    frames: FrameAnalyzer
    fusion: str = "weighted"
    fusion_params: FusionParams | None = None
    # each new score goes through its calibration (models.calibration), keyed by the head or modality that made it
    calibrations: dict[str, Calibration] = field(default_factory=dict)

    def by_modality(self) -> dict[str, Scorer]:
        return {"text": self.text, "audio": self.audio, "visual": self.visual}

    def score(self, windows: Sequence[WindowParts], has_audio: bool | Sequence[bool] = True,
              has_video: bool | Sequence[bool] = True,
              modalities: Sequence[str] | Sequence[Sequence[str]] = MODALITIES,
              scored: Sequence[dict[str, ModalityScore]] | None = None) -> list[dict[str, ModalityScore]]:
        """The scores of every window, each modality as one batch. has_audio / has_video: one flag for all
        windows, or one per window (a batch across streams). A modality whose track is absent is missing with that
        reason; a scorer that raises marks its modality missing for the windows it fails on, never the others.

        modalities: the ones to score now (default all), for all windows or one set per window. scored: per
        window, the scores of the other modalities that an earlier call gave (the pipeline scores MEDIA_MODALITIES
        before the words are in); each row holds those and its modalities. Scoring a window's text, which reads
        its words, adds to its available audio score what the audio heard: speech where the recogniser found
        words, silence, the rest (music, sounds)."""
        n = len(windows)
        audio_flags = [has_audio] * n if isinstance(has_audio, bool) else list(has_audio)
        video_flags = [has_video] * n if isinstance(has_video, bool) else list(has_video)
        wanted = modalities_per_window(modalities, n)
        out: list[dict[str, ModalityScore]] = [dict(done) for done in scored] if scored else [{} for _ in windows]
        for modality, scorer in self.by_modality().items():
            asked = [i for i in range(n) if modality in wanted[i]]
            track = "video" if modality == "visual" else "audio"
            flags = video_flags if track == "video" else audio_flags
            present = [i for i in asked if flags[i]]
            for i in asked:
                if not flags[i]:
                    out[i][modality] = ModalityScore.missing(f"no {track} track")
            if present:
                scores = self._score_isolated(modality, scorer, [windows[i] for i in present])
                for i, score in zip(present, scores):
                    out[i][modality] = calibrated(score, self.calibrations.get(calibration_key(modality, score)))
        for window, row, want in zip(windows, out, wanted):
            audio = row.get("audio")
            if "text" in want and audio is not None and audio.available and len(window.audio):
                row["audio"] = replace(audio, details={**audio.details,
                                                       **heard_shares(window.audio, window.speech_spans)})
        return [{m: row[m] for m in MODALITIES if m in row} for row in out]

    @staticmethod
    def _score_isolated(modality: str, scorer: Scorer, windows: Sequence[WindowParts]) -> list[ModalityScore]:
        """scorer.score_batch(windows); when the batch fails, each window alone, so a window that breaks the
        scorer (of one stream, in a batch across streams) is the only one marked missing."""
        try:
            scores = scorer.score_batch(windows)
            if len(scores) != len(windows):
                raise RuntimeError(f"returned {len(scores)} scores for {len(windows)} windows")
            return scores
        except Exception as exc:  # noqa: BLE001 - one modality's failure must not take the others down
            if len(windows) > 1:
                return [score for w in windows for score in ScorerSet._score_isolated(modality, scorer, [w])]
            log.error("%s scorer failed on window %s: %s: %s", modality, windows[0].index, type(exc).__name__, exc)
            log.debug("%s scorer failed", modality, exc_info=True)  # the traceback, with -v
            return [ModalityScore.missing(f"{modality} scorer failed: {type(exc).__name__}")]

    def fuse(self, scores: dict[str, ModalityScore]) -> FusedScore:
        return fuse(scores, self.fusion, self.fusion_params)


def build_scorers(device: str, heads_dir: Path | None = None, fusion: str = "weighted",
                  text_evidence: bool = True) -> ScorerSet:
    """The real scorers on `device` from the heads in heads_dir (default: the shipped ones), loaded once.
    text_evidence=False leaves out the text's key words (each window's transcript scored without each word)."""
    from models.audio import AudioEmbedder, AudioScorer
    from models.heads import DEFAULT_HEADS_DIR, load_head
    from models.text import Said, load_language_routed_scorer
    from models.visual import VisualAnalyzer, VisualScorer

    text = load_language_routed_scorer(device, heads_dir, evidence=text_evidence)
    audio_head = load_head("audio", heads_dir)
    # the audio embedding is the one the head was trained on, whichever Whisper model transcribes
    audio_embedder = AudioEmbedder.for_head(audio_head, device)
    audio = AudioScorer(audio_embedder, matching_head(audio_head, audio_embedder))
    analyzer = VisualAnalyzer(device)
    visual = VisualScorer(analyzer, matching_head(load_head("scene", heads_dir), analyzer.scene))
    fusion_file = (heads_dir or DEFAULT_HEADS_DIR) / "fusion.json"
    params = FusionParams.load(fusion_file) if fusion_file.exists() else None
    return ScorerSet(WindowPartScorer("text", text, lambda w: Said(w.transcript, w.language, w.word_probabilities)),
                     WindowPartScorer("audio", audio, lambda w: w.audio),
                     WindowPartScorer("visual", visual, lambda w: w.frames, batched=False),
                     analyzer, fusion, params, load_calibrations(heads_dir or DEFAULT_HEADS_DIR))


def matching_head(head, embedder):
    """A head is only valid on the embedding it was trained on: a mismatch is refused loudly, never scored."""
    if head is None:
        return None
    trained_on = head.card.get("embedding", {}).get("model_id")
    if trained_on and trained_on != embedder.model_id:
        raise RuntimeError(f"head {head.name!r} was trained on embeddings {trained_on!r}, but this build computes "
                           f"{embedder.model_id!r}: retrain it (scripts/train_default_heads.py) or pass --heads")
    return head
