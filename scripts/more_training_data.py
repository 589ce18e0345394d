#!/usr/bin/env python
"""Does more training data help the text and audio heads? A reproducible measurement (not what ships).

    python scripts/more_training_data.py tweets   # MELD train + the CrowdFlower tweets, scored on MELD dev and test
    python scripts/more_training_data.py speed    # audio head + speed-perturbed copies (0.9x, 1.1x), 5 seeds

tweets: logistic regression on MiniLM embeddings (frozen, and with the shipped fine-tuned layers), trained on MELD
        train plus the tweets at a weight of 0 (MELD alone), 0.1, 0.3 and 1, C chosen on MELD dev; and a positive-vs-
        negative regression trained on the tweets alone. Reports 3-class weighted F1 and positive-vs-negative
        accuracy on MELD test.
speed:  the shipped audio recipe trained with seeds 0-4 on the same training rows as the default head, with and
        without a copy of every training clip played 0.9x and 1.1x as fast (pitch and tempo both move, as in
        Kaldi's speed perturbation); scored on RAVDESS actors 19-24 (macro F1) and the held-out 4Q songs. Needs the
        manifests of `scripts/train_default_heads.py --only audio` in --work.
Embeddings go through the project's embedding cache in --work (resumable).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_default_heads as defaults  # noqa: E402

SPEEDS = (0.9, 1.1)


def tweets(args) -> None:
    from sklearn.linear_model import LogisticRegression

    from models.heads import load_head
    from models.text import TextEmbedder, attach_encoder_delta
    from training.embed_cache import EmbeddingCache, embed_manifest
    from training.manifest import Manifest, read_manifest
    from training.metrics import classification_summary

    meld = read_manifest(defaults.meld_manifest(args.data, args.work), "text")
    every_tweet = read_manifest(args.data / "tweets" / "crowdflower_tweets.csv", "text")
    tweet_manifest = Manifest(every_tweet.path, "text", every_tweet.classes,
                              [it for it in every_tweet.items if it.text.strip()])
    tweet_label = np.array(tweet_manifest.labels)
    classes = meld.classes
    label = np.array([it.label for it in meld.items])
    split = np.array([it.split for it in meld.items])
    cache = EmbeddingCache(args.work / "cache" / "embeddings")
    embedder = TextEmbedder(args.device)
    for encoder in ("frozen MiniLM", "fine-tuned MiniLM (shipped layers)"):
        if encoder.startswith("fine"):
            attach_encoder_delta(embedder, load_head("text", args.heads))
        X = embed_manifest(meld, embedder, cache, progress=False)
        T = embed_manifest(tweet_manifest, embedder, cache)
        train, dev, test = (split == s for s in ("train", "val", "test"))

        def fit(tweet_weight: float, C: float):
            Xs, ys = X[train], label[train]
            ws = np.ones(len(ys))
            if tweet_weight:
                Xs, ys = np.vstack([Xs, T]), np.concatenate([ys, tweet_label])
                ws = np.concatenate([ws, np.full(len(T), tweet_weight)])
            return LogisticRegression(C=C, class_weight="balanced", max_iter=3000).fit(Xs, ys, sample_weight=ws)

        def scores(model, rows) -> dict:
            proba = model.predict_proba(X[rows])[:, [list(model.classes_).index(c) for c in classes]]
            return classification_summary(
                list(label[rows]), [classes[i] for i in proba.argmax(1)], classes, proba,
                proba[:, classes.index("positive")] + 0.5 * proba[:, classes.index("neutral")])

        for weight in (0.0, 0.1, 0.3, 1.0):
            fits = [(fit(weight, C), C) for C in (0.1, 0.3, 1.0)]
            model, C = max(fits, key=lambda mc: scores(mc[0], dev)["weighted_f1"])
            d, t = scores(model, dev), scores(model, test)
            print(f"{encoder}, tweets at weight {weight} (C {C}): dev weighted F1 {d['weighted_f1']:.3f}, "
                  f"pos-vs-neg {d['posneg_accuracy']:.3f} | test weighted F1 {t['weighted_f1']:.3f}, "
                  f"pos-vs-neg {t['posneg_accuracy']:.3f}", flush=True)
        polar = tweet_label != "neutral"
        only = LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000).fit(T[polar], tweet_label[polar])
        meld_polar = test & (label != "neutral")
        accuracy = float((only.predict(X[meld_polar]) == label[meld_polar]).mean())
        print(f"{encoder}, positive-vs-negative trained on the tweets alone: MELD test pos-vs-neg {accuracy:.3f}",
              flush=True)


def speed_perturbed(audio: np.ndarray, speed: float) -> np.ndarray:
    """The clip played `speed` times as fast (linear interpolation at 16 kHz)."""
    return np.interp(np.arange(0, len(audio) - 1, speed), np.arange(len(audio)), audio).astype(np.float32)


class SpeedPerturbedEmbedder:
    """An audio embedder that hears every clip played `speed` times as fast; its model_id keeps its embeddings
    apart from the plain ones in the cache."""

    def __init__(self, embedder, speed: float):
        self.embedder, self.speed = embedder, speed
        self.model_id = f"{embedder.model_id};speed={speed}"

    def embed(self, clips: list[np.ndarray]) -> np.ndarray:
        return self.embedder.embed([speed_perturbed(clip, self.speed) for clip in clips])


def speed(args) -> None:
    from models.audio import AudioEmbedder
    from training.embed_cache import EmbeddingCache, embed_manifest
    from training.manifest import Manifest, read_manifest
    from training.train import fit_head, manifest_splits

    if not (args.work / "audio.csv").is_file():
        sys.exit(f"error: {args.work / 'audio.csv'} is missing: make it first with "
                 f"`python scripts/train_default_heads.py --only audio --work {args.work}`")
    manifest = read_manifest(args.work / "audio.csv", "audio")
    cache = EmbeddingCache(args.work / "cache" / "embeddings")
    embedder = AudioEmbedder("tiny.en", device=args.device)
    X = embed_manifest(manifest, embedder, cache)
    pool = [i for i, it in enumerate(manifest.items) if it.split != "test"]
    training = Manifest(manifest.path, "audio", manifest.classes, [manifest.items[i] for i in pool])
    perturbed = {s: dict(zip(pool, embed_manifest(training, SpeedPerturbedEmbedder(embedder, s), cache)))
                 for s in SPEEDS}
    y = np.asarray(manifest.label_indices())
    weights = np.asarray(manifest.weights, dtype=np.float64)
    config = defaults.audio_train_config()
    held = manifest.subset("test")
    results: dict[str, list[tuple[float, float]]] = {"plain": [], "with speed-perturbed copies": []}
    for seed in range(args.seeds):
        splits = manifest_splits(manifest, 0.15, seed)
        for name in results:
            rows, X_train = list(splits.train), [X[splits.train]]
            if name != "plain":
                X_train += [np.stack([perturbed[s][i] for i in splits.train]) for s in SPEEDS]
                rows = rows * (1 + len(SPEEDS))
            head = fit_head(np.vstack(X_train), y[rows], X[splits.val], y[splits.val], manifest.classes,
                            replace(config, seed=seed), "audio", {}, weights[rows], weights[splits.val])
            results[name].append(defaults.speech_and_song_scores(held, head, cache))
            f1, accuracy = results[name][-1]
            print(f"seed {seed}, {name}: RAVDESS macro F1 {f1:.3f}, song valence accuracy {accuracy:.3f}", flush=True)
    for name, values in results.items():
        f1s, accuracies = np.array(values).T
        print(f"{name}: RAVDESS {f1s.mean():.3f} ± {f1s.std():.3f}, songs {accuracies.mean():.3f} ± "
              f"{accuracies.std():.3f} ({args.seeds} seeds)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", choices=("tweets", "speed"))
    parser.add_argument("--data", type=Path, default=defaults.ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=defaults.WORK)
    parser.add_argument("--heads", type=Path, default=defaults.ROOT / "models" / "default_heads")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"error: no data folder at {args.data} (see ../shared/data/README.md; --data DIR)")
    import torch

    torch.set_num_threads(2)
    {"tweets": tweets, "speed": speed}[args.experiment](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
