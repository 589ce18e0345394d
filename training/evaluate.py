"""Evaluating modalities and fusion on a labelled manifest: `vidsent evaluate MANIFEST --modality M --out DIR`.

Writes DIR/predictions.csv (item, label, <modality>_score / _label per modality, fused_<method>_score / _label per
fusion method), DIR/summary.json and DIR/summary.md: accuracy, macro and weighted F1, confusion matrix, expected
calibration error and the reliability diagram it is computed from, for every modality, every fusion method on every
combination of modalities, baselines (VADER for text) and external predictions given with --compare; and
DIR/report.html with each row's reliability diagram and confusion matrix as PNG beside it (training/plots.py).

Learned fusion (weighted, product, stacking) is scored with parameters learned on other items only: from
--fusion-params when given, else by cross-validation on the manifest itself (leave-one-out up to 200 items).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.options import add_model_arguments
from media import SAMPLE_RATE
from models.base import MODALITIES, ModalityScore, label_for
from models.calibration import Calibration, calibrated, load_calibrations
from models.fusion import FUSION_METHODS, FusedScore, FusionParams, fuse
from models.heads import DEFAULT_HEADS_DIR, Head, load_head
from training.clips import LiveClipAnalyzer, clip_scores
from training.embed_cache import (
    EmbeddingCache,
    RecordCache,
    embed_manifest,
    file_key,
    load_audio,
)
from training.fusion_fit import cross_validated_fusion, fit_fusion
from training.manifest import Manifest, ManifestError, ManifestItem, read_manifest
from training.metrics import classification_summary, rounded

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
    uncertain: list[bool] | None = None        # per item, whether the fused verdict said it was uncertain


def polar_label(score: float, classes: Sequence[str]) -> str:
    """A P(positive) as a label of the task: above 0.5 for two classes, the neutral band for three."""
    if len(classes) == 2:
        return "positive" if score > 0.5 else "negative"
    return label_for(score)


def scored_from_modality(name: str, scores: list[ModalityScore], classes: Sequence[str],
                         proba: np.ndarray | None = None, head: Head | None = None) -> Scored:
    values = [s.score if s.available else None for s in scores]
    labels: list[str | None]
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
    return Scored(name, "fusion", [f.score for f in fused], labels, None, {"method": fused[0].method if fused else ""},
                  [f.uncertain for f in fused])


def certainty_summary(row: Scored, truth: Sequence[str], keep: Sequence[int]) -> dict[str, Any]:
    """Does `uncertain` mean anything? How many of the scored items a fused row called uncertain, and its accuracy on
    those and on the rest (an honest flag: lower accuracy where it doubts)."""
    if row.uncertain is None or not keep:
        return {}
    out: dict[str, Any] = {}
    for name, flag in (("certain", False), ("uncertain", True)):
        picked = [i for i in keep if row.uncertain[i] == flag]
        out[f"{name}_n"] = len(picked)
        if picked:
            out[f"{name}_accuracy"] = sum(row.labels[i] == truth[i] for i in picked) / len(picked)
    return out


def summarise(row: Scored, truth: Sequence[str], classes: Sequence[str]) -> dict[str, Any]:
    """Metrics of one row over the items it scored; `coverage` says how many of all items that was."""
    keep = [i for i, label in enumerate(row.labels) if label is not None]
    y_true = [truth[i] for i in keep]
    y_pred = [label for label in row.labels if label is not None]  # the labels of `keep`, in order
    proba = row.proba[keep] if row.proba is not None else None
    p_pos = np.array([row.scores[i] for i in keep], dtype=np.float64) if keep else None
    if len(classes) == 2 and proba is None and p_pos is not None:
        proba = np.stack([1 - p_pos, p_pos], axis=1) if list(classes) == ["negative", "positive"] else None
    summary = classification_summary(y_true, y_pred, classes, proba, p_pos, with_reliability=True)
    summary["coverage"] = round(len(keep) / max(len(truth), 1), 4)
    summary.update(certainty_summary(row, truth, keep))
    return {"name": row.name, "kind": row.kind, **row.info, **rounded(summary)}


# ------------------------------------------------------------------------------------------------- single modality
def evaluate_text(manifest: Manifest, head: Head | None, device: str, cache: EmbeddingCache,
                  calibrations: dict[str, Calibration] | None = None) -> list[Scored]:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from models.text import TextEmbedder, attach_encoder_delta

    rows: list[Scored] = []
    texts = [it.text or "" for it in manifest.items]
    if head is not None:
        embedder = TextEmbedder(device)
        attach_encoder_delta(embedder, head)
        X = embed_manifest(manifest, embedder, cache)
        proba = head.predict_proba(X)
        calibration = (calibrations or {}).get(head.name)
        scores = [calibrated(ModalityScore.of(float(p)), calibration) for p in proba @ head.valence]
        rows.append(scored_from_modality("text", scores, manifest.classes, proba, head))
    vader = SentimentIntensityAnalyzer()
    compounds = [vader.polarity_scores(t)["compound"] for t in texts]
    labels: list[str | None]
    if len(manifest.classes) == 3:
        labels = ["positive" if c >= VADER_POSITIVE_AT else "negative" if c <= VADER_NEGATIVE_AT else "neutral"
                  for c in compounds]
    else:
        labels = ["positive" if c > 0 else "negative" for c in compounds]
    rows.append(Scored("vader (baseline)", "baseline", [(c + 1) / 2 for c in compounds], labels))
    return rows


def live_windows(audio: np.ndarray, window_s: float = 4.0, hop_s: float = 2.0) -> list[np.ndarray]:
    """A whole recording cut into the live pipeline's windows (stream.windows.window_spans)."""
    from stream.windows import window_spans

    return [audio[int(round(t0 * SAMPLE_RATE)):int(round(t1 * SAMPLE_RATE))]
            for t0, t1 in window_spans(len(audio) / SAMPLE_RATE, window_s, hop_s)]


def evaluate_audio(manifest: Manifest, head: Head | None, device: str, cache: EmbeddingCache,
                   calibration: Calibration | None = None) -> list[Scored]:
    """Each item scored as the live pipeline scores its audio: a whole recording in the pipeline's windows
    (stream.windows.window_spans), an item with start/end as one window of that span; windows the live scorer
    leaves unscored (too short, silence: models.audio.unscorable) are left out, and the item's class probabilities
    are the mean over the rest (an item with none is missing); with a calibration, each window's P(positive) goes
    through it before the mean, as live. The same scores as `vidsent analyze`'s audio
    (tests/test_train_evaluate.py compares them), from cached embeddings and without speech recognition."""
    if head is None:
        raise ValueError("no audio head to evaluate: train one or pass --heads")
    from dataclasses import replace

    from models.audio import AudioEmbedder, unscorable
    from stream.windows import window_spans
    from training.embed_cache import audio_part

    parts: list[ManifestItem] = []
    owner: list[int] = []
    decoded: tuple[Path | None, np.ndarray | None] = (None, None)  # items of one recording are read once
    for i, item in enumerate(manifest.items):
        if decoded[0] != item.path:
            try:
                decoded = (item.path, load_audio(item.media_path))
            except ValueError as exc:
                raise ValueError(f"{manifest.path}: row {item.row}: {exc}") from exc
        audio = decoded[1]
        assert audio is not None  # read above for this item's file
        spans: list[tuple[float | None, float | None]]
        if item.start is None and item.end is None:
            seconds = len(audio) / SAMPLE_RATE
            spans = [(None, None) if (t0, t1) == (0.0, seconds) else (t0, t1) for t0, t1 in window_spans(seconds)]
        else:
            spans = [(item.start, item.end)]
        for start, end in spans:
            if unscorable(audio_part(audio, start, end)) is None:
                parts.append(item if (start, end) == (item.start, item.end) else replace(item, start=start, end=end))
                owner.append(i)
    X = embed_manifest(Manifest(manifest.path, manifest.modality, manifest.classes, parts),
                       AudioEmbedder.for_head(head, device), cache)
    owner_of = np.asarray(owner, dtype=np.int64)
    counts = np.bincount(owner_of, minlength=len(manifest.items))
    proba = np.zeros((len(manifest.items), len(head.classes)))
    part_proba = head.predict_proba(X) if len(parts) else np.zeros((0, len(head.classes)))
    np.add.at(proba, owner_of, part_proba)
    proba /= np.maximum(counts, 1)[:, None]
    if calibration is None or calibration.kind == "identity":
        row = _proba_row("audio", head, proba, manifest.classes)
    else:
        positivity = np.zeros(len(manifest.items))
        np.add.at(positivity, owner_of, calibration.apply(part_proba @ head.valence))
        positivity /= np.maximum(counts, 1)
        row = scored_from_modality("audio", [ModalityScore.of(float(p)) for p in positivity], manifest.classes)
    for j in np.flatnonzero(counts == 0):  # nothing the live scorer would score: missing, as live
        row.scores[j], row.labels[j] = None, None
    return [row]


def _head_row(name: str, head: Head, X: np.ndarray, classes: Sequence[str]) -> Scored:
    return _proba_row(name, head, head.predict_proba(X), classes)


def _proba_row(name: str, head: Head, proba: np.ndarray, classes: Sequence[str]) -> Scored:
    if set(head.classes) <= {"negative", "neutral", "positive"} or "valence" in head.card:
        scores = [ModalityScore.of(float(p)) for p in proba @ head.valence]
    else:
        scores = [ModalityScore.of(0.5) for _ in range(len(proba))]  # no valence defined: argmax labels only
    return scored_from_modality(name, scores, classes, proba, head)


def evaluate_images(manifest: Manifest, head: Head | None, device: str, cache: EmbeddingCache,
                    records: RecordCache, calibration: Calibration | None = None) -> list[Scored]:
    """Still images: the scene head alone, the faces alone (images with a face) and the visual scorer's blend."""
    from models.visual import VisualAnalyzer, VisualScorer, load_image

    rows: list[Scored] = []
    analyzer = VisualAnalyzer(device)
    X = embed_manifest(manifest, analyzer.scene, cache)
    if head is not None:
        rows.append(_head_row("scene", head, X, manifest.classes))
    settings = f"faces|{analyzer.detector.model_id}|expressions-fer-tflite|quality-v1"
    found = records.load("image-faces", settings)
    keys = [file_key(it.media_path) for it in manifest.items]
    todo = {k: it for k, it in zip(keys, manifest.items) if k not in found}
    for n, (key, item) in enumerate(todo.items()):
        image = load_image(item.media_path)
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
    rows.append(scored_from_modality("visual", [calibrated(scorer.score([f]), calibration) for f in frames],
                                     manifest.classes))
    return rows


def _face_json(face) -> dict[str, Any]:
    return {"box": [float(v) for v in face.box], "score": float(face.score), "emotions": face.emotions,
            "valence": float(face.valence), "sharpness": face.sharpness, "frontal": face.frontal}


def _frame_from_json(record: dict[str, Any], scene: np.ndarray):
    from models.visual import Face, FrameAnalysis, _weighted_valence

    faces = [Face(box=tuple(f["box"]), score=f["score"], emotions=f["emotions"], valence=f["valence"],
                  sharpness=f.get("sharpness"), frontal=f.get("frontal")) for f in record["faces"]]
    size = tuple(record["size"])
    return FrameAnalysis(faces=faces, face_valence=_weighted_valence(faces, size), scene_embedding=scene,
                         image_size=size)


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
    truth: list[str] = []
    labels: list[str | None] = []
    scores: list[float | None] = []
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
    compared = Scored(path.stem, "compare", scores, labels, info={"source": str(path)})
    compared.info["truth"] = truth
    return compared


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


def metrics_table(table: list[dict[str, Any]], classes: Sequence[str]) -> tuple[list[str], list[list[Any]]]:
    """The metrics table of summary.md and report.html: its header and one line of cells per row."""
    header = ["row", "n", "coverage", "accuracy", "macro F1", "weighted F1", "ECE"]
    if len(classes) == 3:
        header.append("pos-vs-neg acc")
    header.append("accuracy certain / uncertain (n)")
    lines: list[list[Any]] = []
    for r in table:
        cells = [r["name"], r.get("n", 0), r.get("coverage", ""), r.get("accuracy", ""), r.get("macro_f1", ""),
                 r.get("weighted_f1", ""), r.get("ece", r.get("posneg_ece", ""))]
        if len(classes) == 3:
            cells.append(r.get("posneg_accuracy", ""))
        cells.append(f"{r.get('certain_accuracy', '—')} ({r['certain_n']}) / {r.get('uncertain_accuracy', '—')} "
                     f"({r['uncertain_n']})" if "certain_n" in r else "")
        lines.append(cells)
    return header, lines


def write_summary(out: Path, table: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    (out / "summary.json").write_text(json.dumps({**meta, "rows": table}, indent=2) + "\n")
    classes = meta["classes"]
    header, cells = metrics_table(table, classes)
    lines = [f"# vidsent evaluation: {meta['manifest']}", "",
             f"{meta['n_items']} items, modality `{meta['modality']}`, classes {', '.join(classes)}; "
             f"heads: `{meta['heads']}`; fusion parameters: {meta['fusion']}.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in line) + " |" for line in cells]
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
    calibrations = load_calibrations(heads_dir or DEFAULT_HEADS_DIR)
    if manifest.modality == "text":
        rows = evaluate_text(manifest, head, device, cache, calibrations)
    elif manifest.modality == "audio":
        rows = evaluate_audio(manifest, head, device, cache, calibrations.get("audio"))
    elif manifest.modality == "visual":
        rows = evaluate_images(manifest, head, device, cache, records, calibrations.get("visual"))
    else:
        analyzer = LiveClipAnalyzer(device=device, asr=asr, heads_dir=heads_dir, records=records)
        clip_records = analyzer.records_of([it.media_path for it in manifest.items])
        per_modality = clip_scores(clip_records, [it.text for it in manifest.items], heads_dir, device)
        rows = [scored_from_modality(m, per_modality[m], classes) for m in (*MODALITIES, "faces", "scene")]
        per_modality = {m: per_modality[m] for m in MODALITIES}
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
    from training.plots import write_report  # matplotlib: only when a report is written

    write_report(out, table, meta, metrics_table(table, classes))
    return table


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", type=Path, help="CSV manifest (see training/manifest.py for the columns)")
    parser.add_argument("--modality", required=True, choices=("text", "audio", "visual", "video"))
    parser.add_argument("--head", help="evaluate this head name instead of the modality's default head")
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for predictions.csv, summary.json/.md, report.html and its PNG pictures")
    parser.add_argument("--classes", help="comma-separated class names, when the labels are not sentiment classes")
    parser.add_argument("--label-column", help="the manifest column holding the label")
    parser.add_argument("--compare", type=Path, action="append", default=[],
                        help="external predictions CSV (file,label,output) to add to the table; repeatable")
    parser.add_argument("--fusion-params", type=Path, help="use these fusion parameters instead of cross-validation")
    parser.add_argument("--folds", type=int, help="cross-validation folds for learned fusion (default: leave-one-out "
                                                  "up to 200 items, else 10)")
    parser.add_argument("--save-fusion", type=Path, help="fit fusion on all items and save it here (video only)")
    parser.add_argument("--cache", type=Path, help="cache folder (default: $VIDSENT_CACHE)")
    add_model_arguments(parser, threads=True)


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
