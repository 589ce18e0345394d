"""Which audio features and classifier carry valence? A reproducible measurement on RAVDESS and 4Q music.

  python scripts/explore_audio_features.py extract --size tiny.en     # caches features (minutes on 2 cores)
  python scripts/explore_audio_features.py extract --size base
  python scripts/explore_audio_features.py evaluate

Splits: RAVDESS speaker-independent (train actors 1-18, test 19-24); 4Q music held out by song, 20 % stratified by
quadrant with seed 0. Music is measured on whole 30 s clips and on 4 s crops (what the live pipeline scores).
Features are cached under models.assets.cache_dir() / "audio-explore", never in the repository.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.assets import cache_dir  # noqa: E402
from stream.media import SAMPLE_RATE  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CACHE = cache_dir() / "audio-explore"
CROP_SECONDS = 4.0
CROP_OFFSETS = (1.0, 5.0, 9.0, 13.0, 17.0, 21.0, 25.0)
POSITIVE_EMOTIONS = {"happy", "calm"}
NEGATIVE_EMOTIONS = {"angry", "sad", "fearful", "disgust"}


def read_labels(name: str) -> list[dict[str, str]]:
    """Rows whose audio file exists (music4q lists one file, Q4/MT0007107079.opus, that is not there)."""
    with open(DATA / name / "labels.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if (DATA / name / r["path"]).is_file()]


def pooled(states: np.ndarray) -> dict[str, np.ndarray]:
    return {"mean": states.mean(0), "std": states.std(0), "max": states.max(0)}


def extract(size: str) -> None:
    from faster_whisper import decode_audio

    from models.audio import AudioEmbedder, prosody_features
    from models.whisper import load_whisper

    CACHE.mkdir(parents=True, exist_ok=True)
    embedder = AudioEmbedder(load_whisper(size, "cpu", cpu_threads=2), whisper_size=size)

    out = CACHE / f"ravdess_{size}.npz"
    if not out.exists():
        rows = read_labels("ravdess")
        feats: dict[str, list[np.ndarray]] = {"mean": [], "std": [], "max": [], "prosody": []}
        t0 = time.perf_counter()
        for i, row in enumerate(rows):
            audio = decode_audio(str(DATA / "ravdess" / row["path"]), sampling_rate=SAMPLE_RATE)
            states = embedder.encoder_states([audio])[0]
            for k, v in pooled(states).items():
                feats[k].append(v)
            if size == "tiny.en":  # prosody does not depend on the Whisper size: computed once, borrowed by base
                feats["prosody"].append(prosody_features(audio))
            if i % 200 == 0:
                print(f"ravdess {size} {i}/{len(rows)} {time.perf_counter() - t0:.0f}s", flush=True)
        np.savez(out, **{k: np.stack(v) for k, v in feats.items() if v})

    out = CACHE / f"music4q_{size}.npz"
    if not out.exists():
        rows = read_labels("music4q")
        whole: dict[str, list[np.ndarray]] = {"mean": [], "std": [], "max": [], "prosody": []}
        crops: dict[str, list[np.ndarray]] = {"mean": [], "std": [], "max": [], "prosody": []}
        t0 = time.perf_counter()
        for i, row in enumerate(rows):
            audio = decode_audio(str(DATA / "music4q" / row["path"]), sampling_rate=SAMPLE_RATE)
            if size == "tiny.en":  # the whole-clip encode costs 0.3 s (tiny) / 0.7 s (base) per clip
                for k, v in pooled(embedder.encoder_states([audio])[0]).items():
                    whole[k].append(v)
                whole["prosody"].append(prosody_features(audio))
            pieces = [audio[int(o * SAMPLE_RATE):int((o + CROP_SECONDS) * SAMPLE_RATE)] for o in CROP_OFFSETS]
            pieces = [np.pad(p, (0, int(CROP_SECONDS * SAMPLE_RATE) - len(p))) for p in pieces]
            for piece, states in zip(pieces, embedder.encoder_states(pieces)):
                for k, v in pooled(states).items():
                    crops[k].append(v)
                if size == "tiny.en":
                    crops["prosody"].append(prosody_features(piece))
            if i % 50 == 0:
                print(f"music4q {size} {i}/{len(rows)} {time.perf_counter() - t0:.0f}s", flush=True)
        arrays = {f"crop_{k}": np.stack(v).reshape(len(rows), len(CROP_OFFSETS), -1) for k, v in crops.items() if v}
        arrays.update({f"whole_{k}": np.stack(v) for k, v in whole.items() if v})
        np.savez(out, **arrays)


def load_cached(size: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(ravdess, music4q) feature arrays; sizes other than tiny.en borrow tiny.en's prosody arrays."""
    rav, mus = dict(np.load(CACHE / f"ravdess_{size}.npz")), dict(np.load(CACHE / f"music4q_{size}.npz"))
    if "prosody" not in rav:
        tiny_rav, tiny_mus = dict(np.load(CACHE / "ravdess_tiny.en.npz")), dict(np.load(CACHE / "music4q_tiny.en.npz"))
        rav["prosody"] = tiny_rav["prosody"]
        mus["crop_prosody"] = tiny_mus["crop_prosody"]
    return rav, mus


def macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, p, average="macro"))


def make_classifier(kind: str, c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000, class_weight="balanced"))
    return make_pipeline(StandardScaler(), MLPClassifier((128,), alpha=c, max_iter=500, early_stopping=True,
                                                         random_state=0))


def feature_sets(d: dict[str, np.ndarray], prefix: str = "") -> dict[str, np.ndarray]:
    g = lambda k: d[prefix + k]  # noqa: E731
    return {
        "prosody": g("prosody"),
        "mean": g("mean"),
        "mean+std": np.concatenate([g("mean"), g("std")], -1),
        "mean+std+max": np.concatenate([g("mean"), g("std"), g("max")], -1),
        "mean+prosody": np.concatenate([g("mean"), g("prosody")], -1),
        "mean+std+prosody": np.concatenate([g("mean"), g("std"), g("prosody")], -1),
    }


def music_split(rows: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(rows))
    quadrant = [r["quadrant"] for r in rows]
    train, test = train_test_split(idx, test_size=0.2, stratify=quadrant, random_state=0)
    return np.sort(train), np.sort(test)


def pick_c(kind: str, cs: list[float], X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """C by grouped 4-fold CV on the training part only (groups: actors or songs)."""
    from sklearn.model_selection import GroupKFold

    best, best_c = -1.0, cs[0]
    for c in cs:
        scores = []
        for tr, va in GroupKFold(4).split(X, y, groups):
            clf = make_classifier(kind, c).fit(X[tr], y[tr])
            scores.append(macro_f1(y[va], clf.predict(X[va])))
        if np.mean(scores) > best:
            best, best_c = float(np.mean(scores)), c
    return best_c


def evaluate(sizes: list[str], kinds: list[str]) -> None:
    cs = {"logreg": [0.003, 0.01, 0.03, 0.1, 0.3, 1.0], "mlp": [1e-3, 1e-2, 1e-1, 1.0]}
    rav_rows = read_labels("ravdess")
    actor = np.array([int(r["actor"]) for r in rav_rows])
    emotion = np.array([r["emotion"] for r in rav_rows])
    rav_train, rav_test = actor <= 18, actor >= 19
    val_mask = np.isin(emotion, list(POSITIVE_EMOTIONS | NEGATIVE_EMOTIONS))
    y_val = np.isin(emotion, list(POSITIVE_EMOTIONS)).astype(int)

    mus_rows = read_labels("music4q")
    m_train, m_test = music_split(mus_rows)
    m_val = np.array([r["valence"] == "positive" for r in mus_rows], dtype=int)
    m_quad = np.array([r["quadrant"] for r in mus_rows])
    n_crops = len(CROP_OFFSETS)

    loaded = {s: load_cached(s) for s in sizes if (CACHE / f"music4q_{s}.npz").exists()}
    if len(loaded) == 2:
        a, b = (loaded[s] for s in sizes)
        loaded["+".join(sizes)] = tuple(  # type: ignore[assignment]
            {k: x[k] if k.endswith("prosody") else np.concatenate([x[k], y[k]], -1) for k in x if k in y}
            for x, y in zip(a, b))

    for size, (rav, mus) in loaded.items():
        print(f"\n=== {size} ===")
        for kind in kinds:
            for name, X in feature_sets(rav).items():
                tr, te = rav_train & val_mask, rav_test & val_mask
                c = pick_c(kind, cs[kind], X[tr], y_val[tr], actor[tr])
                clf = make_classifier(kind, c).fit(X[tr], y_val[tr])
                f1 = macro_f1(y_val[te], clf.predict(X[te]))
                clf8 = make_classifier(kind, c).fit(X[rav_train], emotion[rav_train])
                acc8 = float(np.mean(clf8.predict(X[rav_test]) == emotion[rav_test]))
                print(f"ravdess {kind:6s} {name:18s} C={c:<6} valence macroF1={f1:.3f}  8-emotion acc={acc8:.3f}",
                      flush=True)
            crop_sets = feature_sets(mus, "crop_")
            whole_sets = feature_sets(mus, "whole_") if "whole_mean" in mus else {}
            for name, Xc in crop_sets.items():
                song = np.repeat(np.arange(len(mus_rows)), n_crops)
                Xf = Xc.reshape(len(mus_rows) * n_crops, -1)
                tr = np.isin(song, m_train)
                te = np.isin(song, m_test)
                yv = np.repeat(m_val, n_crops)
                yq = np.repeat(m_quad, n_crops)
                c = pick_c(kind, cs[kind], Xf[tr], yv[tr], song[tr])
                clf = make_classifier(kind, c).fit(Xf[tr], yv[tr])
                crop_acc = float(np.mean(clf.predict(Xf[te]) == yv[te]))
                song_p = clf.predict_proba(Xf[te])[:, 1].reshape(-1, n_crops).mean(1)
                song_acc = float(np.mean((song_p > 0.5) == m_val[m_test]))
                clfq = make_classifier(kind, c).fit(Xf[tr], yq[tr])
                quad_crop = float(np.mean(clfq.predict(Xf[te]) == yq[te]))
                line = (f"music4q {kind:6s} {name:18s} C={c:<6} crops: valence={crop_acc:.3f} quadrant={quad_crop:.3f}"
                        f" | song (mean of crop P)={song_acc:.3f}")
                if name in whole_sets:
                    Xw = whole_sets[name]
                    cw = pick_c(kind, cs[kind], Xw[m_train], m_val[m_train], m_train)
                    w = make_classifier(kind, cw).fit(Xw[m_train], m_val[m_train])
                    wq = make_classifier(kind, cw).fit(Xw[m_train], m_quad[m_train])
                    line += (f" | whole 30 s (C={cw}): valence={np.mean(w.predict(Xw[m_test]) == m_val[m_test]):.3f}"
                             f" quadrant={np.mean(wq.predict(Xw[m_test]) == m_quad[m_test]):.3f}")
                print(line, flush=True)


def combined(size: str, feature: str, c: float) -> None:
    """One head for speech and music against two: each test set scored by both."""
    rav, mus = load_cached(size)
    rav_rows, mus_rows = read_labels("ravdess"), read_labels("music4q")
    actor = np.array([int(r["actor"]) for r in rav_rows])
    emotion = np.array([r["emotion"] for r in rav_rows])
    keep = np.isin(emotion, list(POSITIVE_EMOTIONS | NEGATIVE_EMOTIONS))
    y_r = np.isin(emotion, list(POSITIVE_EMOTIONS)).astype(int)
    Xr = feature_sets(rav)[feature]
    n_crops = len(CROP_OFFSETS)
    Xm = feature_sets(mus, "crop_")[feature].reshape(len(mus_rows) * n_crops, -1)
    song = np.repeat(np.arange(len(mus_rows)), n_crops)
    y_m = np.repeat(np.array([r["valence"] == "positive" for r in mus_rows], dtype=int), n_crops)
    m_train, m_test = music_split(mus_rows)
    r_tr, r_te = keep & (actor <= 18), keep & (actor >= 19)
    mtr, mte = np.isin(song, m_train), np.isin(song, m_test)
    heads = {
        "speech-only": make_classifier("logreg", c).fit(Xr[r_tr], y_r[r_tr]),
        "music-only": make_classifier("logreg", c).fit(Xm[mtr], y_m[mtr]),
        "combined": make_classifier("logreg", c).fit(np.r_[Xr[r_tr], Xm[mtr]], np.r_[y_r[r_tr], y_m[mtr]]),
    }
    for name, clf in heads.items():
        f1 = macro_f1(y_r[r_te], clf.predict(Xr[r_te]))
        acc = float(np.mean(clf.predict(Xm[mte]) == y_m[mte]))
        print(f"{size} {feature} C={c} {name:12s} ravdess valence macroF1={f1:.3f}  music 4 s crops valence acc={acc:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("extract")
    ex.add_argument("--size", default="tiny.en", choices=["tiny.en", "base"])
    ev = sub.add_parser("evaluate")
    ev.add_argument("--sizes", nargs="+", default=["tiny.en", "base"])
    ev.add_argument("--kinds", nargs="+", default=["logreg"], choices=["logreg", "mlp"])
    co = sub.add_parser("combined")
    co.add_argument("--size", default="tiny.en")
    co.add_argument("--feature", default="mean+std+prosody")
    co.add_argument("--c", type=float, default=0.03)
    args = ap.parse_args()
    if args.cmd == "extract":
        extract(args.size)
    elif args.cmd == "evaluate":
        evaluate(args.sizes, args.kinds)
    else:
        combined(args.size, args.feature, args.c)


if __name__ == "__main__":
    main()
