#!/usr/bin/env python
"""Train every default head shipped in models/default_heads/ from ../shared/data, and measure each on held-out data.

    python scripts/train_default_heads.py [--data ../shared/data] [--out models/default_heads] [--only text,audio]

What it does (the splits are the ones ../shared/data/README.md suggests):
- text:   MiniLM with all 6 layers fine-tuned on MELD train (dev = validation; 3-class loss + a positive-vs-
          negative loss), then the prototype's MLP head, temperature-calibrated on dev; MELD test:
          3-class weighted F1 and positive-vs-negative accuracy, beside frozen MiniLM + logistic regression and VADER;
- audio:  one head for voice tone and music mood (an average of five MLPs) on the embedding of Whisper tiny.en's
          third encoder block + prosody: RAVDESS actors 1-18 (positive = happy, calm; negative = angry, sad,
          fearful, disgust) + 4 s crops of the music4q train songs (split by song, stratified by quadrant), speech
          and music weighing the same; RAVDESS actors 19-24: macro F1 (and 8-emotion accuracy from an 8-class head
          trained the same way); music4q test songs: valence accuracy per 4 s crop, and per song as a stream of it
          is scored (the mean of the live pipeline's 4 s windows over the whole song), and quadrant accuracy from a
          4-class head (the mean of each song's crops);
- scene:  EfficientNet-Lite0 embedding on OASIS (positive = valence_mean > 5, negative < 3), held-out images;
          the face-expression valence is reported on the same images that have a face;
- calibration: each modality's P(positive) calibrated on its head's held-out sets (text: MELD dev + test, by
          dialogue; audio: RAVDESS actors 19-24 + the 4Q test songs' 4 s crops; visual: the OASIS test images),
          temperature or isotonic chosen by cross-fitted ECE (training/calibration.py), shipped as calibration.json;
          the music videos are the check on another domain, before and after;
- fusion: all three modalities on the 52 music videos, every fusion method and combination, leave-one-out for
          anything learnt on them (each fused score's calibration included); the fitted fusion.json is shipped.
The manifests, embeddings and evaluation reports go to --work; the heads, their cards and metrics.json/.md to --out.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from app.options import add_model_arguments  # noqa: E402
from models.assets import cache_dir
from training.embed_cache import audio_seconds  # noqa: E402
from training.manifest import read_manifest, write_manifest  # noqa: E402

# audio-eval: measure the shipped audio head only; calibration: fit calibration.json on the shipped heads' held-out
# sets (run it after the heads it calibrates and before fusion, which learns on calibrated scores)
STEPS = ("text", "audio", "scene", "calibration", "fusion", "audio-eval")
# manifests, embeddings and reports (never in the repository)
WORK = cache_dir() / "default-heads"
RAVDESS_POSITIVE = {"happy", "calm"}
RAVDESS_NEGATIVE = {"angry", "sad", "fearful", "disgust"}
MUSICVIDEO_VALENCE = {"Excited": "positive", "Relaxation": "positive", "Fear": "negative", "Sad": "negative",
                      "Tension": "negative"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def rel(path: Path, start: Path) -> str:
    return os.path.relpath(path, start)


# ------------------------------------------------------------------------------------------------- manifests
def meld_manifest(data: Path, work: Path) -> Path:
    rows = []
    for split, name in (("train", "train"), ("val", "dev"), ("test", "test")):
        with open(data / "meld" / f"{name}_sent_emo.csv", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                rows.append({"text": r["Utterance"], "label": r["Sentiment"], "split": split,
                             "group": f"{name}-{r['Dialogue_ID']}"})
    return write_manifest(work / "meld.csv", rows, ["text", "label", "split", "group"])


def stratified_holdout(keys: list[str], strata: list[str], fraction: float, seed: int) -> set[str]:
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    for s in sorted(set(strata)):
        members = sorted(k for k, t in zip(keys, strata) if t == s)
        rng.shuffle(members)
        held.update(members[:round(len(members) * fraction)])
    return held


# The music is learnt and measured on 4 s crops, the length of a live window: seven per 30 s song (at 1, 5, ... 25 s);
# a song's verdict is the mean of its crops' P(positive), as a stream's rolling score would be.
MUSIC_CROP_S = 4.0
MUSIC_CROP_STARTS = (1.0, 5.0, 9.0, 13.0, 17.0, 21.0, 25.0)


def music_crop_starts(seconds: float) -> list[float]:
    """The crop starts that fit in a clip (a few 4Q excerpts are shorter than 30 s)."""
    starts = [s for s in MUSIC_CROP_STARTS if s + MUSIC_CROP_S <= seconds]
    return starts or [0.0]


def audio_manifests(data: Path, work: Path) -> dict[str, Path]:
    """audio.csv (valence, RAVDESS + music4q crops), ravdess_emotion.csv (8 emotions), music4q_quadrant.csv
    (4 quadrants), with split = train / test; the test rows are the held-out actors and songs. Speech and music
    weigh the same in training (each corpus's weights sum to its share of one half)."""
    with open(data / "ravdess" / "labels.csv") as f:
        ravdess = list(csv.DictReader(f))
    with open(data / "music4q" / "labels.csv") as f:
        music = list(csv.DictReader(f))
    missing = [m["path"] for m in music if not (data / "music4q" / m["path"]).is_file()]
    if missing:
        log(f"music4q: {len(missing)} clip(s) listed in labels.csv are not in the folder, left out: {missing}")
        music = [m for m in music if m["path"] not in missing]
    music_test = stratified_holdout([m["path"] for m in music], [m["quadrant"] for m in music], 0.2, seed=0)
    valence, emotion, quadrant = [], [], []
    for r in ravdess:
        split = "train" if int(r["actor"]) <= 18 else "test"
        path = rel(data / "ravdess" / r["path"], work)
        group = f"actor{int(r['actor']):02d}"
        emotion.append({"path": path, "label": r["emotion"], "split": split, "group": group})
        if r["emotion"] in RAVDESS_POSITIVE | RAVDESS_NEGATIVE:
            label = "positive" if r["emotion"] in RAVDESS_POSITIVE else "negative"
            valence.append({"path": path, "label": label, "split": split, "group": group, "source": "ravdess"})
    for m in music:
        split = "test" if m["path"] in music_test else "train"
        path = rel(data / "music4q" / m["path"], work)
        group = f"song:{m['path']}"
        for start in music_crop_starts(audio_seconds(data / "music4q" / m["path"])):
            crop = {"path": path, "split": split, "group": group, "source": "music4q", "start": start,
                    "end": start + MUSIC_CROP_S}
            valence.append({**crop, "label": m["valence"]})
            quadrant.append({**crop, "label": m["quadrant"]})
    for source in ("ravdess", "music4q"):
        rows = [r for r in valence if r["source"] == source and r["split"] == "train"]
        for r in valence:
            if r["source"] == source:
                r["weight"] = f"{len(valence) / (2 * len(rows)):.6g}"
    cols = ["path", "label", "split", "group", "source", "start", "end", "weight"]
    out = {"audio": write_manifest(work / "audio.csv", valence, cols),
           "ravdess_test": write_manifest(work / "ravdess_test.csv",
                                          [r for r in valence if r["source"] == "ravdess" and r["split"] == "test"],
                                          cols),
           "music4q_test": write_manifest(work / "music4q_test.csv",
                                          [r for r in valence if r["source"] == "music4q" and r["split"] == "test"],
                                          cols),
           # the held-out songs whole, as a stream of them would be scored: in the live pipeline's windows
           "music4q_test_songs": write_manifest(
               work / "music4q_test_songs.csv",
               [{"path": rel(data / "music4q" / m["path"], work), "label": m["valence"], "split": "test",
                 "group": f"song:{m['path']}", "source": "music4q"} for m in music if m["path"] in music_test],
               cols),
           "ravdess_emotion": write_manifest(work / "ravdess_emotion.csv", emotion, cols),
           "music4q_quadrant": write_manifest(work / "music4q_quadrant.csv", quadrant, cols)}
    return out


def audio_proba(manifest, head, cache) -> np.ndarray:
    """The head's class probabilities of an audio manifest's items (embeddings through the cache)."""
    from models.audio import AudioEmbedder
    from training.embed_cache import embed_manifest

    return head.predict_proba(embed_manifest(manifest, AudioEmbedder.for_head(head), cache, progress=False))


def per_group_accuracy(manifest, head, cache, proba: np.ndarray | None = None) -> dict:
    """Accuracy of the mean of each group's (song's) class probabilities: one verdict per song."""
    from training.metrics import classification_summary, rounded

    proba = audio_proba(manifest, head, cache) if proba is None else proba
    groups: dict[str, list[int]] = {}
    for i, it in enumerate(manifest.items):
        groups.setdefault(it.group, []).append(i)
    truth = [manifest.items[idx[0]].label for idx in groups.values()]
    pred = [head.classes[int(proba[idx].mean(axis=0).argmax())] for idx in groups.values()]
    summary = rounded(classification_summary(truth, pred, head.classes))
    summary.pop("confusion", None)
    return summary


def oasis_manifest(data: Path, work: Path) -> tuple[Path, Path]:
    with open(data / "oasis" / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    items = []
    for r in rows:
        v = float(r["valence_mean"])
        if v > 5 or v < 3:
            items.append({"path": rel(data / "oasis" / r["image"], work), "label": "positive" if v > 5 else "negative",
                          "group": r["image"]})
    test = stratified_holdout([i["path"] for i in items], [i["label"] for i in items], 0.25, seed=0)
    for i in items:
        i["split"] = "test" if i["path"] in test else "train"
    cols = ["path", "label", "split", "group"]
    return (write_manifest(work / "oasis.csv", items, cols),
            write_manifest(work / "oasis_test.csv", [i for i in items if i["split"] == "test"], cols))


def musicvideos_manifest(data: Path, work: Path) -> Path:
    with open(data / "musicvideos" / "labels.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["emotion"] in MUSICVIDEO_VALENCE]
    items = [{"path": rel(data / "musicvideos" / r["path"], work), "label": MUSICVIDEO_VALENCE[r["emotion"]]}
             for r in rows]
    return write_manifest(work / "musicvideos.csv", items, ["path", "label"])


# ------------------------------------------------------------------------------------------------- steps
def pick(table: list[dict], name: str) -> dict:
    for row in table:
        if row["name"] == name:
            return {k: v for k, v in row.items() if k not in ("kind",)}
    raise KeyError(name)


def train_text(data: Path, work: Path, out: Path, args) -> dict:
    from training.embed_cache import EmbeddingCache
    from training.evaluate import evaluate_manifest
    from training.text_finetune import FinetuneConfig
    from training.train import TrainConfig, train_from_manifest

    manifest = read_manifest(meld_manifest(data, work), "text")
    cache = EmbeddingCache(work / "cache" / "embeddings")
    results: dict = {}
    # the baseline: frozen MiniLM + logistic regression (not shipped)
    _, base = train_from_manifest(manifest, name="text_frozen_logreg", config=TrainConfig(kind="logreg", loss="plain"),
                                  out_dir=work / "baseline_heads", device=args.device, cache=cache, log=log)
    results["frozen_minilm_logreg"] = base["test"]
    finetune = FinetuneConfig(tune_layers=args.text_layers, epochs=args.text_epochs, lr=args.text_lr,
                              polar_weight=args.text_polar_weight) if args.text_layers else None
    head, metrics = train_from_manifest(manifest, name="text", config=TrainConfig(kind=args.text_kind, loss="plain"),
                                        out_dir=out, device=args.device, cache=cache, finetune=finetune, log=log)
    results["shipped"] = metrics["test"]
    test_manifest = manifest.subset("test")
    table = evaluate_manifest(test_manifest, heads_dir=out, out=work / "reports" / "text_meld_test", device=args.device,
                              cache_root=work / "cache")
    results["vader"] = pick(table, "vader (baseline)")
    results["evaluate_text_row"] = pick(table, "text")
    return results


def audio_train_config(kind: str = "mlp"):
    """The audio head's recipe. 797 features, and only 18 speakers and ~480 songs to learn from: strong
    regularisation (logistic regression), or an average of five MLPs (the default: chosen on the validation actors
    and songs, beside logistic regression, one MLP and an RBF SVM)."""
    from training.train import TrainConfig

    return TrainConfig(kind=kind, loss="weighted", c_grid=(0.001, 0.003, 0.01, 0.03, 0.1), input_dropout=0.2,
                       ensemble=5 if kind == "mlp" else 1)


def train_audio(data: Path, work: Path, out: Path, args) -> dict:
    from training.embed_cache import EmbeddingCache
    from training.train import train_from_manifest

    paths = audio_manifests(data, work)
    cache = EmbeddingCache(work / "cache" / "embeddings")
    config = audio_train_config(args.audio_kind)
    results: dict = {}
    head, metrics = train_from_manifest(read_manifest(paths["audio"], "audio"), name="audio", config=config,
                                        out_dir=out, device=args.device, asr="tiny.en", cache=cache, log=log)
    results["all_test"] = metrics["test"]
    results.update(held_out_audio_metrics(paths, head, work, out, args))
    emotions = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    _, m8 = train_from_manifest(read_manifest(paths["ravdess_emotion"], "audio", classes=emotions),
                                name="audio_emotion8", config=config, out_dir=work / "extra_heads",
                                device=args.device, cache=cache, log=log)
    results["ravdess_8_emotions"] = m8["test"]
    quadrants = read_manifest(paths["music4q_quadrant"], "audio", classes=["Q1", "Q2", "Q3", "Q4"])
    quadrant_head, m4 = train_from_manifest(quadrants, name="music_quadrant", config=config,
                                            out_dir=work / "extra_heads", device=args.device, cache=cache, log=log)
    results["music4q_quadrants_4s_crops"] = m4["test"]
    results["music4q_quadrants_songs"] = per_group_accuracy(quadrants.subset("test"), quadrant_head, cache)
    if args.audio_cv:
        results.update(cross_validated_audio(read_manifest(paths["audio"], "audio"), config, cache, args))
    if args.audio_seeds:
        results.update(audio_seed_spread(read_manifest(paths["audio"], "audio"), config, cache, args,
                                         args.audio_seeds))
    return results


def held_out_audio_metrics(paths: dict[str, Path], head, work: Path, out: Path, args) -> dict:
    """The audio head in `out` on the held-out actors and songs, scored as `vidsent evaluate` scores them (the live
    pipeline's windows and rules); the numbers are written into the head's card too."""
    from training.evaluate import evaluate_manifest

    results = {}
    for key, name in (("ravdess_test", "ravdess_test"), ("music4q_test", "music4q_test_4s_crops"),
                      ("music4q_test_songs", "music4q_test_songs")):
        table = evaluate_manifest(read_manifest(paths[key], "audio"), heads_dir=out, out=work / "reports" / key,
                                  device=args.device, cache_root=work / "cache")
        results[name] = pick(table, "audio")
    head.card["metrics"].update({"ravdess_actors_19_24": results["ravdess_test"],
                                 "music4q_test_4s_crops": results["music4q_test_4s_crops"],
                                 "music4q_test_songs": results["music4q_test_songs"]})
    head.save(out / "audio")
    return results


def evaluate_audio(data: Path, work: Path, out: Path, args) -> dict:
    """The `audio-eval` step: the shipped audio head measured again without training it (the "audio" metrics are
    updated in place)."""
    from models.heads import load_head

    head = load_head("audio", out)
    if head is None:
        raise SystemExit(f"error: no audio head in {out} to evaluate")
    existing = json.loads((out / "metrics.json").read_text()).get("audio", {}) if (out / "metrics.json").exists() \
        else {}
    return {**existing, **held_out_audio_metrics(audio_manifests(data, work), head, work, out, args)}


def speech_and_song_scores(held, head, cache) -> tuple[float, float]:
    """A valence head on held-out audio rows: macro F1 on the RAVDESS clips, valence accuracy per 4Q song."""
    from training.manifest import Manifest
    from training.metrics import classification_summary

    proba = audio_proba(held, head, cache)
    is_speech = np.array([it.group.startswith("actor") for it in held.items])
    speech = [it.label for it, spoken in zip(held.items, is_speech) if spoken]
    pred = [head.classes[i] for i in proba[is_speech].argmax(axis=1)]
    music = Manifest(held.path, held.modality, held.classes,
                     [it for it, spoken in zip(held.items, is_speech) if not spoken])
    return (classification_summary(speech, pred, head.classes)["macro_f1"],
            per_group_accuracy(music, head, cache, proba[~is_speech])["accuracy"])


def train_and_score(manifest, name: str, config, cache, args) -> tuple[float, float]:
    """Train an audio head on a manifest's train rows (not saved) and score it on its test rows: RAVDESS macro F1,
    4Q song valence accuracy."""
    from training.train import train_from_manifest

    head, _ = train_from_manifest(manifest, name=name, config=config, out_dir=None, device=args.device, cache=cache,
                                  log=lambda m: None)
    return speech_and_song_scores(manifest.subset("test"), head, cache)


def spread(values: list[float], unit: str = "folds") -> dict:
    """Mean, standard deviation and the values, under `unit` (folds or seeds)."""
    return {"mean": round(float(np.mean(values)), 4), "sd": round(float(np.std(values)), 4),
            unit: [round(float(v), 4) for v in values]}


def cross_validated_audio(manifest, config, cache, args, folds: int = 4) -> dict:
    """How much the single held-out split's numbers owe to which actors and songs it holds: the same head trained
    `folds` times, each time holding out a quarter of the actors (1-6, 7-12, ...) and a quarter of the songs
    (stratified by quadrant), scored on what it held out."""
    from dataclasses import replace

    from training.manifest import Manifest

    songs = sorted({it.group for it in manifest.items if it.group.startswith("song:")})
    quadrant = {it.group: it.ref.split("/")[-2] for it in manifest.items if it.group.startswith("song:")}
    rng = np.random.default_rng(0)
    song_fold: dict[str, int] = {}
    for q in sorted(set(quadrant.values())):
        members = [g for g in songs if quadrant[g] == q]
        rng.shuffle(members)
        song_fold.update({g: i % folds for i, g in enumerate(members)})

    def fold_of(item) -> int:
        if item.group.startswith("actor"):
            return (int(item.group[len("actor"):]) - 1) * folds // 24
        return song_fold[item.group]

    speech_f1, song_accuracy = [], []
    for fold in range(folds):
        items = [replace(it, split="test" if fold_of(it) == fold else "train") for it in manifest.items]
        fold_manifest = Manifest(manifest.path, manifest.modality, manifest.classes, items)
        f1, accuracy = train_and_score(fold_manifest, f"audio_fold{fold}", config, cache, args)
        speech_f1.append(f1)
        song_accuracy.append(accuracy)
        log(f"audio fold {fold + 1}/{folds}: speech macro F1 {f1:.3f}, song valence accuracy {accuracy:.3f}")
    return {"cv4_ravdess_macro_f1": spread(speech_f1), "cv4_music4q_song_accuracy": spread(song_accuracy)}


def audio_seed_spread(manifest, config, cache, args, seeds: int) -> dict:
    """How much the held-out numbers owe to the training run: the same head trained with seeds 0 .. seeds-1 (a
    seed draws the validation actors and songs inside the training ones, and the MLPs' initialisation; the test
    actors and songs stay the same). The shipped head is seed 0; another CPU can change a run as much as a seed."""
    from dataclasses import replace

    speech_f1, song_accuracy = [], []
    for seed in range(seeds):
        f1, accuracy = train_and_score(manifest, f"audio_seed{seed}", replace(config, seed=seed), cache, args)
        speech_f1.append(f1)
        song_accuracy.append(accuracy)
        log(f"audio seed {seed}: RAVDESS macro F1 {f1:.3f}, song valence accuracy {accuracy:.3f}")
    return {f"seeds{seeds}_ravdess_macro_f1": spread(speech_f1, "seeds"),
            f"seeds{seeds}_music4q_song_accuracy": spread(song_accuracy, "seeds")}


def train_scene(data: Path, work: Path, out: Path, args) -> dict:
    from training.embed_cache import EmbeddingCache
    from training.evaluate import evaluate_manifest
    from training.train import TrainConfig, train_from_manifest

    manifest_path, test_path = oasis_manifest(data, work)
    cache = EmbeddingCache(work / "cache" / "embeddings")
    head, metrics = train_from_manifest(read_manifest(manifest_path, "visual"), name="scene",
                                        config=TrainConfig(kind=args.scene_kind, loss="weighted"), out_dir=out,
                                        device=args.device, cache=cache, log=log)
    table = evaluate_manifest(read_manifest(test_path, "visual"), heads_dir=out, out=work / "reports" / "oasis_test",
                              device=args.device, cache_root=work / "cache")
    return {"scene": pick(table, "scene"), "faces_on_images_with_a_face": pick(table, "faces"),
            "visual_blend": pick(table, "visual")}


def calibration_sets(data: Path, work: Path) -> dict[str, dict[str, object]]:
    """Per calibration key, its held-out sets: name → manifest (the column read is <modality>_score)."""
    meld = read_manifest(meld_manifest(data, work), "text")
    paths = audio_manifests(data, work)
    return {"text": {"meld_dev": meld.subset("val"), "meld_test": meld.subset("test")},
            "audio": {"ravdess_19_24": read_manifest(paths["ravdess_test"], "audio"),
                      "music4q_test_4s_crops": read_manifest(paths["music4q_test"], "audio")},
            "visual": {"oasis_test": read_manifest(oasis_manifest(data, work)[1], "visual")}}


def polar_scores(predictions: Path, manifest, column: str) -> tuple[list[float], list[bool], list[str]]:
    """(P(positive), is positive, group) of the positive and negative items an evaluation scored."""
    with open(predictions, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    p, y, groups = [], [], []
    for row, item in zip(rows, manifest.items, strict=True):
        if item.label in ("positive", "negative") and row.get(column):
            p.append(float(row[column]))
            y.append(item.label == "positive")
            groups.append(item.group or item.ref)
    return p, y, groups


def calibrate(data: Path, work: Path, out: Path, args) -> dict:
    """The `calibration` step: every held-out set scored without calibration (the shipped file is set aside
    meanwhile), a calibration chosen and fitted per key, calibration.json written; the music videos' per-modality
    ECE before (after: the fusion step, which runs them through the calibrated live pipeline)."""
    from models.calibration import CALIBRATION_FILE, save_calibrations
    from training.calibration import choose_calibration
    from training.evaluate import evaluate_manifest

    shipped = out / CALIBRATION_FILE
    aside = out / (CALIBRATION_FILE + ".aside")
    if shipped.exists():
        shipped.replace(aside)
    pooled: dict[str, tuple[list, list, list, list]] = {}
    results: dict = {}
    try:
        for key, sets in calibration_sets(data, work).items():
            pooled[key] = ([], [], [], [])
            for name, manifest in sets.items():
                report = work / "reports" / f"calibration_{name}"
                evaluate_manifest(manifest, heads_dir=out, out=report, device=args.device, cache_root=work / "cache")
                p, y, groups = polar_scores(report / "predictions.csv", manifest, f"{key}_score")
                for column, values in zip(pooled[key], (p, y, groups, [name] * len(p))):
                    column.extend(values)
        videos = read_manifest(musicvideos_manifest(data, work), "video")
        table = evaluate_manifest(videos, heads_dir=out, out=work / "reports" / "calibration_musicvideos",
                                  device=args.device, cache_root=work / "cache")
        results["musicvideos_before"] = {r["name"]: {"n": r["n"], "accuracy": r.get("accuracy"), "ece": r.get("ece")}
                                         for r in table if r["kind"] in ("modality", "fusion")}
    finally:
        if aside.exists():
            aside.replace(shipped)
    calibrations = {}
    for key, (p, y, groups, sets) in pooled.items():
        calibrations[key], report = choose_calibration(p, y, groups, sets)
        results[key] = report
        log(f"calibration {key}: {report['chosen']} (cross-fitted ECE per kind {report['kinds']})")
    save_calibrations(out, calibrations, card={"fitted_on": {k: list(v) for k, v in calibration_sets(data, work)
                                                             .items()}})
    return results


def train_fusion(data: Path, work: Path, out: Path, args) -> dict:
    from training.evaluate import evaluate_manifest

    manifest = read_manifest(musicvideos_manifest(data, work), "video")
    compare = sorted((data / "seed").glob("*.csv"))
    table = evaluate_manifest(manifest, heads_dir=out, out=work / "reports" / "musicvideos", device=args.device,
                              cache_root=work / "cache", compare=compare, save_fusion=out / "fusion.json")
    return {row["name"]: {k: row[k] for k in ("n", "coverage", "accuracy", "macro_f1", "weighted_f1", "ece")
                          if k in row} for row in table}


def write_metrics(out: Path, results: dict, seconds: dict) -> None:
    path = out / "metrics.json"
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing.update(results)
    existing.setdefault("_seconds", {}).update(seconds)
    path.write_text(json.dumps(existing, indent=2) + "\n")
    lines = ["# Held-out metrics of the default heads", "",
             "Reproduce with `python scripts/train_default_heads.py` (see its docstring for the splits).", ""]
    for step, result in existing.items():
        if step.startswith("_"):
            continue
        lines += [f"## {step}", "", "| row | n | accuracy | macro F1 | weighted F1 | ECE | pos-vs-neg acc |",
                  "|---|---|---|---|---|---|---|"]
        if step == "calibration":
            lines[-2:] = ["| key | held-out set | n | ECE before | identity / temperature / isotonic (cross-fitted) | "
                          "ECE floor | accuracy before → after |", "|---|---|---|---|---|---|---|"]
            for key, report in result.items():
                for name, m in report.get("sets", {}).items():
                    chosen = report["chosen"]
                    lines.append(f"| {key} ({chosen}) | {name} | {m['n']} | {m['ece_before']} | {m['ece_identity']} / "
                                 f"{m['ece_temperature']} / {m['ece_isotonic']} | {m['ece_floor']} | "
                                 f"{m['accuracy_before']} → {m[f'accuracy_{chosen}']} |")
            lines.append("")
            continue
        for name, m in result.items():
            unit = next((u for u in ("folds", "seeds") if isinstance(m, dict) and u in m), None)
            if unit:
                lines.append(f"| {name} | {len(m[unit])} {unit} | {m['mean']} ± {m['sd']} ({unit}: "
                             f"{', '.join(str(v) for v in m[unit])}) | | | | |")
            elif isinstance(m, dict):
                lines.append(f"| {name} | {m.get('n', '')} | {m.get('accuracy', '')} | {m.get('macro_f1', '')} | "
                             f"{m.get('weighted_f1', '')} | {m.get('ece', '')} | {m.get('posneg_accuracy', '')} |")
        lines.append("")
    (out / "metrics.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "default_heads")
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--only", default=",".join(STEPS[:5]), help="comma-separated steps: " + ", ".join(STEPS))
    add_model_arguments(parser, asr=False, heads=False, threads=True)
    parser.add_argument("--text-layers", type=int, default=6, help="top MiniLM layers fine-tuned for the text head")
    parser.add_argument("--text-epochs", type=int, default=3)
    parser.add_argument("--text-lr", type=float, default=5e-5)
    parser.add_argument("--text-polar-weight", type=float, default=1.0,
                        help="weight of the positive-vs-negative loss while fine-tuning")
    parser.add_argument("--text-kind", default="mlp", choices=("mlp", "logreg"))
    parser.add_argument("--audio-kind", default="mlp", choices=("mlp", "logreg"))
    parser.add_argument("--audio-seeds", type=int, default=0, metavar="N",
                        help="also train the audio head with seeds 0..N-1 and report the spread of its held-out "
                             "numbers")
    parser.add_argument("--audio-cv", action="store_true",
                        help="also cross-validate the audio head over 4 folds of actors and songs (~10 min more)")
    parser.add_argument("--scene-kind", default="logreg", choices=("mlp", "logreg"))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if not args.data.is_dir():
        print(f"error: no data folder at {args.data}", file=sys.stderr)
        return 2
    steps = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        print(f"error: unknown steps {unknown}; choose from {', '.join(STEPS)}", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    runners = {"text": train_text, "audio": train_audio, "scene": train_scene, "calibration": calibrate,
               "fusion": train_fusion, "audio-eval": evaluate_audio}
    for step in steps:
        started = time.time()
        log(f"--- {step}")
        result = runners[step](args.data, args.work, args.out, args)
        seconds = round(time.time() - started, 1)
        key = "audio" if step == "audio-eval" else step
        write_metrics(args.out, {key: result}, {step: seconds})
        log(f"--- {step} done in {seconds}s")
    log(f"metrics: {args.out / 'metrics.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
