"""Manifests, the embedding cache, training, evaluation and learned fusion, on small real subsets of ../shared/data."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from models.base import ModalityScore
from models.fusion import FusionParams, fuse
from models.heads import Head
from testkit.data import DATA, REQUIRE_DATA, need_data
from training.clips import LiveClipAnalyzer
from training.embed_cache import EmbeddingCache, text_key
from training.fusion_fit import cross_validated_fusion, fit_fusion
from training.manifest import ManifestError, read_manifest, write_manifest
from training.metrics import binary_ece, classification_summary

# under VIDSENT_REQUIRE_DATA=1 the whole run stops before any test when the data is absent (conftest)
needs_data = pytest.mark.skipif(not DATA.is_dir() and not REQUIRE_DATA, reason="../shared/data is absent")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------------- manifests
@needs_data
def test_manifest_paths_are_relative_to_the_manifest_and_prototype_formats_work(tmp_path: Path):
    rav = os.path.relpath(DATA / "ravdess" / "Actor_01" / "03-01-03-01-01-01-01.flac", tmp_path)
    audio = read_manifest(write_csv(tmp_path / "a.csv", f"file_path,sentiment\n{rav},1\n{rav},Negative\n"), "audio")
    assert [it.label for it in audio.items] == ["positive", "negative"]
    assert audio.items[0].path == (DATA / "ravdess" / "Actor_01" / "03-01-03-01-01-01-01.flac").resolve()
    assert audio.classes == ["negative", "positive"]
    img = os.path.relpath(DATA / "oasis" / "images" / "Acorns_1.jpg", tmp_path)
    assert read_manifest(write_csv(tmp_path / "i.csv", f"image,label\n{img},0\n"), "visual").items[0].label == \
        "negative"
    text = read_manifest(write_csv(tmp_path / "t.csv", "text,label,split\nhello,neutral,train\nbye,positive,dev\n"),
                         "text")
    assert text.classes == ["negative", "neutral", "positive"] and text.items[1].split == "val"


@needs_data
def test_audio_manifest_parts_and_weights(tmp_path: Path):
    from training.embed_cache import audio_part, embed_manifest, load_audio

    song = os.path.relpath(DATA / "speech" / "two_cities.flac", tmp_path)
    manifest = read_manifest(write_csv(tmp_path / "a.csv", f"path,label,start,end,weight\n{song},positive,0,4,2\n"
                                       f"{song},negative,4,8,\n{song},positive,,,\n"), "audio")
    first, second, whole = manifest.items
    assert (first.start, first.end, first.weight) == (0.0, 4.0, 2.0) and second.weight == 1.0
    assert first.ref.endswith("@0-4") and whole.ref == song and whole.start is None
    audio = load_audio(whole.path)
    assert len(audio_part(audio, 0.0, 4.0)) == 4 * 16000 and len(audio_part(audio, 40.0, None)) == len(audio) - 640000

    class Recording:
        model_id = "recording"

        def __init__(self):
            self.lengths = []

        def embed(self, clips):
            self.lengths += [len(c) for c in clips]
            return np.array([[len(c), float(np.sum(c))] for c in clips], dtype=np.float32)

    recorder = Recording()
    X = embed_manifest(manifest, recorder, EmbeddingCache(tmp_path / "cache"), progress=False)
    assert recorder.lengths == [64000, 64000, len(audio)]  # the parts are different items of the cache
    assert X[0, 1] != X[1, 1]
    for body, message in ((f"path,label,start,end\n{song},positive,5,3\n", "end 3 s is not after start 5 s"),
                          (f"path,label,start\n{song},positive,soon\n", "start 'soon' is not a number"),
                          (f"path,label,weight\n{song},positive,0\n", "bad weight '0'")):
        with pytest.raises(ManifestError, match=f"row 2: {message}"):
            read_manifest(write_csv(tmp_path / "bad.csv", body), "audio")


@pytest.mark.models
@needs_data
def test_a_long_recording_is_evaluated_in_live_windows(tmp_path: Path):
    from models.audio import AudioEmbedder
    from models.heads import load_head
    from training.embed_cache import load_audio
    from training.evaluate import evaluate_audio, live_windows

    head = load_head("audio")
    assert head is not None, "the shipped audio head is missing from models/default_heads"
    speech = os.path.relpath(DATA / "speech" / "two_cities.flac", tmp_path)
    manifest = read_manifest(write_csv(tmp_path / "a.csv", f"path,label\n{speech},positive\n"), "audio")
    row = evaluate_audio(manifest, head, "cpu", EmbeddingCache(tmp_path / "cache"))[0]
    windows = live_windows(load_audio(DATA / "speech" / "two_cities.flac"))
    assert len(windows) == 22  # 44.3 s: 21 windows of 4 s every 2 s, then one ending at the end
    expected = head.predict_proba(AudioEmbedder.for_head(head, "cpu").embed(windows)).mean(axis=0) @ head.valence
    assert row.scores[0] == pytest.approx(float(expected), abs=2e-3)


@pytest.mark.models
@needs_data
def test_audio_evaluation_gives_the_scores_of_the_live_pipeline(tmp_path: Path):
    """The faster audio path (cached embeddings, no ASR) scores each recording as `vidsent analyze` does."""
    from engine import Engine, PipelineConfig, analyze_file
    from models.heads import load_head
    from training.evaluate import evaluate_audio

    ravdess = sorted((DATA / "ravdess").rglob("*.flac"))
    short = next(p for p in ravdess if audio_length(p) < 3.8)
    longer = next(p for p in ravdess if audio_length(p) > 4.5)
    song = sorted((DATA / "music4q").rglob("*.opus"))[0]
    clips = [short, longer, DATA / "speech" / "beckett.flac", song]
    manifest = read_manifest(write_manifest(tmp_path / "a.csv", [{"path": str(p), "label": "positive"} for p in clips],
                                            ["path", "label"]), "audio")
    row = evaluate_audio(manifest, load_head("audio"), "cpu", EmbeddingCache(tmp_path / "cache"))[0]
    engine = Engine(asr="tiny.en", device="cpu")
    try:
        live = [asyncio.run(analyze_file(p, engine, PipelineConfig())) for p in clips]
    finally:
        engine.close()
    assert [len(r["windows"]) for r in live][:2] == [1, 2]
    for path, score, result in zip(clips, row.scores, live):
        assert result["modalities"]["audio"]["available"], path
        assert score == pytest.approx(result["modalities"]["audio"]["score"], abs=0.01), path.name


def audio_length(path: Path) -> float:
    from training.embed_cache import audio_seconds

    return audio_seconds(path)


@pytest.mark.parametrize("body, message", [
    ("path,label\nmissing.flac,positive\n", r"row 2: file 'missing.flac' does not exist"),
    ("text,label\ngood,positive\nbad,happyish\n", r"row 3: bad label 'happyish'"),
    ("text,label\ngood,positive\n\nfine,negative\n", r"row 3 is empty"),
    ("text,label\ngood,positive\n,,\n", r"row 3 is empty"),
    ("text,label\ngood,positive\n  ,negative\n", r"row 3: the text is empty"),
    ("text,label\ngood,positive,extra\n", r"row 2 has 3 fields, the header has 2"),
    ("text,label\ngood,\n", r"row 2: the label is empty"),
    ("words,label\ngood,positive\n", r"needs a 'text' column"),
    ("text,label\n", r"header but no rows"),
])
def test_bad_manifests_give_errors_naming_the_row(tmp_path: Path, body: str, message: str):
    modality = "audio" if body.startswith("path") else "text"
    path = write_csv(tmp_path / "m.csv", body)
    with pytest.raises(ManifestError, match=message) as info:
        read_manifest(path, modality)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_item_weights_shift_what_a_head_learns(kind: str):
    from training.train import TrainConfig, fit_head

    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4)).astype(np.float32)
    y = (X[:, 0] + rng.normal(scale=1.5, size=600) > 0).astype(np.int64)  # overlapping classes
    config = TrainConfig(kind=kind, loss="plain", max_epochs=40, patience=40)
    plain = fit_head(X[:400], y[:400], X[400:], y[400:], ["negative", "positive"], config)
    weights = np.where(y == 1, 5.0, 1.0)
    leaning = fit_head(X[:400], y[:400], X[400:], y[400:], ["negative", "positive"], config,
                       w_train=weights[:400], w_val=weights[400:])
    # the positive items count five times: the head calls more items positive, from the same data
    assert leaning.positivity(X).mean() > plain.positivity(X).mean() + 0.1


def test_an_mlp_ensemble_is_stored_as_one_mlp_with_the_mean_logits():
    from models.heads import head_from_arrays
    from training.train import TrainConfig, fit_head, merge_mlps

    rng = np.random.default_rng(1)
    sizes = [(6, 5), (4, 6), (3, 4)]
    members = [[(rng.normal(size=s).astype(np.float32), rng.normal(size=s[0]).astype(np.float32)) for s in sizes]
               for _ in range(3)]
    mean, scale = np.zeros(5, np.float32), np.ones(5, np.float32)
    X = rng.normal(size=(20, 5)).astype(np.float32)
    classes = ["negative", "neutral", "positive"]
    expected = np.mean([head_from_arrays("m", classes, m, mean, scale).logits(X) for m in members], axis=0)
    merged = head_from_arrays("m", classes, merge_mlps(members), mean, scale)
    np.testing.assert_allclose(merged.logits(X), expected, rtol=1e-5, atol=1e-5)

    X = rng.normal(size=(300, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    head = fit_head(X[:200], y[:200], X[200:], y[200:], ["negative", "positive"],
                    TrainConfig(kind="mlp", ensemble=3, max_epochs=30))
    assert len(head.card["training"]["ensemble_best_epochs"]) == 3
    assert head.params["layer0.weight"].shape == (3 * 256, 4) and head.params["layer2.weight"].shape == (2, 3 * 128)
    assert (head.predict_proba(X[200:]).argmax(axis=1) == y[200:]).mean() > 0.9


# ------------------------------------------------------------------------------------------------- cache
class CountingEmbedder:
    """A real MiniLM embedder that counts what it is asked to embed and can be made to fail mid-way."""

    def __init__(self, fail_after_calls: int | None = None):
        from models.text import TextEmbedder

        self.inner = TextEmbedder("cpu")
        self.model_id = self.inner.model_id
        self.calls = 0
        self.items = 0
        self.fail_after_calls = fail_after_calls

    def embed(self, texts: list[str]) -> np.ndarray:
        if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
            raise KeyboardInterrupt("interrupted")
        self.calls += 1
        self.items += len(texts)
        return self.inner.embed(texts)


@pytest.mark.models
@needs_data
def test_cache_resumes_after_an_interruption_without_recomputing(tmp_path: Path, meld_rows):
    texts = [r["Utterance"] for r in meld_rows[:200]] + [meld_rows[0]["Utterance"]]  # one duplicate
    keys = [text_key(t) for t in texts]
    cache = EmbeddingCache(tmp_path / "cache")
    first = CountingEmbedder(fail_after_calls=3)
    with pytest.raises(KeyboardInterrupt):
        cache.get_or_compute(keys, lambda idx: first.embed([texts[i] for i in idx]), modality="text",
                             model_id=first.model_id, batch_size=32, save_every=32, progress=False)
    assert first.items == 96
    second = CountingEmbedder()
    second.inner = first.inner
    X = cache.get_or_compute(keys, lambda idx: second.embed([texts[i] for i in idx]), modality="text",
                             model_id=second.model_id, batch_size=32, save_every=32, progress=False)
    distinct = len(set(texts))  # MELD repeats short utterances; each distinct text is embedded once
    assert second.items == distinct - 96, "only the items not saved before the interruption are embedded again"
    assert X.shape == (201, 384) and np.array_equal(X[0], X[200])
    assert np.allclose(X, first.inner.embed(texts), atol=1e-5)
    third = CountingEmbedder()
    third.inner = first.inner
    again = cache.get_or_compute(keys, lambda idx: third.embed([texts[i] for i in idx]), modality="text",
                                 model_id=third.model_id, progress=False)
    assert third.calls == 0 and np.array_equal(again, X)
    assert len(list(cache.folder("text", first.model_id).glob("part-*.parquet"))) == 1, "parts are compacted"
    other = cache.get_or_compute(keys[:3], lambda idx: np.zeros((len(idx), 384)), modality="text",
                                 model_id="another-model", progress=False)
    assert not other.any(), "another model id never reads these embeddings"


# ------------------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def meld_rows() -> list[dict]:
    need_data("meld")
    with open(DATA / "meld" / "train_sent_emo.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def balanced_meld(rows: list[dict], per_class: int, offset: int = 0) -> list[dict]:
    out = []
    for label in ("negative", "positive"):
        chosen = [r for r in rows if r["Sentiment"] == label][offset:offset + per_class]
        out += [{"text": r["Utterance"], "label": label} for r in chosen]
    return out


@pytest.mark.models
@needs_data
@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_train_then_evaluate_a_text_head_well_above_chance(tmp_path: Path, meld_rows, kind: str, monkeypatch):
    from training.evaluate import add_evaluate_arguments, main_evaluate
    from training.train import add_train_arguments, main_train

    monkeypatch.setenv("VIDSENT_CACHE", str(tmp_path / "cache"))
    train_rows = balanced_meld(meld_rows, 200)
    test_rows = balanced_meld(meld_rows, 100, offset=1000)
    train_csv = write_manifest(tmp_path / "train.csv", train_rows, ["text", "label"])
    test_csv = write_manifest(tmp_path / "test.csv", test_rows, ["text", "label"])

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    args = parser.parse_args([str(train_csv), "--modality", "text", "--kind", kind, "--out", str(tmp_path / "heads"),
                              "--cache", str(tmp_path / "cache"), "--threads", "1"])
    assert main_train(args) == 0
    head = Head.load(tmp_path / "heads" / "text")
    assert head.classes == ["negative", "positive"] and head.kind == kind
    assert head.card["training"]["n_train"] + head.card["training"]["n_val"] == 400
    assert 0.2 < head.temperature < 5.0

    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    out = tmp_path / "eval"
    args = parser.parse_args([str(test_csv), "--modality", "text", "--heads", str(tmp_path / "heads"),
                              "--out", str(out), "--cache", str(tmp_path / "cache"), "--threads", "1"])
    assert main_evaluate(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    text = next(r for r in summary["rows"] if r["name"] == "text")
    assert text["n"] == 200 and text["accuracy"] >= 0.65 and text["macro_f1"] >= 0.65, text
    assert 0 <= text["ece"] < 0.2
    assert np.array(text["confusion"]).sum() == 200
    with open(out / "predictions.csv") as f:
        predictions = list(csv.DictReader(f))
    assert list(predictions[0])[:4] == ["item", "label", "text_score", "text_label"]
    assert "vader_score" in predictions[0]
    assert "| text |" in (out / "summary.md").read_text()

    # the saved head reproduces the evaluation's scores exactly
    from models.text import TextEmbedder, TextScorer

    again = TextScorer(TextEmbedder("cpu"), head).score([r["text"] for r in test_rows[:5]])
    assert [f"{s.score:.4f}" for s in again] == [p["text_score"] for p in predictions[:5]]


@pytest.mark.models
@needs_data
def test_train_a_scene_head_on_real_oasis_images(tmp_path: Path):
    from training.embed_cache import EmbeddingCache
    from training.evaluate import evaluate_manifest
    from training.train import TrainConfig, train_from_manifest

    with open(DATA / "oasis" / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    pos = [r for r in rows if float(r["valence_mean"]) > 5.5][:100]
    neg = [r for r in rows if float(r["valence_mean"]) < 3][:100]
    items = [{"path": os.path.relpath(DATA / "oasis" / r["image"], tmp_path), "label": label,
              "split": "test" if i % 4 == 0 else "train"}
             for group, label in ((pos, "positive"), (neg, "negative")) for i, r in enumerate(group)]
    manifest = read_manifest(write_manifest(tmp_path / "oasis.csv", items, ["path", "label", "split"]), "visual")
    head, metrics = train_from_manifest(manifest, name="scene", config=TrainConfig(kind="logreg"),
                                        out_dir=tmp_path / "heads", device="cpu",
                                        cache=EmbeddingCache(tmp_path / "cache" / "embeddings"), log=lambda m: None)
    assert metrics["test"]["n"] == 50 and metrics["test"]["accuracy"] >= 0.75, metrics["test"]
    table = evaluate_manifest(manifest.subset("test"), heads_dir=tmp_path / "heads", out=tmp_path / "eval",
                              device="cpu", cache_root=tmp_path / "cache")
    scene = next(r for r in table if r["name"] == "scene")
    assert scene["accuracy"] == metrics["test"]["accuracy"], "evaluate and the training card agree"
    assert {r["name"] for r in table} >= {"scene", "faces", "visual"}


# ------------------------------------------------------------------------------------------------- fusion
def synthetic_rows(n: int, seed: int) -> tuple[list[dict[str, ModalityScore]], np.ndarray]:
    """text is informative, audio is weakly informative, visual is noise; a third of the rows miss audio."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.5
    rows = []
    for i, positive in enumerate(y):
        sign = 1 if positive else -1
        text = 1 / (1 + np.exp(-(1.5 * sign + rng.normal())))
        audio = 1 / (1 + np.exp(-(0.5 * sign + rng.normal())))
        visual = rng.random()
        row = {"text": ModalityScore.of(text), "visual": ModalityScore.of(visual),
               "audio": ModalityScore.of(audio) if i % 3 else ModalityScore.missing("silence")}
        rows.append(row)
    return rows, y


def test_learned_fusion_trusts_the_informative_modality():
    rows, y = synthetic_rows(400, 0)
    params = fit_fusion(rows, y)
    assert params.weights["text"] > params.weights["audio"] > params.weights["visual"]
    assert params.product["text"] > params.product["visual"]
    assert {"text", "text+audio", "text+audio+visual", "text+visual"} <= set(params.stacking)
    test_rows, test_y = synthetic_rows(400, 1)
    accuracy = {}
    for method, p in (("weighted", params), ("weighted-equal", None), ("stacking", params), ("vote", None)):
        fused = [fuse(r, method.split("-")[0], p) for r in test_rows]
        accuracy[method] = np.mean([(f.score >= 0.5) == t for f, t in zip(fused, test_y)])
    assert accuracy["weighted"] > accuracy["weighted-equal"] + 0.03
    assert accuracy["stacking"] > accuracy["vote"]


def test_a_modality_seen_on_too_few_items_keeps_its_prior():
    rows, y = synthetic_rows(200, 4)
    for i, row in enumerate(rows):
        if i >= 12:  # text heard in only 12 items (like the lyrics of a few music videos)
            row["text"] = ModalityScore.missing("no speech")
    params = fit_fusion(rows, y)
    assert params.product["text"] == 1.0
    assert not any("text" in key for key in params.stacking)
    assert "audio+visual" in params.stacking


def test_cross_validated_fusion_never_sees_the_item_it_scores():
    rows, y = synthetic_rows(30, 2)
    # uncalibrated: on these well-separated items a fitted temperature would push every score to 0 or 1
    cv = cross_validated_fusion(rows, y, ("stacking",), folds=None, min_per_class=3, calibrate={})["stacking"]
    assert len(cv) == 30 and all(f.score is not None for f in cv)
    # leave-one-out: item 0 is fused with parameters fitted on the other 29 items exactly
    without_first = fit_fusion(rows[1:], y[1:], methods=("stacking",), min_per_class=3, calibrate={})
    assert cv[0].score == pytest.approx(fuse(rows[0], "stacking", without_first).score)
    with_first = fit_fusion(rows, y, methods=("stacking",), min_per_class=3, calibrate={})
    assert fuse(rows[0], "stacking", with_first).score != pytest.approx(cv[0].score)


def test_cross_validation_with_a_fold_that_has_no_scores_falls_back_to_equal_weights():
    # two clips, one of them silent and dark: leaving the other out leaves nothing to learn from
    rows = [{"text": ModalityScore.missing("no speech"), "visual": ModalityScore.of(0.8)},
            {"text": ModalityScore.missing("no speech"), "visual": ModalityScore.missing("no frames")}]
    cv = cross_validated_fusion(rows, np.array([True, False]), ("weighted", "product", "stacking"), folds=None)
    for method, fused in cv.items():
        assert fused[0].score == pytest.approx(0.8) and fused[0].used == ["visual"], method
        assert fused[1].score is None and fused[1].missing == ["text", "visual"], method
    assert fit_fusion(rows[1:], [False]).card["fitted_on"]["modalities"] == []


def test_fusion_params_file_round_trips_and_old_files_still_load(tmp_path: Path):
    rows, y = synthetic_rows(120, 3)
    params = fit_fusion(rows, y, card={"source": "synthetic"})
    params.save(tmp_path / "fusion.json")
    loaded = FusionParams.load(tmp_path / "fusion.json")
    assert loaded.weights == params.weights and loaded.stacking == params.stacking and loaded.product == params.product
    for method in ("weighted", "product", "stacking"):
        assert fuse(rows[0], method, loaded).score == fuse(rows[0], method, params).score
    (tmp_path / "old.json").write_text(json.dumps({"weights": {"text": 2.0}, "stacking": {}, "card": {}}))
    old = FusionParams.load(tmp_path / "old.json")
    assert old.product == {} and fuse(rows[0], "product", old).score is not None


# ------------------------------------------------------------------------------------------------- metrics, compare
def test_metrics_on_known_predictions():
    summary = classification_summary(["positive", "negative", "positive", "negative"],
                                     ["positive", "negative", "negative", "negative"], ["negative", "positive"],
                                     p_positive=np.array([0.9, 0.2, 0.4, 0.1]))
    assert summary["accuracy"] == 0.75 and summary["confusion"] == [[2, 0], [1, 1]]
    rng = np.random.default_rng(0)
    p = rng.random(20000)
    assert binary_ece(p, rng.random(20000) < p) < 0.02
    assert binary_ece(np.full(1000, 0.99), np.arange(1000) % 2 == 0) > 0.4


@needs_data
def test_compare_reads_the_seed_video_llm_outputs():
    from training.evaluate import read_compare, summarise

    row = read_compare(DATA / "seed" / "longva.csv")
    summary = summarise(row, row.info.pop("truth"), ["negative", "positive"])
    assert summary["n"] > 1000 and 0.85 <= summary["accuracy"] <= 0.95  # the seed README reports 0.90


@pytest.mark.models
@needs_data
def test_evaluate_videos_scores_every_modality_and_fusion(tmp_path: Path, monkeypatch):
    from models.fusion import FUSION_METHODS
    from training.evaluate import evaluate_manifest

    items = [{"path": os.path.relpath(DATA / "videos" / "vna_mosi_2.6.mp4", tmp_path), "label": "positive"},
             {"path": os.path.relpath(DATA / "musicvideos" / "Sad" / _first(DATA / "musicvideos" / "Sad"), tmp_path),
              "label": "negative"},
             {"path": os.path.relpath(DATA / "musicvideos" / "Excited" / _first(DATA / "musicvideos" / "Excited"),
                                      tmp_path), "label": "positive"}]
    manifest = read_manifest(write_manifest(tmp_path / "videos.csv", items, ["path", "label"]), "video")
    table = evaluate_manifest(manifest, heads_dir=None, out=tmp_path / "eval", device="cpu",
                              cache_root=tmp_path / "cache", folds=None)
    names = {r["name"] for r in table}
    assert {"text", "audio", "visual", "faces", "scene"} <= names
    assert {f"text+audio+visual [{m}]" for m in FUSION_METHODS} <= names
    assert not any("faces" in n or "scene" in n for n in names if "+" in n), "the visual parts are not fused again"
    with open(tmp_path / "eval" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    for column in ("visual_score", *(f"fused_{m}_score" for m in FUSION_METHODS)):
        assert all(0.0 <= float(r[column]) <= 1.0 for r in rows), column
    assert all(0.0 <= float(r["audio_score"]) <= 1.0 for r in rows[1:]), "the music videos' soundtracks are scored"
    mosi = rows[0]
    assert mosi["text_score"] != "", "the CMU-MOSI clip has speech, so text is scored"
    # 1.3 s of audio: the live pipeline does not score audio windows under 2 s, and evaluation runs the live pipeline
    assert mosi["audio_score"] == ""
    # a talking head: the faces were seen, and the visual score lies between its faces and its scene
    faces, scene, visual = (float(mosi[f"{c}_score"]) for c in ("faces", "scene", "visual"))
    assert min(faces, scene) - 1e-3 <= visual <= max(faces, scene) + 1e-3
    # the clips' live analyses are cached: a second evaluation runs no pipeline and gives the same table
    records = list((tmp_path / "cache" / "records" / "live-clips").rglob("part-*.parquet"))
    assert len(records) == 1

    def no_second_run(self, path):
        raise AssertionError(f"{path} went through the pipeline again")

    monkeypatch.setattr(LiveClipAnalyzer, "_analyze", no_second_run)
    again = evaluate_manifest(manifest, heads_dir=None, out=tmp_path / "eval2", device="cpu",
                              cache_root=tmp_path / "cache", folds=None)
    assert again == table


@pytest.mark.models
@needs_data
def test_evaluate_scores_a_clip_exactly_as_analyze_reports_it(tmp_path: Path):
    """Evaluation of a video is the live pipeline's verdict: the clip-level scores are analyze's summary."""
    from engine import Engine, PipelineConfig, analyze_file
    from training.evaluate import evaluate_manifest

    clip = DATA / "videos" / "vna_original_2.mp4"
    manifest = read_manifest(write_manifest(tmp_path / "one.csv", [{"path": str(clip), "label": "negative"}],
                                            ["path", "label"]), "video")
    evaluate_manifest(manifest, heads_dir=None, out=tmp_path / "eval", device="cpu", cache_root=tmp_path / "cache")
    with open(tmp_path / "eval" / "predictions.csv") as f:
        row = next(csv.DictReader(f))
    engine = Engine(asr="tiny.en", device="cpu")
    try:
        analysed = asyncio.run(analyze_file(clip, engine, PipelineConfig()))
    finally:
        engine.close()
    assert len(analysed["windows"]) == 6
    for modality in ("text", "audio", "visual"):
        assert float(row[f"{modality}_score"]) == pytest.approx(analysed["modalities"][modality]["score"], abs=1e-3)


def _first(folder: Path) -> str:
    return sorted(p.name for p in folder.glob("*.mp4"))[0]
