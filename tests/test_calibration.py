"""Calibration maps (models/calibration.py) and fitting them (training/calibration.py): hand-computed cases, fits that
recover a known distortion, the choice by cross-fitted ECE, and the live path applying them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from models.base import ModalityScore
from models.calibration import Calibration, calibrated, calibration_key, load_calibrations, save_calibrations
from models.fusion import FusionParams, fuse
from models.scoring import ScorerSet
from training.calibration import choose_calibration, cross_fitted, ece_floor, fit_calibration
from training.metrics import binary_ece


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_temperature_and_isotonic_maps_by_hand():
    soften = Calibration("temperature", temperature=2.0)
    # logit(0.8) = ln 4; halved: ln 2 → 2/3
    assert soften(0.8) == pytest.approx(2 / 3)
    assert soften(0.5) == pytest.approx(0.5)
    assert soften(0.2) == pytest.approx(1 / 3)
    curve = Calibration("isotonic", knots=((0.2, 0.1), (0.6, 0.5), (0.9, 0.8)))
    assert curve(0.4) == pytest.approx(0.3)  # halfway between the first two knots
    assert curve(0.0) == pytest.approx(0.1) and curve(1.0) == pytest.approx(0.8)  # flat outside the knots
    assert Calibration()(0.73) == pytest.approx(0.73)
    with pytest.raises(ValueError):
        Calibration("isotonic", knots=((0.5, 0.6), (0.4, 0.7)))
    with pytest.raises(ValueError):
        Calibration("temperature", temperature=0.0)


def test_calibrations_round_trip_and_a_broken_file_is_named(tmp_path):
    calibrations = {"text": Calibration("temperature", temperature=1.37),
                    "audio": Calibration("isotonic", knots=((0.1, 0.2), (0.9, 0.7)))}
    save_calibrations(tmp_path, calibrations)
    loaded = load_calibrations(tmp_path)
    assert loaded == calibrations
    assert load_calibrations(tmp_path / "nowhere") == {}
    (tmp_path / "calibration.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="calibration.json"):
        load_calibrations(tmp_path)


def test_a_fitted_temperature_recovers_the_over_confidence_it_is_given():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, 4000)
    stated = sigmoid(z)                       # what the scorer says
    truth = rng.random(4000) < sigmoid(z / 2)  # how often it is right: it should have said logit / 2
    fitted = fit_calibration("temperature", stated, truth)
    assert fitted.temperature == pytest.approx(2.0, rel=0.1)
    assert binary_ece(fitted.apply(stated), truth) < binary_ece(stated, truth) / 2


def test_the_choice_keeps_a_calibrated_scorer_and_fixes_an_over_confident_one():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, 3000)
    groups = [f"g{i % 60}" for i in range(3000)]
    honest = sigmoid(z)
    truth = rng.random(3000) < honest
    calibration, report = choose_calibration(honest, truth, groups, ["set"] * 3000)
    assert report["chosen"] == "identity" and calibration.kind == "identity"
    over = sigmoid(2.5 * z)
    calibration, report = choose_calibration(over, truth, groups, ["set"] * 3000)
    assert report["chosen"] != "identity"
    row = report["sets"]["set"]
    assert row[f"ece_{report['chosen']}"] < row["ece_before"] / 2
    assert row["accuracy_before"] == pytest.approx(row["accuracy_temperature"])  # a temperature keeps 0.5 at 0.5


def test_cross_fitting_never_calibrates_an_item_with_a_map_that_saw_its_group():
    # two groups with opposite truths for the same stated scores: a map fitted on the other group is wrong for this one
    stated = np.tile(np.linspace(0.6, 0.8, 100), 2)
    truth = np.array([i % 5 != 0 for i in range(100)] + [i % 5 == 0 for i in range(100)])
    groups = ["a"] * 100 + ["b"] * 100
    out = cross_fitted("isotonic", stated, truth, groups, folds=2)
    assert out[:100].mean() < 0.35 and out[100:].mean() > 0.65


def test_the_ece_floor_says_how_much_ece_a_small_set_shows_by_chance():
    rng = np.random.default_rng(2)
    p = rng.uniform(0.05, 0.95, 42)
    assert ece_floor(p) > 0.08  # 42 clips, 15 bins: a perfect scorer still shows about 0.1
    assert ece_floor(rng.uniform(0.05, 0.95, 3000)) < 0.03


def test_a_calibrated_score_keeps_its_trust_share_and_its_raw_score():
    score = ModalityScore.of(0.9, confidence=0.4, details={"head": "text"})  # margin 0.8, half of it trusted
    out = calibrated(score, Calibration("temperature", temperature=2.0))
    assert out.score == pytest.approx(sigmoid(math.log(9) / 2))
    assert out.confidence == pytest.approx(abs(2 * out.score - 1) * 0.5)
    assert out.details["raw_score"] == 0.9 and out.label == "positive"
    assert calibrated(ModalityScore.missing("silence"), Calibration("temperature", temperature=2.0)).score is None
    assert calibration_key("text", score) == "text"
    assert calibration_key("text", ModalityScore.of(0.4, details={"head": "text_multilingual"})) == "text_multilingual"
    assert calibration_key("audio", ModalityScore.of(0.4)) == "audio"


class _Fixed:
    modality = "text"

    def __init__(self, score: ModalityScore):
        self.value = score

    def score_batch(self, windows):
        return [self.value for _ in windows]


class _Window:
    index, audio, frames, transcript, speech_spans = 0, np.zeros(0), [], "hi", []
    language, word_probabilities = None, ()


def test_the_scorer_set_calibrates_each_new_score_by_the_head_that_made_it():
    english = ModalityScore.of(0.8, details={"head": "text"})
    scorers = ScorerSet(_Fixed(english), _Fixed(ModalityScore.of(0.8)), _Fixed(ModalityScore.of(0.8)), None,
                        calibrations={"text": Calibration("temperature", temperature=2.0),
                                      "visual": Calibration("isotonic", knots=((0.0, 0.1), (1.0, 0.3)))})
    row = scorers.score([_Window()])[0]
    assert row["text"].score == pytest.approx(2 / 3)
    assert row["visual"].score == pytest.approx(0.1 + 0.2 * 0.8)
    assert row["audio"].score == pytest.approx(0.8)  # no calibration for it
    # a score an earlier call gave is not calibrated twice
    again = scorers.score([_Window()], modalities=("audio",), scored=[row])[0]
    assert again["text"].score == pytest.approx(2 / 3)


def test_a_fused_score_goes_through_its_methods_calibration():
    scores = {"text": ModalityScore.of(0.9), "audio": ModalityScore.of(0.7)}
    plain = fuse(scores, "weighted", FusionParams())
    params = FusionParams(calibration={"weighted": Calibration("temperature", temperature=2.0)})
    softened = fuse(scores, "weighted", params)
    z = math.log(plain.score / (1 - plain.score))
    assert softened.score == pytest.approx(sigmoid(z / 2))
    assert fuse(scores, "vote", params).score == 1.0  # the vote counts, it is not calibrated
