"""Calibration measured and shown: reliability bins and ECE against hand-computed cases, and `vidsent evaluate
--out DIR`'s pictures (reliability diagrams, confusion matrices) and report.html, on real MELD utterances."""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from testkit.data import need_data
from training.metrics import (
    binary_ece,
    binary_reliability,
    calibration_error,
    classification_summary,
    expected_calibration_error,
    reliability_diagram,
    rounded,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------------------------- bins and ECE
def test_reliability_bins_and_ece_of_a_hand_computed_case():
    # 5 bins: (0, .2] (.2, .4] (.4, .6] (.6, .8] (.8, 1]; nothing falls in (.4, .6]
    confidence = np.array([0.10, 0.30, 0.35, 0.70, 0.90, 0.95])
    correct = np.array([False, True, False, True, True, False])
    bins = reliability_diagram(confidence, correct, bins=5)
    assert [b["lower"] for b in bins] == pytest.approx([0.0, 0.2, 0.6, 0.8])
    assert [b["upper"] for b in bins] == pytest.approx([0.2, 0.4, 0.8, 1.0])
    assert [b["count"] for b in bins] == [1, 2, 1, 2]
    assert [b["confidence"] for b in bins] == pytest.approx([0.10, 0.325, 0.70, 0.925])
    assert [b["accuracy"] for b in bins] == pytest.approx([0.0, 0.5, 1.0, 0.5])
    # gaps .1, .175, .3, .425 weighted by 1, 2, 1, 2 over 6 predictions: 1.6 / 6
    assert expected_calibration_error(confidence, correct, bins=5) == pytest.approx(1.6 / 6)
    assert calibration_error(bins) == expected_calibration_error(confidence, correct, bins=5)


def test_a_perfectly_calibrated_scorer_has_ece_zero():
    confidence = np.array([0.75, 0.75, 0.75, 0.75, 0.5, 0.5])
    correct = np.array([True, True, False, True, True, False])  # 3 of 4 at 0.75, 1 of 2 at 0.5
    bins = reliability_diagram(confidence, correct, bins=10)
    assert [(b["count"], b["confidence"], b["accuracy"]) for b in bins] == [(2, 0.5, 0.5), (4, 0.75, 0.75)]
    assert expected_calibration_error(confidence, correct, bins=10) == 0.0
    assert reliability_diagram(np.array([]), np.array([])) == []
    assert np.isnan(expected_calibration_error(np.array([]), np.array([])))


def test_binary_reliability_reads_p_positive_as_a_two_class_prediction():
    # 0.9 says positive (right, confidence .9); 0.25 negative (right, .75); 0.35 negative (wrong, .65);
    # 0.7 positive (wrong, .7): bin (.6, .8] holds 3 with mean confidence .7 and accuracy 1/3, bin (.8, 1] one
    bins = binary_reliability(np.array([0.9, 0.25, 0.35, 0.7]), np.array([True, False, True, False]), bins=5)
    assert [b["count"] for b in bins] == [3, 1]
    assert [b["confidence"] for b in bins] == pytest.approx([0.7, 0.9])
    assert [b["accuracy"] for b in bins] == pytest.approx([1 / 3, 1.0])
    assert binary_ece(np.array([0.9, 0.25, 0.35, 0.7]), np.array([True, False, True, False]), bins=5) == \
        pytest.approx((3 * (0.7 - 1 / 3) + 0.1) / 4)


def test_ece_gives_the_numbers_of_the_former_implementation():
    def former(confidence, correct, bins=15):  # training/metrics.py before the reliability bins, verbatim
        edges = np.linspace(0.0, 1.0, bins + 1)
        which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
        total = 0.0
        for b in range(bins):
            mask = which == b
            if mask.any():
                total += mask.sum() * abs(correct[mask].mean() - confidence[mask].mean())
        return float(total / len(confidence))

    rng = np.random.default_rng(7)
    for n in (1, 17, 500):
        confidence = rng.random(n)
        confidence[: n // 5] = np.round(confidence[: n // 5] * 15) / 15  # some on the bins' edges
        correct = (rng.random(n) < confidence).astype(np.float64)
        assert expected_calibration_error(confidence, correct) == former(confidence, correct)


def test_the_summary_carries_the_bins_its_eces_come_from():
    classes = ["negative", "neutral", "positive"]
    truth = ["positive", "neutral", "negative", "positive", "negative"]
    proba = np.array([[0.1, 0.2, 0.7], [0.2, 0.5, 0.3], [0.3, 0.6, 0.1], [0.5, 0.1, 0.4], [0.8, 0.1, 0.1]])
    pred = [classes[i] for i in proba.argmax(axis=1)]
    p_pos = proba @ np.array([0.0, 0.5, 1.0])
    summary = classification_summary(truth, pred, classes, proba, p_pos, with_reliability=True)
    assert sum(b["count"] for b in summary["reliability"]) == 5
    assert sum(b["count"] for b in summary["posneg_reliability"]) == summary["posneg_n"] == 4
    assert summary["ece"] == calibration_error(summary["reliability"])
    assert summary["posneg_ece"] == calibration_error(summary["posneg_reliability"])
    plain = classification_summary(truth, pred, classes, proba, p_pos)
    assert "reliability" not in plain and plain["ece"] == summary["ece"]
    two = classification_summary(["positive", "negative"], ["positive", "positive"], ["negative", "positive"],
                                 p_positive=np.array([0.8, 0.6]), with_reliability=True)
    assert [b["count"] for b in two["reliability"]] == [1, 1] and two["ece"] == pytest.approx((0.2 + 0.6) / 2)
    assert rounded({"bins": [{"confidence": 1 / 3}]}) == {"bins": [{"confidence": 0.3333}]}


# ------------------------------------------------------------------------------------------------- pictures, page
def assert_real_png(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG" and image.width > 100 and image.height > 100, path
        grey = np.asarray(image.convert("L"))
    assert grey.std() > 5 and len(np.unique(grey)) > 10, f"{path.name} is blank"
    return image.size


def pictures_of(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


def test_report_pictures_and_page_for_every_kind_of_row(tmp_path: Path):
    """Rows as `vidsent evaluate` makes them: a fusion row with a name no file may carry, a 3-class row with only
    P(positive), a row that scored nothing and a row with labels but no probability."""
    from training.evaluate import metrics_table
    from training.plots import write_report

    classes = ["negative", "neutral", "positive"]
    truth = ["positive", "neutral", "negative", "positive", "negative", "neutral"]
    pred = ["positive", "positive", "negative", "negative", "negative", "neutral"]
    p_pos = np.array([0.9, 0.7, 0.2, 0.45, 0.1, 0.5])
    weighted = classification_summary(truth, pred, classes, p_positive=p_pos, with_reliability=True)
    table = [{"name": "text+audio+visual [weighted]", "kind": "fusion", **rounded(weighted), "coverage": 1.0},
             {"name": "audio", "kind": "modality", "n": 0, "coverage": 0.0},
             {"name": "labels/only <b>", "kind": "modality", "coverage": 1.0,
              **rounded(classification_summary(truth, pred, classes))}]
    meta = {"manifest": "clips.csv", "modality": "video", "n_items": 6, "classes": classes, "heads": "default",
            "fusion": "leave-one-out cross-validation on this manifest"}
    page_path = write_report(tmp_path, table, meta, metrics_table(table, classes))
    page = page_path.read_text()
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "01-text-audio-visual-weighted-confusion.png", "01-text-audio-visual-weighted-reliability.png",
        "03-labels-only-b-confusion.png"]
    assert sorted(pictures_of(page)) == sorted(p.name for p in tmp_path.glob("*.png"))
    for name in pictures_of(page):
        assert_real_png(tmp_path / name)
    assert "scored none of the items" in page and "states no probability" in page
    assert "labels/only &lt;b&gt;" in page and "<b>" not in page
    assert "How to read a reliability diagram" in page and "clips.csv" in page and "leave-one-out" in page
    assert "http" not in page and "<script" not in page, "the page loads nothing and runs nothing"


@pytest.mark.models
def test_vidsent_evaluate_writes_reliability_diagrams_and_a_report(tmp_path: Path):
    from training.evaluate import add_evaluate_arguments, main_evaluate
    from training.manifest import write_manifest

    with open(need_data("meld", "test_sent_emo.csv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    items = [{"text": r["Utterance"], "label": label} for label in ("negative", "neutral", "positive")
             for r in [r for r in rows if r["Sentiment"] == label][:12]]  # 36 utterances, 12 of each class
    manifest = write_manifest(tmp_path / "meld.csv", items, ["text", "label"])
    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    out = tmp_path / "eval"
    args = parser.parse_args([str(manifest), "--modality", "text", "--out", str(out), "--cache",
                              str(tmp_path / "cache"), "--threads", "1"])
    assert main_evaluate(args) == 0

    summary = json.loads((out / "summary.json").read_text())
    text, vader = (next(r for r in summary["rows"] if r["name"] == name) for name in ("text", "vader (baseline)"))
    assert sum(b["count"] for b in text["reliability"]) == text["n"] == 36
    assert sum(b["count"] for b in text["posneg_reliability"]) == text["posneg_n"] == 24
    assert "reliability" not in vader and sum(b["count"] for b in vader["posneg_reliability"]) == 24
    for b in text["reliability"]:
        assert 0 <= b["lower"] < b["upper"] <= 1 and b["lower"] - 1e-4 <= b["confidence"] <= b["upper"] + 1e-4
    assert abs(calibration_error(text["reliability"]) - text["ece"]) < 1e-3

    page = (out / "report.html").read_text()
    listed = pictures_of(page)
    assert sorted(listed) == ["01-text-confusion.png", "01-text-reliability.png",
                              "02-vader-baseline-confusion.png", "02-vader-baseline-reliability.png"]
    assert sorted(listed) == sorted(p.name for p in out.glob("*.png"))
    for name in listed:
        width, height = assert_real_png(out / name)
        assert width * height > 0
    assert manifest.name in page and "| text |" in (out / "summary.md").read_text()


def test_a_fused_row_reports_its_accuracy_where_it_was_sure_and_where_it_doubted():
    from training.evaluate import Scored, summarise

    truth = ["positive", "negative", "positive", "negative", "positive"]
    row = Scored("text+visual [weighted]", "fusion", [0.9, 0.2, 0.55, 0.52, None],
                 ["positive", "negative", "negative", "positive", None], None, {"method": "weighted"},
                 uncertain=[False, False, True, True, False])
    summary = summarise(row, truth, ["negative", "positive"])
    # the fifth item was not scored; of the rest, the two sure verdicts were right and the two doubted ones wrong
    assert (summary["certain_n"], summary["certain_accuracy"]) == (2, 1.0)
    assert (summary["uncertain_n"], summary["uncertain_accuracy"]) == (2, 0.0)
    assert "certain_n" not in summarise(Scored("text", "modality", [0.9], ["positive"]), ["positive"],
                                         ["negative", "positive"])
