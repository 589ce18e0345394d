"""Evaluating modalities and fusion on a labelled manifest: `vidsent evaluate MANIFEST --modality M --out DIR`.

Writes DIR/predictions.csv (item, label, <modality>_score / _label per modality, fused_<method>_score / _label per
fusion method), DIR/summary.json and DIR/summary.md: accuracy, macro and weighted F1, confusion matrix and expected
calibration error for every modality, every fusion method on every combination of modalities, baselines (VADER for
text) and external predictions given with --compare.

Learned fusion (weighted, product, stacking) is scored with parameters learned on other items only: from
--fusion-params when given, else by cross-validation on the manifest itself (leave-one-out up to 200 items).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from models.base import MODALITIES, ModalityScore, label_for
from models.training.embed_cache import EmbeddingCache, RecordCache, embed_manifest, file_key, load_audio
from models.fusion import FUSION_METHODS, FusedScore, FusionParams, fuse
from models.training.fusion_fit import cross_validated_fusion, fit_fusion
from models.heads import Head, load_head
from models.training.manifest import Manifest, ManifestError, ManifestItem, read_manifest
from models.training.metrics import classification_summary, rounded

HEAD_FOR = {"text": "text", "audio": "audio", "visual": "scene"}
VADER_POSITIVE_AT, VADER_NEGATIVE_AT = 0.05, -0.05  # VADER's own thresholds for its 3-way label


@dataclass
class Scored:
    """Per-item scores of one row of the table (a modality, a baseline or a fusion)."""

    name: str
    kind: str                                  # "modality", "baseline", "fusion", "compare"
    scores: list[float | None]                 # P(positive) per item (None = not available)
    labels: list[str | None]                   # predicted label per item
    proba: np.ndarray | None = None            # (n, classes) when the scorer gives class probabilities
    info: dict[str, Any] = field(default_factory=dict)


def polar_label(score: float, classes: Sequence[str]) -> str:
    """A P(positive) as a label of the task: above 0.5 for two classes, the neutral band for three."""
    if len(classes) == 2:
        return "positive" if score > 0.5 else "negative"
    return label_for(score)


def scored_from_modality(name: str, scores: list[ModalityScore], classes: Sequence[str],
                         proba: np.ndarray | None = None, head: Head | None = None) -> Scored:
    values = [s.score if s.available else None for s in scores]
    if proba is not None and head is not None and list(head.classes) == list(classes):
        labels = [head.classes[int(i)] for i in proba.argmax(axis=1)]
    else:
        labels = [polar_label(v, classes) if v is not None else None for v in values]
        proba = None
    return Scored(name, "modality", values, labels, proba)


def scored_from_fusion(name: str, fused: list[FusedScore], classes: Sequence[str]) -> Scored:
    labels: list[str | None] = []
    for f in fused:
        if f.score is None:
            labels.append(None)
        elif f.method == "vote" and len(classes) == 2:
            # the prototype's reading of its graded vote: only "Positive" counts as positive
            labels.append("positive" if f.graded == "Positive" else "negative")
        else:
            labels.append(polar_label(f.score, classes))
    return Scored(name, "fusion", [f.score for f in fused], labels, None, {"method": fused[0].method if fused else ""})


def summarise(row: Scored, truth: Sequence[str], classes: Sequence[str]) -> dict[str, Any]:
    """Metrics of one row over the items it scored; `coverage` says how many of all items that was."""
    keep = [i for i, l in enumerate(row.labels) if l is not None]
    y_true = [truth[i] for i in keep]
    y_pred = [row.labels[i] for i in keep]
    proba = row.proba[keep] if row.proba is not None else None
    p_pos = np.array([row.scores[i] for i in keep], dtype=np.float64) if keep else None
    if len(classes) == 2 and proba is None and p_pos is not None:
        proba = np.stack([1 - p_pos, p_pos], axis=1) if list(classes) == ["negative", "positive"] else None
    summary = classification_summary(y_true, y_pred, classes, proba, p_pos)
    summary["coverage"] = round(len(keep) / max(len(truth), 1), 4)
    return {"name": row.name, "kind": row.kind, **row.info, **rounded(summary)}


# ------------------------------------------------------------------------------------------------- single modality
def evaluate_text(manifest: Manifest, head: Head | None, device: str, cache: EmbeddingCache) -> list[Scored]:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from models.text import TextEmbedder, attach_encoder_delta

    rows: list[Scored] = []
    texts = [it.text or "" for it in manifest.items]
    if head is not None:
        embedder = TextEmbedder(device)
        attach_encoder_delta(embedder, head)
        X = embed_manifest(manifest, embedder, cache)
        proba = head.predict_proba(X)
        scores = [ModalityScore.of(float(p)) for p in proba @ head.valence]
        rows.append(scored_from_modality("text", scores, manifest.classes, proba, head))
    vader = SentimentIntensityAnalyzer()
    compounds = [vader.polarity_scores(t)["compound"] for t in texts]
    if len(manifest.classes) == 3:
        labels = ["positive" if c >= VADER_POSITIVE_AT else "negative" if c <= VADER_NEGATIVE_AT else "neutral"
                  for c in compounds]
    else:
        labels = ["positive" if c > 0 else "negative" for c in compounds]
    rows.append(Scored("vader (baseline)", "baseline", [(c + 1) / 2 for c in compounds], labels))
    return rows


def evaluate_audio(manifest: Manifest, head: Head | None, device: str, cache: EmbeddingCache) -> list[Scored]:
    """An item longer than one and a half live windows is scored as the live pipeline would: window by window (4 s),
    its class probabilities averaged."""
    if head is None:
        raise ValueError("no audio head to evaluate: train one or pass --heads")
    from dataclasses import replace

    from models.audio import AudioEmbedder, window_spans
    from models.training.embed_cache import audio_seconds

    parts: list[ManifestItem] = []
    owner: list[int] = []
    for i, item in enumerate(manifest.items):
        if item.start is None and item.end is None:
            try:
                spans = window_spans(audio_seconds(item.path))
            except ValueError as exc:
                raise ValueError(f"{manifest.path}: row {item.row}: {exc}") from exc
        else:
            spans = [(item.start, item.end)]
        for start, end in spans:
            parts.append(item if (start, end) == (item.start, item.end) else replace(item, start=start, end=end))
            owner.append(i)
    X = embed_manifest(Manifest(manifest.path, manifest.modality, manifest.classes, parts),
                       AudioEmbedder.for_head(head, device), cache)
    owner_of = np.asarray(owner)
    proba = np.zeros((len(manifest.items), len(head.classes)))
    np.add.at(proba, owner_of, head.predict_proba(X))
    proba /= np.bincount(owner_of, minlength=len(manifest.items))[:, None]
    return [_proba_row("audio", head, proba, manifest.classes)]


def _head_row(name: str, head: Head, X: np.ndarray, classes: Sequence[str]) -> Scored:
    return _proba_row(name, head, head.predict_proba(X), classes)


def _proba_row(name: str, head: Head, proba: np.ndarray, classes: Sequence[str]) -> Scored:
    if set(head.classes) <= {"negative", "neutral", "positive"} or "valence" in head.card:
        scores = [ModalityScore.of(float(p)) for p in proba @ head.valence]
    else:
        scores = [ModalityScore.of(0.5) for _ in range(len(proba))]  # no valence defined: argmax labels only
    return scored_from_modality(name, scores, classes, proba, head)


def evaluate_images(manifest: Manifest, head: Head | None, device: str, cache: EmbeddingCache,
                    records: RecordCache) -> list[Scored]:
    """Still images: the scene head alone, the faces alone (images with a face) and the visual scorer's blend."""
    from models.visual import VisualAnalyzer, VisualScorer, load_image

    rows: list[Scored] = []
    analyzer = VisualAnalyzer(device)
    X = embed_manifest(manifest, analyzer.scene, cache)
    if head is not None:
        rows.append(_head_row("scene", head, X, manifest.classes))
    settings = f"faces|{analyzer.detector.model_id}|expressions-fer-tflite"
    found = records.load("image-faces", settings)
    keys = [file_key(it.path) for it in manifest.items]
    todo = {k: it for k, it in zip(keys, manifest.items) if k not in found}
    for n, (key, item) in enumerate(todo.items()):
        image = load_image(item.path)
        found[key] = {"faces": [_face_json(f) for f in analyzer.analyze_faces(image)], "size": list(image.shape[:2])}
        if n % 100 == 99:
            print(f"faces: {n + 1}/{len(todo)}", file=sys.stderr, flush=True)
    records.add("image-faces", settings, {k: found[k] for k in todo})
    records.compact("image-faces", settings)
    frames = [_frame_from_json(found[k], x) for k, x in zip(keys, X)]
    face_scores = [ModalityScore.of(f.face_valence) if f.face_valence is not None else ModalityScore.missing("no face")
                   for f in frames]
    rows.append(scored_from_modality("faces", face_scores, manifest.classes))
    scorer = VisualScorer(None, head)
    rows.append(scored_from_modality("visual", [scorer.score([f]) for f in frames], manifest.classes))
    return rows


def _face_json(face) -> dict[str, Any]:
    return {"box": [float(v) for v in face.box], "score": float(face.score), "emotions": face.emotions,
            "valence": float(face.valence)}


def _frame_from_json(record: dict[str, Any], scene: np.ndarray):
    from models.visual import Face, FrameAnalysis, _weighted_valence

    faces = [Face(box=tuple(f["box"]), score=f["score"], emotions=f["emotions"], valence=f["valence"])
             for f in record["faces"]]
    size = tuple(record["size"])
    return FrameAnalysis(faces=faces, face_valence=_weighted_valence(faces, size), scene_embedding=scene,
                         image_size=size)


# ------------------------------------------------------------------------------------------------- videos
class ClipAnalyzer:
    """Clip-level features of whole videos, cached: the transcript (Whisper), the soundtrack's audio embedding and
    level, and sampled frames' faces and mean scene embedding. Scoring them with heads is then cheap."""

    def __init__(self, device: str = "auto", asr: str = "tiny.en", heads_dir: Path | None = None,
                 cache: EmbeddingCache | None = None, records: RecordCache | None = None, fps: float = 1.0):
        self.device, self.asr, self.fps = device, asr, fps
        self.heads_dir = heads_dir
        self.cache = cache or EmbeddingCache()
        self.records = records or RecordCache(self.cache.root.parent / "records")
        self._models: dict[str, Any] = {}

    def _model(self, name: str):
        if name not in self._models:
            if name == "whisper":
                from models.whisper import load_whisper

                self._models[name] = load_whisper(self.asr, self.device)
            elif name == "audio":
                from models.audio import AudioEmbedder

                self._models[name] = AudioEmbedder.for_head(load_head("audio", self.heads_dir), self.device)
            elif name == "visual":
                from models.visual import VisualAnalyzer

                self._models[name] = VisualAnalyzer(self.device)
        return self._models[name]

    @property
    def settings_id(self) -> str:
        from models.audio import CLIP_WINDOW_S
        from models.visual import SceneEmbedder

        audio_id = self._model("audio").model_id
        return (f"clip|asr={self.asr}|audio={audio_id}|audio-windows={CLIP_WINDOW_S}s|scene={SceneEmbedder.model_id}"
                f"|faces=full|fps={self.fps}")

    def features(self, paths: list[Path], transcripts: list[str | None] | None = None) -> list[dict[str, Any]]:
        transcripts = transcripts or [None] * len(paths)
        keys = [file_key(p) for p in paths]
        found = self.records.load("clips", self.settings_id)
        todo = [(k, p) for k, p in dict(zip(keys, paths)).items() if k not in found]
        started = time.time()
        for n, (key, path) in enumerate(todo):
            found[key] = self._analyse(path)
            self.records.add("clips", self.settings_id, {key: found[key]})
            print(f"clips: {n + 1}/{len(todo)} analysed ({time.time() - started:.0f}s)", file=sys.stderr, flush=True)
        if todo:
            self.records.compact("clips", self.settings_id)
        out = []
        for key, given in zip(keys, transcripts):
            record = dict(found[key])
            if given:
                record["transcript"] = given
            out.append(record)
        return out

    def _analyse(self, path: Path) -> dict[str, Any]:
        from models.audio import MIN_SECONDS, active_level_db, clip_windows

        record: dict[str, Any] = {"transcript": "", "audio_windows": [], "audio_levels": [], "frames": [],
                                  "scene": None}
        try:
            audio = load_audio(path)
        except ValueError:
            audio = np.zeros(0, dtype=np.float32)
        if len(audio) >= MIN_SECONDS * 16000:
            # the soundtrack is embedded window by window, as the live pipeline scores it
            windows = clip_windows(audio)
            record["audio_levels"] = [active_level_db(w) for w in windows]
            record["audio_windows"] = self._model("audio").embed(windows).tolist()
            segments, _ = self._model("whisper").transcribe(audio, beam_size=1, vad_filter=True,
                                                            condition_on_previous_text=False)
            record["transcript"] = " ".join(s.text.strip() for s in segments).strip()
        images = sample_frames(path, self.fps)
        if images:
            analyses = self._model("visual").analyze(images)
            record["frames"] = [{"faces": [_face_json(f) for f in a.faces], "size": list(a.image_size)}
                                for a in analyses]
            record["scene"] = np.mean([a.scene_embedding for a in analyses], axis=0).tolist()
        return record


def sample_frames(path: Path, fps: float, max_frames: int = 120) -> list[np.ndarray]:
    """RGB frames of a video, one every 1/fps seconds of media time (none when it has no video stream)."""
    import av

    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return []
            stream = container.streams.video[0]
            next_t = 0.0
            for frame in container.decode(stream):
                t = frame.time if frame.time is not None else next_t
                if t + 1e-6 >= next_t:
                    frames.append(frame.to_ndarray(format="rgb24"))
                    next_t = t + 1.0 / fps
                    if len(frames) >= max_frames:
                        break
    except av.FFmpegError:
        return frames
    return frames


def score_clips(records: list[dict[str, Any]], heads_dir: Path | None, device: str) -> dict[str, list[ModalityScore]]:
    """Per-modality ModalityScores of analysed clips with the heads from heads_dir (as the live scorers would)."""
    from models.audio import SILENCE_DBFS
    from models.text import TextEmbedder, TextScorer
    from models.visual import VisualScorer

    text_head, audio_head, scene_head = (load_head(HEAD_FOR[m], heads_dir) for m in MODALITIES)
    text_scorer = TextScorer(TextEmbedder(device) if text_head is not None else None, text_head)
    text = text_scorer.score([r["transcript"] for r in records])
    audio: list[ModalityScore] = []
    for r in records:
        sounding = [np.asarray(x, np.float32) for x, level in zip(r["audio_windows"], r["audio_levels"])
                    if level >= SILENCE_DBFS]
        if not r["audio_windows"]:
            audio.append(ModalityScore.missing("no audio"))
        elif not sounding:
            audio.append(ModalityScore.missing("silence"))
        elif audio_head is None:
            audio.append(ModalityScore.missing("no audio head"))
        else:
            # a clip's audio score is the mean over its sounding windows, as a stream's rolling score would be
            audio.append(ModalityScore.of(float(np.mean(audio_head.positivity(np.stack(sounding))))))
    visual_scorer = VisualScorer(None, scene_head)
    visual = []
    for r in records:
        if not r["frames"]:
            visual.append(ModalityScore.missing("no frames"))
            continue
        scene = np.asarray(r["scene"], dtype=np.float32)
        visual.append(visual_scorer.score([_frame_from_json(f, scene) for f in r["frames"]]))
    return {"text": text, "audio": audio, "visual": visual}


def visual_part_rows(visual: list[ModalityScore], classes: Sequence[str]) -> list[Scored]:
    """The two halves of the visual score on their own: the faces' valence (clips where a face was seen) and the
    scene head's positivity, read from the visual scores' details."""
    def part(key: str, reason: str) -> list[ModalityScore]:
        return [ModalityScore.of(float(s.details[key])) if s.available and key in s.details
                else ModalityScore.missing(reason) for s in visual]

    return [scored_from_modality("faces", part("face_valence", "no face"), classes),
            scored_from_modality("scene", part("scene_score", "no scene score"), classes)]


# ------------------------------------------------------------------------------------------------- fusion table
def combinations(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """text, audio, visual, text+audio, text+visual, audio+visual, all three (those present)."""
    return [c for size in range(1, len(modalities) + 1) for c in itertools.combinations(modalities, size)]


def fusion_rows(per_modality: dict[str, list[ModalityScore]], truth: Sequence[str], classes: Sequence[str],
                params: FusionParams | None, folds: int | None) -> tuple[list[Scored], dict[str, list[FusedScore]]]:
    """Every fusion method on every combination of two or more modalities; returns the rows and the fused scores of
    the full combination (for predictions.csv)."""
    modalities = [m for m in MODALITIES if m in per_modality]
    n = len(truth)
    polar = np.array([t in ("positive", "negative") for t in truth])
    is_positive = np.array([t == "positive" for t in truth])
    rows: list[Scored] = []
    full: dict[str, list[FusedScore]] = {}
    for combo in combinations(modalities):
        if len(combo) < 2 and len(modalities) > 1:
            continue
        items = [{m: per_modality[m][i] for m in combo} for i in range(n)]
        fused: dict[str, list[FusedScore]] = {}
        if params is not None:
            for method in FUSION_METHODS:
                fused[method] = [fuse(r, method, params) for r in items]
        else:
            fused = {"vote": [fuse(r, "vote") for r in items]}
            # parameters are learned only from the polar (positive / negative) items of the other folds
            learned = _cv_fusion(items, polar, is_positive, folds)
            fused.update(learned)
        for method in FUSION_METHODS:
            name = f"{'+'.join(combo)} [{method}]"
            rows.append(scored_from_fusion(name, fused[method], classes))
            rows[-1].info["modalities"] = list(combo)
        if len(combo) == len(modalities):
            full = fused
    return rows, full


def _cv_fusion(items, polar, is_positive, folds) -> dict[str, list[FusedScore]]:
    """Cross-validated learned fusion. Items that are neutral are fused with parameters learned on all polar items
    (they cannot be in the training folds of a positive-vs-negative fit)."""
    methods = ("weighted", "product", "stacking")
    out: dict[str, list[FusedScore | None]] = {m: [None] * len(items) for m in methods}
    idx = np.flatnonzero(polar)
    cv = cross_validated_fusion([items[i] for i in idx], is_positive[idx], methods, folds=folds)
    for method in methods:
        for j, i in enumerate(idx):
            out[method][i] = cv[method][j]
    rest = np.flatnonzero(~polar)
    if len(rest):
        params = fit_fusion([items[i] for i in idx], is_positive[idx])
        for method in methods:
            for i in rest:
                out[method][i] = fuse(items[i], method, params)
    return out  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------- compare
def read_compare(path: Path) -> Scored:
    """External per-item predictions: columns label (0/1 or a class name) and output (the prototype's grades,
    'Positive' = positive, anything else negative) or score (P(positive)) or prediction (a class name)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no rows")
    truth, labels, scores = [], [], []
    for line, row in enumerate(rows, start=2):
        raw = (row.get("label") or "").strip().lower()
        label = {"0": "negative", "1": "positive"}.get(raw, raw)
        if label not in ("negative", "neutral", "positive"):
            raise ValueError(f"{path}: row {line}: bad label {row.get('label')!r}")
        if row.get("output") is not None:
            positive = row["output"].strip().lower().startswith("positive")
            pred, score = ("positive" if positive else "negative"), float(positive)
        elif row.get("score") not in (None, ""):
            score = float(row["score"])
            pred = "positive" if score > 0.5 else "negative"
        elif row.get("prediction"):
            pred = row["prediction"].strip().lower()
            score = {"positive": 1.0, "neutral": 0.5}.get(pred, 0.0)
        else:
            raise ValueError(f"{path}: row {line}: no output, score or prediction")
        truth.append(label)
        labels.append(pred)
        scores.append(score)
    row = Scored(path.stem, "compare", scores, labels, info={"source": str(path)})
    row.info["truth"] = truth
    return row


# ------------------------------------------------------------------------------------------------- outputs
def write_predictions(path: Path, manifest: Manifest, modality_rows: list[Scored],
                      fused: dict[str, list[FusedScore]], classes: Sequence[str]) -> None:
    fused_rows = {m: scored_from_fusion(m, fused[m], classes) for m in fused}
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        header = ["item", "label"]
        for row in modality_rows:
            header += [f"{_column(row.name)}_score", f"{_column(row.name)}_label"]
        for method in fused_rows:
            header += [f"fused_{method}_score", f"fused_{method}_label"]
        writer.writerow(header)
        for i, item in enumerate(manifest.items):
            line: list[Any] = [item.name, item.label]
            for row in [*modality_rows, *fused_rows.values()]:
                score = row.scores[i]
                line += ["" if score is None else f"{score:.4f}", row.labels[i] or ""]
            writer.writerow(line)


def _column(name: str) -> str:
    return name.split(" ")[0]


def write_summary(out: Path, table: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    (out / "summary.json").write_text(json.dumps({**meta, "rows": table}, indent=2) + "\n")
    classes = meta["classes"]
    lines = [f"# vidsent evaluation: {meta['manifest']}", "",
             f"{meta['n_items']} items, modality `{meta['modality']}`, classes {', '.join(classes)}; "
             f"heads: `{meta['heads']}`; fusion parameters: {meta['fusion']}.", "",
             "| row | n | coverage | accuracy | macro F1 | weighted F1 | ECE |"
             + (" pos-vs-neg acc |" if len(classes) == 3 else ""),
             "|---|---|---|---|---|---|---|" + ("---|" if len(classes) == 3 else "")]
    for r in table:
        cells = [r["name"], r.get("n", 0), r.get("coverage", ""), r.get("accuracy", ""), r.get("macro_f1", ""),
                 r.get("weighted_f1", ""), r.get("ece", r.get("posneg_ece", ""))]
        if len(classes) == 3:
            cells.append(r.get("posneg_accuracy", ""))
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "Confusion matrices (rows = true, columns = predicted, order: " + ", ".join(classes) + "):", ""]
    for r in table:
        if "confusion" in r and r["kind"] != "compare":
            lines.append(f"- {r['name']}: {r['confusion']}")
    (out / "summary.md").write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------------- command
def evaluate_manifest(manifest: Manifest, *, heads_dir: Path | None, out: Path, device: str = "auto",
                      asr: str = "tiny.en", cache_root: Path | None = None, compare: Sequence[Path] = (),
                      fusion_params: FusionParams | None = None, folds: int | None = None,
                      head_name: str | None = None, save_fusion: Path | None = None) -> list[dict[str, Any]]:
    cache = EmbeddingCache(cache_root / "embeddings" if cache_root else None)
    records = RecordCache(cache_root / "records" if cache_root else None)
    classes = manifest.classes
    truth = manifest.labels
    head = load_head(head_name or HEAD_FOR.get(manifest.modality, ""), heads_dir) if manifest.modality != "video" \
        else None
    fused_full: dict[str, list[FusedScore]] = {}
    fusion_desc = "none (one modality)"
    if manifest.modality == "text":
        rows = evaluate_text(manifest, head, device, cache)
    elif manifest.modality == "audio":
        rows = evaluate_audio(manifest, head, device, cache)
    elif manifest.modality == "visual":
        rows = evaluate_images(manifest, head, device, cache, records)
    else:
        analyzer = ClipAnalyzer(device, asr, heads_dir, cache, records)
        clip_records = analyzer.features([it.path for it in manifest.items], [it.text for it in manifest.items])
        per_modality = score_clips(clip_records, heads_dir, device)
        rows = [scored_from_modality(m, per_modality[m], classes) for m in MODALITIES]
        rows += visual_part_rows(per_modality["visual"], classes)
        fusion_rows_, fused_full = fusion_rows(per_modality, truth, classes, fusion_params, folds)
        rows += fusion_rows_
        fusion_desc = ("given (" + str(fusion_params.card.get("source", "file")) + ")") if fusion_params else \
            ("leave-one-out" if folds is None or folds >= len(truth) else f"{folds}-fold") + \
            " cross-validation on this manifest"
        if save_fusion is not None:
            polar = [i for i, t in enumerate(truth) if t in ("positive", "negative")]
            items = [{m: per_modality[m][i] for m in MODALITIES} for i in polar]
            params = fit_fusion(items, [truth[i] == "positive" for i in polar],
                                card={"source": str(manifest.path)})
            if not params.card["fitted_on"]["modalities"]:
                raise ValueError(f"cannot learn fusion for --save-fusion: no positive or negative clip in "
                                 f"{manifest.path} has a modality score")
            params.card["cross_validated"] = {r["name"]: {k: r[k] for k in ("accuracy", "macro_f1") if k in r}
                                              for r in [summarise(x, truth, classes) for x in fusion_rows_]
                                              if len(r["name"].split(" ")[0].split("+")) == 3}
            save_fusion.parent.mkdir(parents=True, exist_ok=True)
            params.save(save_fusion)
    table = [summarise(r, truth, classes) for r in rows]
    for path in compare:
        ext = read_compare(path)
        table.append(summarise(ext, ext.info.pop("truth"), ["negative", "positive"]))
    out.mkdir(parents=True, exist_ok=True)
    modality_rows = [r for r in rows if r.kind in ("modality", "baseline")]
    write_predictions(out / "predictions.csv", manifest, modality_rows, fused_full, classes)
    meta = {"manifest": str(manifest.path), "modality": manifest.modality, "n_items": len(truth),
            "classes": classes, "heads": str(heads_dir or "default"), "fusion": fusion_desc}
    write_summary(out, table, meta)
    return table


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", type=Path, help="CSV manifest (see models/manifest.py for the columns)")
    parser.add_argument("--modality", required=True, choices=("text", "audio", "visual", "video"))
    parser.add_argument("--heads", type=Path, help="heads folder (default: the shipped models/default_heads)")
    parser.add_argument("--head", help="evaluate this head name instead of the modality's default head")
    parser.add_argument("--out", type=Path, required=True, help="folder for predictions.csv and summary.json/.md")
    parser.add_argument("--classes", help="comma-separated class names, when the labels are not sentiment classes")
    parser.add_argument("--label-column", help="the manifest column holding the label")
    parser.add_argument("--compare", type=Path, action="append", default=[],
                        help="external predictions CSV (file,label,output) to add to the table; repeatable")
    parser.add_argument("--fusion-params", type=Path, help="use these fusion parameters instead of cross-validation")
    parser.add_argument("--folds", type=int, help="cross-validation folds for learned fusion (default: leave-one-out "
                                                  "up to 200 items, else 10)")
    parser.add_argument("--save-fusion", type=Path, help="fit fusion on all items and save it here (video only)")
    parser.add_argument("--cache", type=Path, help="cache folder (default: $VIDSENT_CACHE)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--asr", default="tiny.en", choices=("tiny.en", "base"))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")


def main_evaluate(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(max(1, args.threads))
    classes = args.classes.split(",") if args.classes else None
    try:
        manifest = read_manifest(args.manifest, args.modality, classes, args.label_column)
        params = None
        if args.fusion_params:
            params = FusionParams.load(args.fusion_params)
            params.card.setdefault("source", str(args.fusion_params))
        folds = args.folds if args.folds else (None if len(manifest.items) <= 200 else 10)
        evaluate_manifest(manifest, heads_dir=args.heads, out=args.out, device=args.device, asr=args.asr,
                          cache_root=args.cache, compare=args.compare, fusion_params=params, folds=folds,
                          head_name=args.head, save_fusion=args.save_fusion)
    except (ManifestError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print((args.out / "summary.md").read_text())
    return 0
