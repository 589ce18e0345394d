"""Head files: exact round trips, calibration, positivity, clear errors for broken files, the shipped heads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.heads import (
    DEFAULT_HEADS_DIR,
    Head,
    HeadFormatError,
    head_from_arrays,
    load_head,
    softmax,
)
from training.train import fit_temperature

THREE = ["negative", "neutral", "positive"]


def random_head(name: str, classes: list[str], hidden: tuple[int, ...], dim: int = 24, seed: int = 0) -> Head:
    rng = np.random.default_rng(seed)
    sizes = [dim, *hidden, len(classes)]
    layers = [(rng.normal(size=(o, i)).astype(np.float32) / np.sqrt(i), rng.normal(size=o).astype(np.float32))
              for i, o in zip(sizes[:-1], sizes[1:])]
    return head_from_arrays(name, classes, layers, rng.normal(size=dim), rng.uniform(0.5, 2.0, size=dim),
                            temperature=1.37, card={"embedding": {"model_id": "test-embedding", "dim": dim}})


@pytest.mark.parametrize("hidden", [(), (32, 16)], ids=["logreg", "mlp"])
def test_save_load_predict_round_trips_exactly(tmp_path: Path, hidden):
    head = random_head("text", THREE, hidden)
    X = np.random.default_rng(1).normal(size=(50, 24)).astype(np.float32)
    before = head.predict_proba(X)
    head.save(tmp_path / "text")
    assert (tmp_path / "text.safetensors").is_file() and (tmp_path / "text.json").is_file()
    loaded = Head.load(tmp_path / "text.json")
    assert loaded.classes == THREE
    assert loaded.temperature == head.temperature
    assert loaded.kind == ("logreg" if not hidden else "mlp")
    assert loaded.card["embedding"]["model_id"] == "test-embedding"
    assert np.array_equal(loaded.predict_proba(X), before)
    assert np.array_equal(loaded.positivity(X), head.positivity(X))
    assert np.allclose(before.sum(axis=1), 1.0, atol=1e-6)


def test_positivity_counts_half_of_neutral():
    head = random_head("text", THREE, (8, 8))
    X = np.random.default_rng(2).normal(size=(20, 24))
    p = head.predict_proba(X)
    assert np.allclose(head.positivity(X), p[:, 2] + 0.5 * p[:, 1], atol=1e-6)
    two = random_head("scene", ["negative", "positive"], ())
    assert np.allclose(two.positivity(X), two.predict_proba(X)[:, 1], atol=1e-6)


def test_valence_of_other_classes_comes_from_the_card():
    head = random_head("music", ["Q1", "Q2", "Q3", "Q4"], ())
    with pytest.raises(HeadFormatError, match="no valence"):
        head.positivity(np.zeros((1, 24)))
    head.card["valence"] = {"Q1": 1.0, "Q2": 0.0, "Q3": 0.0, "Q4": 1.0}
    p = head.predict_proba(np.zeros((1, 24)))
    assert np.isclose(head.positivity(np.zeros((1, 24)))[0], p[0, 0] + p[0, 3], atol=1e-6)


def test_temperature_scaling_recovers_the_true_temperature():
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=3.0, size=(20000, 3))
    true_t = 2.5
    p = softmax(logits / true_t)
    y = np.array([rng.choice(3, p=row) for row in p])
    assert abs(fit_temperature(logits, y) - true_t) < 0.15


def test_calibrated_probabilities_are_sharper_or_softer_not_reordered():
    head = random_head("text", THREE, (8, 8))
    X = np.random.default_rng(4).normal(size=(30, 24))
    head.temperature = 1.0
    sharp = head.predict_proba(X)
    head.temperature = 3.0
    soft = head.predict_proba(X)
    assert np.array_equal(sharp.argmax(axis=1), soft.argmax(axis=1))
    assert soft.max(axis=1).mean() < sharp.max(axis=1).mean()


def test_wrong_input_width_is_a_clear_error():
    head = random_head("text", THREE, ())
    with pytest.raises(ValueError, match=r"expects \(n, 24\)"):
        head.predict_proba(np.zeros((2, 10)))


def test_missing_head_is_none_and_broken_heads_raise(tmp_path: Path):
    assert load_head("text", tmp_path) is None
    head = random_head("text", THREE, (8, 4))
    head.save(tmp_path / "text")

    (tmp_path / "text.safetensors").write_bytes((tmp_path / "text.safetensors").read_bytes()[:40])
    with pytest.raises(HeadFormatError, match="text.safetensors"):
        load_head("text", tmp_path)

    head.save(tmp_path / "text")
    (tmp_path / "text.json").write_text("{not json")
    with pytest.raises(HeadFormatError, match="not valid JSON"):
        load_head("text", tmp_path)

    head.save(tmp_path / "text")
    card = json.loads((tmp_path / "text.json").read_text())
    card["classes"] = ["negative", "positive"]
    (tmp_path / "text.json").write_text(json.dumps(card))
    with pytest.raises(HeadFormatError, match="3 outputs but 2 classes"):
        load_head("text", tmp_path)


@pytest.mark.parametrize("name", ["text", "audio", "scene"])
def test_shipped_heads_load_with_their_cards(name):
    head = load_head(name)
    assert head is not None, f"the shipped {name} head is missing from {DEFAULT_HEADS_DIR}"
    assert "negative" in head.classes and "positive" in head.classes
    card = head.card
    assert card["embedding"]["model_id"] and card["embedding"]["dim"] == head.input_dim
    assert card["training"]["data_hash"]
    assert card["metrics"], "a shipped head carries its held-out metrics"
    if card.get("encoder_delta"):
        assert head.sibling(card["encoder_delta"]).is_file()
    X = np.random.default_rng(5).normal(size=(4, head.input_dim)).astype(np.float32)
    p = head.positivity(X)
    assert p.shape == (4,) and np.all((p >= 0) & (p <= 1))


def test_a_head_knows_which_embedder_it_was_trained_on():
    head = random_head("text", THREE, ())
    assert head.check_embedder("test-embedding") is None
    warning = head.check_embedder("some-other-embedding")
    assert warning and "test-embedding" in warning and "retrain" in warning
