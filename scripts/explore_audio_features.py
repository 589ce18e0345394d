"""Which audio features and classifier carry valence? A reproducible measurement on RAVDESS and 4Q music.

  python scripts/explore_audio_features.py extract      # caches features of every encoder depth (~30 min, 2 cores)
  python scripts/explore_audio_features.py evaluate     # logistic regression on each feature set
  python scripts/explore_audio_features.py evaluate --kinds svm mlp --names tiny.en_enc3:mean+std+prosody
  python scripts/explore_audio_features.py one-head-or-two   # one speech+music head against a head per domain

Splits: RAVDESS speaker-independent (train actors 1-18, test 19-24; and, because six test actors make a noisy
number, also 4 folds of 6 actors each); 4Q music held out by song, 20 % stratified by quadrant with seed 0, scored on
4 s crops (what the live pipeline scores: seven per song, at 1, 5, ..., 25 s) and per song (mean of its crops' P).
Features are cached under models.assets.cache_dir() / "audio-explore", never in the repository.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from media import SAMPLE_RATE  # noqa: E402
from models.assets import cache_dir  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CACHE = cache_dir() / "audio-explore"
CROP_SECONDS = 4.0
CROP_OFFSETS = (1.0, 5.0, 9.0, 13.0, 17.0, 21.0, 25.0)
POSITIVE_EMOTIONS = {"happy", "calm"}
NEGATIVE_EMOTIONS = {"angry", "sad", "fearful", "disgust"}
# (Whisper size, encoder blocks run): tiny.en has 4 blocks, base 6.
CONFIGS = [("tiny.en", 1), ("tiny.en", 2), ("tiny.en", 3), ("tiny.en", 4),
           ("base", 2), ("base", 3), ("base", 4), ("base", 5), ("base", 6)]
C_GRID = [0.003, 0.01, 0.03, 0.1, 0.3]


def read_labels(name: str) -> list[dict[str, str]]:
    """Rows whose audio file exists (music4q lists one file, Q4/MT0007107079.opus, that is not there)."""
    with open(DATA / name / "labels.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if (DATA / name / r["path"]).is_file()]


def cache_file(dataset: str, config: tuple[str, int] | None) -> Path:
    return CACHE / (f"{dataset}_prosody.npz" if config is None else f"{dataset}_{config[0]}_enc{config[1]}.npz")


def pieces_of(dataset: str, audio: np.ndarray) -> list[np.ndarray]:
    if dataset == "ravdess":
        return [audio]
    size = int(CROP_SECONDS * SAMPLE_RATE)
    crops = [audio[int(o * SAMPLE_RATE):int(o * SAMPLE_RATE) + size] for o in CROP_OFFSETS]
    return [np.pad(c, (0, size - len(c))) for c in crops]


def extract(configs: list[tuple[str, int]]) -> None:
    """For each clip (RAVDESS) or 4 s crop (music): mean and std of encoder states per config, and prosody."""
    from faster_whisper import decode_audio

    from models.audio import AudioEmbedder, prosody_features

    CACHE.mkdir(parents=True, exist_ok=True)
    for dataset in ("ravdess", "music4q"):
        todo = [c for c in configs if not cache_file(dataset, c).exists()]
        want_prosody = not cache_file(dataset, None).exists()
        if not todo and not want_prosody:
            continue
        embedders = {c: AudioEmbedder(c[0], encoder_blocks=c[1], device="cpu") for c in todo}
        stats: dict[tuple[str, int], dict[str, list[np.ndarray]]] = {c: {"mean": [], "std": []} for c in todo}
        prosody: list[np.ndarray] = []
        seconds = {c: 0.0 for c in todo}
        rows = read_labels(dataset)
        t0 = time.perf_counter()
        for i, row in enumerate(rows):
            pieces = pieces_of(dataset, decode_audio(str(DATA / dataset / row["path"]), sampling_rate=SAMPLE_RATE))
            for c, embedder in embedders.items():
                t = time.perf_counter()
                states = embedder.encoder_states(pieces)
                seconds[c] += time.perf_counter() - t
                stats[c]["mean"].append(np.stack([s.mean(0) for s in states]))
                stats[c]["std"].append(np.stack([s.std(0) for s in states]))
            if want_prosody:
                prosody.append(np.stack([prosody_features(p) for p in pieces]))
            if i % 100 == 0:
                print(f"{dataset} {i}/{len(rows)} {time.perf_counter() - t0:.0f}s", flush=True)
        for c in todo:
            np.savez(cache_file(dataset, c), mean=np.stack(stats[c]["mean"]), std=np.stack(stats[c]["std"]))
            print(f"{dataset} {c}: encoder {1000 * seconds[c] / len(rows):.1f} ms per clip "
                  f"({len(pieces_of(dataset, np.zeros(30 * SAMPLE_RATE, np.float32)))} pieces)")
        if want_prosody:
            np.savez(cache_file(dataset, None), prosody=np.stack(prosody))


def macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, p, average="macro"))


def make_classifier(kind: str, c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if kind == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000, class_weight="balanced"))
    if kind == "svm":
        return make_pipeline(StandardScaler(), SVC(C=c, class_weight="balanced", probability=True, random_state=0))
    return make_pipeline(StandardScaler(), MLPClassifier((128,), alpha=c, max_iter=500, early_stopping=True,
                                                         random_state=0))


GRIDS = {"logreg": C_GRID, "svm": [0.3, 1.0, 3.0], "mlp": [0.1, 1.0, 3.0]}


class Data:
    """Labels, splits and cached features of both corpora, flattened to one row per clip or crop."""

    def __init__(self) -> None:
        rows = read_labels("ravdess")
        self.actor = np.array([int(r["actor"]) for r in rows])
        self.emotion = np.array([r["emotion"] for r in rows])
        self.keep = np.isin(self.emotion, list(POSITIVE_EMOTIONS | NEGATIVE_EMOTIONS))
        self.y_r = np.isin(self.emotion, list(POSITIVE_EMOTIONS)).astype(int)
        mrows = read_labels("music4q")
        k = len(CROP_OFFSETS)
        self.n_songs = len(mrows)
        self.song = np.repeat(np.arange(len(mrows)), k)
        self.y_m = np.repeat(np.array([r["valence"] == "positive" for r in mrows], dtype=int), k)
        self.quadrant = np.repeat(np.array([r["quadrant"] for r in mrows]), k)
        from sklearn.model_selection import train_test_split

        train, test = train_test_split(np.arange(len(mrows)), test_size=0.2, random_state=0,
                                       stratify=[r["quadrant"] for r in mrows])
        self.m_train, self.m_test = np.isin(self.song, train), np.isin(self.song, test)

    @staticmethod
    def features(dataset: str, name: str) -> np.ndarray:
        """name: 'prosody', or '<size>_enc<n>:<parts>' with parts like mean, mean+std, mean+std+prosody."""
        prosody = np.load(cache_file(dataset, None))["prosody"]
        if name == "prosody":
            parts = [prosody]
        else:
            config, recipe = name.split(":")
            size, layers = config.rsplit("_enc", 1)
            stats = np.load(cache_file(dataset, (size, int(layers))))
            parts = [prosody if p == "prosody" else stats[p] for p in recipe.split("+")]
        X = np.concatenate(parts, axis=-1)
        return X.reshape(-1, X.shape[-1])


def grouped_score(kind: str, c: float, X: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = 4) -> float:
    from sklearn.model_selection import GroupKFold

    scores = [macro_f1(y[va], make_classifier(kind, c).fit(X[tr], y[tr]).predict(X[va]))
              for tr, va in GroupKFold(folds).split(X, y, groups)]
    return float(np.mean(scores))


def pick_c(kind: str, X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """C by grouped 4-fold CV on the training part only (groups: actors or songs)."""
    return max(GRIDS[kind], key=lambda c: grouped_score(kind, c, X, y, groups))


def score_ravdess(d: Data, X: np.ndarray, kind: str) -> str:
    keep, y = d.keep, d.y_r
    tr, te = keep & (d.actor <= 18), keep & (d.actor >= 19)
    c = pick_c(kind, X[tr], y[tr], d.actor[tr])
    f1 = macro_f1(y[te], make_classifier(kind, c).fit(X[tr], y[tr]).predict(X[te]))
    cv = grouped_score(kind, c, X[keep], y[keep], (d.actor[keep] - 1) // 6)  # 4 folds of 6 actors
    emo_tr, emo_te = d.actor <= 18, d.actor >= 19
    acc8 = float(np.mean(make_classifier(kind, c).fit(X[emo_tr], d.emotion[emo_tr]).predict(X[emo_te])
                         == d.emotion[emo_te]))
    return f"C={c:<6} valence macroF1 test={f1:.3f} 4fold={cv:.3f} | 8-emotion acc={acc8:.3f}"


def score_music(d: Data, X: np.ndarray, kind: str) -> str:
    tr, te = d.m_train, d.m_test
    c = pick_c(kind, X[tr], d.y_m[tr], d.song[tr])
    clf = make_classifier(kind, c).fit(X[tr], d.y_m[tr])
    crop_acc = float(np.mean(clf.predict(X[te]) == d.y_m[te]))
    p = clf.predict_proba(X[te])[:, 1].reshape(-1, len(CROP_OFFSETS)).mean(1)
    song_acc = float(np.mean((p > 0.5) == d.y_m[te][::len(CROP_OFFSETS)]))
    quad = make_classifier(kind, c).fit(X[tr], d.quadrant[tr])
    quad_crop = float(np.mean(quad.predict(X[te]) == d.quadrant[te]))
    qp = quad.predict_proba(X[te]).reshape(-1, len(CROP_OFFSETS), 4).mean(1)
    quad_song = float(np.mean(quad.classes_[qp.argmax(1)] == d.quadrant[te][::len(CROP_OFFSETS)]))
    return (f"C={c:<6} 4 s crops: valence={crop_acc:.3f} quadrant={quad_crop:.3f} | "
            f"per song: valence={song_acc:.3f} quadrant={quad_song:.3f}")


def available(dataset: str, name: str) -> bool:
    if not cache_file(dataset, None).exists():
        return False
    if name == "prosody":
        return True
    size, layers = name.split(":")[0].rsplit("_enc", 1)
    return cache_file(dataset, (size, int(layers))).exists()


def evaluate(names: list[str], kinds: list[str], datasets: list[str]) -> None:
    d = Data()
    for kind in kinds:
        for name in names:
            for dataset in datasets:
                if not available(dataset, name):
                    continue
                X = d.features(dataset, name)
                line = score_ravdess(d, X, kind) if dataset == "ravdess" else score_music(d, X, kind)
                print(f"{dataset:8s} {kind:6s} {name:32s} {line}", flush=True)


def one_head_or_two(name: str, c: float) -> None:
    """One head trained on speech and music together against a head per domain, each scored on both test sets."""
    d = Data()
    Xr, Xm = d.features("ravdess", name), d.features("music4q", name)
    r_tr, r_te = d.keep & (d.actor <= 18), d.keep & (d.actor >= 19)
    heads = {
        "speech only": make_classifier("logreg", c).fit(Xr[r_tr], d.y_r[r_tr]),
        "music only": make_classifier("logreg", c).fit(Xm[d.m_train], d.y_m[d.m_train]),
        "combined": make_classifier("logreg", c).fit(np.r_[Xr[r_tr], Xm[d.m_train]],
                                                     np.r_[d.y_r[r_tr], d.y_m[d.m_train]]),
    }
    for head_name, clf in heads.items():
        f1 = macro_f1(d.y_r[r_te], clf.predict(Xr[r_te]))
        acc = float(np.mean(clf.predict(Xm[d.m_test]) == d.y_m[d.m_test]))
        p = clf.predict_proba(Xm[d.m_test])[:, 1].reshape(-1, len(CROP_OFFSETS)).mean(1)
        song = float(np.mean((p > 0.5) == d.y_m[d.m_test][::len(CROP_OFFSETS)]))
        print(f"{name} C={c} {head_name:12s} ravdess valence macroF1={f1:.3f} | music valence: 4 s crops={acc:.3f} "
              f"per song={song:.3f}", flush=True)


def main() -> None:
    warnings.filterwarnings("ignore", category=UserWarning)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("extract")
    ex.add_argument("--configs", nargs="+", default=[f"{s}_enc{n}" for s, n in CONFIGS])
    ev = sub.add_parser("evaluate")
    ev.add_argument("--names", nargs="+", default=["prosody"] + [
        f"{s}_enc{n}:{r}" for s, n in CONFIGS for r in ("mean+std", "mean+std+prosody")])
    ev.add_argument("--kinds", nargs="+", default=["logreg"], choices=list(GRIDS))
    ev.add_argument("--datasets", nargs="+", default=["ravdess", "music4q"])
    co = sub.add_parser("one-head-or-two")
    co.add_argument("--name", default="tiny.en_enc3:mean+std+prosody")
    co.add_argument("--c", type=float, default=0.01)
    args = ap.parse_args()
    if args.cmd == "extract":
        extract([(c.rsplit("_enc", 1)[0], int(c.rsplit("_enc", 1)[1])) for c in args.configs])
    elif args.cmd == "evaluate":
        evaluate(args.names, args.kinds, args.datasets)
    else:
        one_head_or_two(args.name, args.c)


if __name__ == "__main__":
    main()
