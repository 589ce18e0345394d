"""Whole clips scored the way users run them: each clip goes through the live pipeline (`pipeline.analyze_file`, what
`vidsent analyze` does: the same incremental ASR, frame sampling, windows and rules), and its clip-level score per
modality is the mean of its live windows, as `analyze` reports it. Cached per file and per pipeline settings, so a
second evaluation of the same clips runs no model.

A manifest that gives a clip's transcript overrides what the ASR heard: the text modality is then that transcript
scored as one piece (it carries no word times to place in windows).
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.assets import file_sha256
from models.base import MODALITIES, ModalityScore, Quality
from models.calibration import CALIBRATION_FILE
from models.heads import DEFAULT_HEADS_DIR
from training.embed_cache import RecordCache, file_key

if TYPE_CHECKING:  # the engine loads only when a clip is analysed
    from engine import Engine

RECORD_KIND = "live-clips"


def heads_digest(heads_dir: Path | None) -> str:
    """A digest of the heads in a folder: a clip's cached scores are only valid for the heads that made them."""
    folder = Path(heads_dir) if heads_dir else DEFAULT_HEADS_DIR
    # the heads' weights and cards and their calibrations; fusion.json and the metrics do not change a clip's
    # per-modality scores
    heads = {p.stem for p in folder.glob("*.safetensors")}
    parts = [f"{p.name}:{file_sha256(p)}" for p in sorted(folder.iterdir())
             if p.is_file() and (p.stem.split(".")[0] in heads or p.name == CALIBRATION_FILE)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _mean_detail(windows: list[dict], key: str) -> float | None:
    values = [w["modalities"]["visual"].get("details", {}).get(key) for w in windows]
    values = [v for v in values if v is not None]
    return round(float(np.mean(values)), 4) if values else None


def clip_record(result: dict) -> dict[str, Any]:
    """What evaluation keeps of one `analyze_file` result: the summary's per-modality scores (means of the live
    windows), the visual score's two halves averaged over the windows that have them, and the transcript."""
    return {"modalities": result["modalities"], "faces": _mean_detail(result["windows"], "face_valence"),
            "scene": _mean_detail(result["windows"], "scene_score"), "windows": len(result["windows"]),
            "transcript": result["transcript"], "error": result.get("error")}


def modality_score(record: dict) -> ModalityScore:
    quality = record.get("quality")
    return ModalityScore(score=record["score"], label=record["label"], available=record["available"],
                         reason=record.get("reason"), confidence=record.get("confidence", 0.0),
                         details=record.get("details") or {},
                         quality=Quality(quality["value"], tuple(quality.get("notes", ())),
                                         quality.get("features", {})) if quality else None)


class LiveClipAnalyzer:
    """Runs clips through the live pipeline (models loaded once, on first use) and caches each clip's record."""

    def __init__(self, *, device: str = "auto", asr: str = "tiny.en", heads_dir: Path | None = None,
                 records: RecordCache | None = None, config=None):
        from engine import PipelineConfig

        self.device, self.asr, self.heads_dir = device, asr, heads_dir
        self.records = records or RecordCache()
        self.config = config or PipelineConfig()
        self._engine: Engine | None = None

    @property
    def settings_id(self) -> str:
        c = self.config
        return (f"live-v5|asr={self.asr}|heads={heads_digest(self.heads_dir)}|window={c.window_s}|hop={c.hop_s}"
                f"|fps={c.sample_fps}|fast-step={c.asr_fast_step_s}")

    def _analyze(self, path: Path) -> dict:
        from engine import Engine, analyze_file

        if self._engine is None:
            self._engine = Engine(asr=self.asr, device=self.device, heads_dir=self.heads_dir)
        return asyncio.run(analyze_file(path, self._engine, self.config))

    def records_of(self, paths: Sequence[Path]) -> list[dict[str, Any]]:
        settings = self.settings_id
        keys = [file_key(p) for p in paths]
        found = self.records.load(RECORD_KIND, settings)
        todo = [(k, p) for k, p in dict(zip(keys, paths)).items() if k not in found]
        started = time.time()
        try:
            for n, (key, path) in enumerate(todo):
                found[key] = clip_record(self._analyze(path))
                self.records.add(RECORD_KIND, settings, {key: found[key]})
                print(f"clips: {n + 1}/{len(todo)} through the live pipeline ({time.time() - started:.0f}s)",
                      file=sys.stderr, flush=True)
        finally:
            self.close()
        if todo:
            self.records.compact(RECORD_KIND, settings)
        return [found[k] for k in keys]

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None


def clip_scores(records: list[dict[str, Any]], transcripts: Sequence[str | None], heads_dir: Path | None,
                device: str) -> dict[str, list[ModalityScore]]:
    """Per-modality clip scores (text, audio, visual, and the visual halves faces and scene) from clip records."""
    out = {m: [modality_score(r["modalities"][m]) for r in records] for m in MODALITIES}
    given = [i for i, t in enumerate(transcripts) if t]
    if given:
        from models.text import load_text_scorer

        scorer = load_text_scorer(device, heads_dir)
        for i, score in zip(given, scorer.score([t for t in transcripts if t])):  # the texts of `given`
            out["text"][i] = score
    for part, reason in (("faces", "no face"), ("scene", "no scene score")):
        out[part] = [ModalityScore.of(r[part]) if r[part] is not None else ModalityScore.missing(reason)
                     for r in records]
    return out
