#!/usr/bin/env python
"""Does a multilingual mix help the audio head? Train a candidate with the shipped recipe plus Italian and Urdu speech,
and measure it beside the shipped head, speaker-independently.

    python scripts/train_multilingual_audio.py [--emotion-root /work/data/emotion_ml] [--data ../shared/data]
                                               [--out /work/data/audio_ml] [--seeds 3]

- Splits by speaker: EMOVO train f1, f2, m1, m2 / test f3, m3; URDU: ~30% of the speakers held out, stratified by
  each speaker's majority label (URDU's speakers mostly speak one emotion each); EmoDB (2 speakers) is test only.
- The candidate: audio_train_config() on the shipped head's own manifest (RAVDESS actors 1-18 + music4q train crops,
  scripts/train_default_heads.audio_manifests) plus the positive / negative clips of the EMOVO and URDU train speakers,
  cut into the live pipeline's windows (the windows the live scorer would score; each clip counts once). Speech and
  music still weigh half each; inside the speech half every clip weighs the same (--speech-weighting clips) or each
  corpus a third (corpus). Neutral clips stay out of training, as RAVDESS's do: the head stays negative / positive.
- Both heads are measured as `vidsent evaluate` measures them (training.evaluate.evaluate_manifest: live windows, the
  neutral band of P(positive) for 3-class sets) on RAVDESS actors 19-24, the music4q test songs (one verdict per song),
  EMOVO and URDU test speakers and all of EmoDB. A single training run moves these numbers by a few points (the seed
  spread in models/default_heads/metrics.md), so --seeds N also trains the shipped recipe and the candidate with seeds
  0..N-1 and reports the mean and spread of each.

Writes to --out: manifests/ (splits, training manifest, split.json), candidate_heads/ (the candidate audio head, with
the shipped text / scene / fusion files beside it so the folder works as --heads), reports/<head>/<set>/ (evaluate's
summary and predictions), results.json and results.md. Embeddings are cached with train_default_heads.py's
(--work, default ~/.cache/vidsent/default-heads).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np  # noqa: E402
import train_default_heads as base  # noqa: E402

from app.options import add_model_arguments  # noqa: E402
from training.manifest import read_manifest, write_manifest  # noqa: E402

EMOVO_TEST = ("emovo_f3", "emovo_m3")
COLUMNS = ["path", "label", "split", "group", "source", "start", "end", "weight"]
TEST_SETS = ("ravdess_19_24", "music4q_test_songs", "emovo_test", "urdu_test", "emodb_all")
log = base.log


# ------------------------------------------------------------------------------------------------- splits
def read_corpus(root: Path, corpus: str) -> list[dict]:
    with open(root / corpus / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["file"] = root / corpus / r["path"]
    return rows


def speaker_split(rows: list[dict], corpus: str, fraction: float, seed: int) -> set[str]:
    """The held-out speakers: EMOVO's f3 and m3; URDU's a stratified share (by each speaker's majority label)."""
    if corpus == "emovo":
        return set(EMOVO_TEST)
    labels: dict[str, Counter] = {}
    for r in rows:
        labels.setdefault(r["speaker"], Counter())[r["label"]] += 1
    speakers = sorted(labels)
    majority = [labels[s].most_common(1)[0][0] for s in speakers]
    return base.stratified_holdout(speakers, majority, fraction, seed)


def train_windows(rows: list[dict], source: str, manifest_dir: Path) -> list[dict]:
    """The positive / negative clips as the live pipeline's windows that it would score (models.audio.unscorable);
    each clip's windows share the clip's weight of one."""
    from models.audio import unscorable
    from stream.windows import window_spans
    from training.embed_cache import audio_part, load_audio

    out = []
    for r in rows:
        if r["label"] not in ("positive", "negative"):
            continue
        audio = load_audio(r["file"])
        seconds = len(audio) / 16000
        spans = [(t0, t1) for t0, t1 in window_spans(seconds) if unscorable(audio_part(audio, t0, t1)) is None]
        for t0, t1 in spans:
            whole = (t0, t1) == (0.0, seconds)  # the same cache key as evaluate's whole-clip item
            out.append({"path": base.rel(r["file"], manifest_dir), "label": r["label"], "split": "train",
                        "group": r["speaker"], "source": source, "start": "" if whole else repr(t0),
                        "end": "" if whole else repr(t1), "clip_share": 1.0 / len(spans)})
    return out


def build_manifests(args, work: Path) -> tuple[dict[str, Path], dict]:
    """The test manifests, the candidate's training manifest and the split (which speakers where)."""
    mdir = args.out / "manifests"
    paths = base.audio_manifests(args.data, work)  # the shipped head's manifests (train_default_heads.py)
    moved = {}
    for key, name in (("ravdess_test", "ravdess_19_24"), ("music4q_test_songs", "music4q_test_songs"),
                      ("audio", "audio_shipped_recipe")):  # re-pointed from the work folder to the manifests folder
        with open(paths[key], newline="", encoding="utf-8") as f:
            moved[name] = [{**r, "path": base.rel(work / r["path"], mdir)} for r in csv.DictReader(f)]
        write_manifest(mdir / f"{name}.csv", moved[name], COLUMNS)
    tests = {name: mdir / f"{name}.csv" for name in moved}
    split: dict = {"emovo_test_speakers": list(EMOVO_TEST)}
    extra: list[dict] = []
    test_cols = ["path", "label", "language", "speaker"]
    for corpus in ("emovo", "urdu", "emodb"):
        rows = read_corpus(args.emotion_root, corpus)
        for r in rows:
            r["path"] = base.rel(r["file"], mdir)
        if corpus == "emodb":  # two speakers: a test set only
            tests["emodb_all"] = write_manifest(mdir / "emodb_all.csv", rows, test_cols)
            continue
        held = speaker_split(rows, corpus, args.urdu_test_fraction, args.seed)
        train = [r for r in rows if r["speaker"] not in held]
        test = [r for r in rows if r["speaker"] in held]
        tests[f"{corpus}_test"] = write_manifest(mdir / f"{corpus}_test.csv", test, test_cols)
        write_manifest(mdir / f"{corpus}_train.csv", train, test_cols)
        if args.max_train_clips and len(train) > args.max_train_clips:
            pick = np.random.default_rng(args.seed).choice(len(train), args.max_train_clips, replace=False)
            train = [train[i] for i in sorted(pick)]
        windows = train_windows(train, corpus, mdir)
        extra += windows
        split[corpus] = {
            "train_speakers": sorted({r["speaker"] for r in train}), "test_speakers": sorted(held),
            "train_clips": dict(Counter(r["label"] for r in train)),
            "test_clips": dict(Counter(r["label"] for r in test)),
            "train_windows": len(windows), "train_clips_used": len({(w["path"]) for w in windows})}
    rows = [dict(r) for r in moved["audio_shipped_recipe"]] + extra
    train = [r for r in rows if r["split"] == "train"]
    speech = [r for r in train if r["source"] != "music4q"]
    n_music = sum(r["source"] == "music4q" for r in train)
    total = len(rows)  # the same scale as audio_manifests: train weights sum to `total`, half speech, half music
    clips = {s: sum(r.get("clip_share", 1.0) for r in speech if r["source"] == s)
             for s in {r["source"] for r in speech}}
    for r in rows:
        share = r.get("clip_share", 1.0)
        if r["source"] == "music4q":
            w = total / (2 * n_music)
        elif args.speech_weighting == "clips":
            w = share * total / (2 * sum(clips.values()))
        else:  # corpus: each speech corpus a third of the speech half
            w = share * total / (2 * len(clips) * clips[r["source"]])
        r["weight"] = f"{w:.6g}"
    split["train_weight_shares"] = {s: round(sum(float(r["weight"]) for r in train if r["source"] == s)
                                             / sum(float(r["weight"]) for r in train), 4)
                                    for s in ("ravdess", "emovo", "urdu", "music4q")}
    tests["_train"] = write_manifest(mdir / "audio_multilingual.csv", rows, COLUMNS)
    (mdir / "split.json").write_text(json.dumps(split, indent=2) + "\n")
    return tests, split


# ------------------------------------------------------------------------------------------------- measuring
def measure(head_dir: Path, tests: dict[str, Path], report_dir: Path, work: Path, args) -> dict:
    """evaluate_manifest of the audio head in head_dir on every test set (reports under report_dir)."""
    from training.evaluate import evaluate_manifest

    out = {}
    for name in TEST_SETS:
        table = evaluate_manifest(read_manifest(tests[name], "audio"), heads_dir=head_dir, out=report_dir / name,
                                  device=args.device, cache_root=work / "cache")
        row = base.pick(table, "audio")
        out[name] = {k: row.get(k) for k in ("n", "coverage", "accuracy", "macro_f1", "posneg_accuracy",
                                              "confusion")}
        if out[name]["posneg_accuracy"] is None:  # a negative / positive set: pos-vs-neg accuracy is the accuracy
            out[name]["posneg_accuracy"] = row["accuracy"]
    return out


def seed_runs(manifest_path: Path, label: str, seeds: range, tests, work: Path, args,
              done: dict[int, dict] | None = None) -> list[dict]:
    """The recipe trained with each seed (heads kept under --out/seed_heads) and measured on every test set; `done`:
    the measures of seeds already trained."""
    from training.embed_cache import EmbeddingCache
    from training.train import train_from_manifest

    cache = EmbeddingCache(work / "cache" / "embeddings")
    config = base.audio_train_config()
    runs = []
    for seed in seeds:
        if done and seed in done:
            runs.append(done[seed])
            continue
        folder = args.out / "seed_heads" / f"{label}_seed{seed}"
        train_from_manifest(read_manifest(manifest_path, "audio"), name="audio", config=replace(config, seed=seed),
                            out_dir=folder, device=args.device, cache=cache, log=lambda m: None)
        runs.append(measure(folder, tests, args.out / "reports" / "seeds" / f"{label}_seed{seed}", work, args))
        log(f"{label} seed {seed}: " + ", ".join(f"{k} F1 {v['macro_f1']}" for k, v in runs[-1].items()))
    return runs


# ------------------------------------------------------------------------------------------------- report
def markdown(results: dict, split: dict, command: str) -> str:
    s, c = results["shipped"], results["candidate"]
    lines = ["# Multilingual audio head: shipped vs candidate", "", f"`{command}`", "",
             "| test set | n | shipped acc | cand. acc | shipped macro F1 | cand. macro F1 | shipped pos-vs-neg | "
             "cand. pos-vs-neg |", "|---|---|---|---|---|---|---|---|"]
    for name in TEST_SETS:
        lines.append(f"| {name} | {s[name]['n']} | {s[name]['accuracy']} | {c[name]['accuracy']} | "
                     f"{s[name]['macro_f1']} | {c[name]['macro_f1']} | {s[name]['posneg_accuracy']} | "
                     f"{c[name]['posneg_accuracy']} |")
    lines += ["", "n = items the audio head scored (clips under 2 s are left unscored, as live); music4q: one verdict "
              "per song (the mean of its live windows); 3-class sets: a negative / positive head's label is the "
              "neutral band of P(positive).", ""]
    if results.get("seeds"):
        lines += [f"## Seed spread (mean ± sd over seeds {results['seeds']['seeds']}; the shipped recipe retrained "
                  "vs the candidate recipe)", "",
                  "| test set | metric | shipped recipe | candidate recipe | difference (paired by seed) |",
                  "|---|---|---|---|---|"]
        for name in TEST_SETS:
            for metric in ("macro_f1", "posneg_accuracy"):
                a = np.array([r[name][metric] for r in results["seeds"]["shipped_recipe"]])
                b = np.array([r[name][metric] for r in results["seeds"]["candidate_recipe"]])
                lines.append(f"| {name} | {metric} | {a.mean():.3f} ± {a.std():.3f} | {b.mean():.3f} ± {b.std():.3f}"
                             f" | {(b - a).mean():+.3f} ± {(b - a).std():.3f} |")
        lines.append("")
    lines += ["## Split", "", "```json", json.dumps(split, indent=2), "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emotion-root", type=Path, default=Path("/work/data/emotion_ml"))
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("/work/data/audio_ml"))
    parser.add_argument("--work", type=Path, default=base.WORK, help="train_default_heads.py's work folder (cache)")
    parser.add_argument("--urdu-test-fraction", type=float, default=0.3)
    parser.add_argument("--speech-weighting", default="clips", choices=("clips", "corpus"))
    parser.add_argument("--max-train-clips", type=int, default=0, help="subsample each corpus's train clips (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="the URDU split's seed")
    parser.add_argument("--seeds", type=int, default=3, help="also train both recipes with seeds 0..N-1 (0: skip)")
    add_model_arguments(parser, asr=False, heads=False, threads=True)
    args = parser.parse_args(argv)

    import torch

    from training.embed_cache import EmbeddingCache
    from training.train import train_from_manifest

    torch.set_num_threads(args.threads)
    started = time.time()
    args.work.mkdir(parents=True, exist_ok=True)
    tests, split = build_manifests(args, args.work)
    log(f"split: {json.dumps(split)}")

    heads = args.out / "candidate_heads"
    heads.mkdir(parents=True, exist_ok=True)
    for f in base.ROOT.joinpath("models", "default_heads").iterdir():  # the other heads, so the folder works as --heads
        if f.name.split(".")[0] in ("text", "scene", "fusion"):
            shutil.copy2(f, heads / f.name)
    cache = EmbeddingCache(args.work / "cache" / "embeddings")
    train_from_manifest(read_manifest(tests["_train"], "audio"), name="audio", config=base.audio_train_config(),
                        out_dir=heads, device=args.device, cache=cache, log=log,
                        card={"multilingual": {"split": split, "speech_weighting": args.speech_weighting}})
    results: dict = {"shipped": measure(base.ROOT / "models" / "default_heads", tests,
                                        args.out / "reports" / "shipped", args.work, args),
                     "candidate": measure(heads, tests, args.out / "reports" / "candidate", args.work, args)}
    if args.seeds:
        seeds = range(args.seeds)
        results["seeds"] = {"seeds": list(seeds),
                            "shipped_recipe": seed_runs(tests["audio_shipped_recipe"], "shipped_recipe", seeds, tests,
                                                        args.work, args),
                            "candidate_recipe": seed_runs(tests["_train"], "candidate_recipe", seeds, tests,
                                                          args.work, args, done={0: results["candidate"]})}
    results["seconds"] = round(time.time() - started, 1)
    command = "python scripts/train_multilingual_audio.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = markdown(results, split, command) + f"\nWall time: {results['seconds']} s\n"
    (args.out / "results.json").write_text(json.dumps({**results, "split": split}, indent=2) + "\n")
    (args.out / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
