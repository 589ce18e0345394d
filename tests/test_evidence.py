"""Every window says why: the words that moved its text score, what its audio heard and which features pushed
the audio head; on real clips the evidence agrees with the score."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from engine import PipelineConfig, analyze_file
from media import Word
from models.audio import heard_shares
from models.heads import load_head
from models.text import key_words, leave_one_word_out
from stream.windows import Window
from testkit.data import need_data


@pytest.fixture(scope="module")
def negative_review(engine):
    """vna_original_2.mp4: "Now I'm not even gonna sugar coat this. This movie frustrated me to such an extreme
    extent that I was loudly exclaiming why at the end of the film" (a negative review)."""
    return asyncio.run(analyze_file(need_data("videos", "vna_original_2.mp4"), engine, PipelineConfig()))


def test_leave_one_word_out_removes_each_distinct_word_once():
    variants = leave_one_word_out("This movie, this MOVIE frustrated me.")
    assert [w for w, _ in variants] == ["this", "movie", "frustrated", "me"]
    assert dict(variants)["this"] == "movie, MOVIE frustrated me."
    assert leave_one_word_out("Hi.") == [] and len(leave_one_word_out(" ".join(f"w{i}" for i in range(40)))) == 16
    effects = key_words(0.2, ["a", "b", "c", "d", "e"], np.array([0.21, 0.6, 0.1, 0.195, 0.25]))
    assert effects == [{"word": "b", "effect": -0.4}, {"word": "c", "effect": 0.1}, {"word": "e", "effect": -0.05}]


def test_a_negative_review_names_its_negative_words(negative_review):
    negative = [w for w in negative_review["windows"] if w["modalities"]["text"]["available"]
                and w["modalities"]["text"]["score"] < 0.3]
    assert len(negative) >= 3
    named = {k["word"]: k["effect"] for w in negative for k in w["modalities"]["text"]["details"]["key_words"]}
    assert named.get("frustrated", 0) < -0.05, named  # "frustrated" pulled those windows down
    for w in negative:  # the word that moved a negative window most pushed it down
        strongest = w["modalities"]["text"]["details"]["key_words"][0]
        assert strongest["effect"] < 0 and strongest["word"] in w["transcript"].lower(), w["transcript"]


async def test_a_positive_remark_names_its_positive_word(engine):
    result = await analyze_file(need_data("videos", "vna_mosi_2.6.mp4"), engine, PipelineConfig())  # "impressive"
    text = result["windows"][0]["modalities"]["text"]
    assert text["score"] > 0.6
    strongest = text["details"]["key_words"][0]
    assert strongest["word"] == "impressive" and strongest["effect"] > 0.1


def test_the_audio_says_what_it_heard_and_what_pushed_it(negative_review):
    windows = [w for w in negative_review["windows"] if w["modalities"]["audio"]["available"]]
    assert windows
    for w in windows:
        audio = w["modalities"]["audio"]["details"]
        shares = audio["speech_share"] + audio["silence_share"] + audio["other_sound_share"]
        assert shares == pytest.approx(1.0, abs=0.01)
        assert 80 < audio["pitch_hz"] < 400 and audio["pitch_variability_st"] > 0  # a human voice
        assert len(audio["top_features"]) == 3
    talking = [w["modalities"]["audio"]["details"]["speech_share"] for w in windows[:4]]
    assert min(talking) > 0.5  # she talks through the first windows
    low = [w for w in windows if w["modalities"]["audio"]["score"] < 0.25]
    assert low
    for w in low:  # what pushed a clearly negative window pushed it down
        effects = [f["effect"] for f in w["modalities"]["audio"]["details"]["top_features"]]
        assert sum(effects) < 0, effects


def test_head_contributions_are_gradient_times_input():
    head = load_head("audio", None)
    rng = np.random.default_rng(0)
    x = (rng.normal(size=head.input_dim) * head.params["scale"] + head.params["mean"]).astype(np.float32)
    contributions = head.contributions(x)
    z = (x - head.params["mean"]) / head.params["scale"]
    for j in rng.choice(head.input_dim, 6, replace=False):
        step = np.zeros_like(x)
        step[j] = 1e-2 * head.params["scale"][j]
        slope = (head.positivity(x + step)[0] - head.positivity(x - step)[0]) / 2e-2
        assert contributions[j] == pytest.approx(slope * z[j], rel=0.05, abs=1e-4)


def test_heard_shares_split_the_window_into_speech_silence_and_other_sound():
    words = [Word(0.5, 1.5, " a", 0.9), Word(1.0, 2.0, " b", 0.9), Word(3.5, 5.0, " c", 0.9)]
    window = Window(index=10, t_start=10.0, t_end=14.0, audio=np.zeros(0, np.float32), frames=[],
                    words=[Word(w.start + 10, w.end + 10, w.text) for w in words])
    assert window.speech_spans == [(0.5, 1.5), (1.0, 2.0), (3.5, 4.0)]
    # 4 s: a tone from 0 to 3 s, then digital silence; speech from 0.5 to 2 s and from 3.5 s to the end
    t = np.arange(4 * 16000) / 16000
    audio = np.where(t < 3.0, 0.3 * np.sin(2 * np.pi * 220 * t), 0.0).astype(np.float32)
    shares = heard_shares(audio, window.speech_spans)
    assert shares["speech_share"] == pytest.approx(2.0 / 4, abs=0.01)
    assert shares["other_sound_share"] == pytest.approx(1.5 / 4, abs=0.01)  # tone outside speech: 0-0.5, 2-3 s
    assert shares["silence_share"] == pytest.approx(0.5 / 4, abs=0.01)  # quiet outside speech: 3-3.5 s
    assert sum(shares.values()) == pytest.approx(1.0, abs=0.002)
