"""Audio modality: the embedding on real speech, silence handling, and a real valence check on RAVDESS."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from media import SAMPLE_RATE
from models.audio import AudioEmbedder, AudioScorer
from models.audio_features import (
    PROSODY_NAMES,
    SILENCE_DBFS,
    TONAL_NAMES,
    active_level_db,
    prosody_features,
    tonal_features,
)
from testkit.data import DATA, need_data

MODEL_FIXTURES = ("embedder",)  # these load real models: conftest marks their tests `models`
RAVDESS = DATA / "ravdess"
POSITIVE = {"happy", "calm"}
NEGATIVE = {"angry", "sad", "fearful", "disgust"}


def _decode(path: Path) -> np.ndarray:
    from faster_whisper import decode_audio

    return decode_audio(str(path), sampling_rate=SAMPLE_RATE)


def _ravdess_rows() -> list[dict[str, str]]:
    need_data("ravdess", "labels.csv")
    with open(RAVDESS / "labels.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def embedder() -> AudioEmbedder:
    return AudioEmbedder("tiny.en", device="cpu")


class _LogRegHead:
    """The Head interface (positivity) over a scikit-learn pipeline, so the scorer is tested on a real fit."""

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline

    def positivity(self, X: np.ndarray) -> np.ndarray:
        return self.pipeline.predict_proba(X)[:, 1]


def test_embedding_shape_determinism_and_model_id(embedder: AudioEmbedder) -> None:
    rows = _ravdess_rows()
    clips = [_decode(RAVDESS / rows[i]["path"]) for i in (0, 700)]
    first = embedder.embed(clips)
    again = embedder.embed(clips[::-1])[::-1]
    assert first.shape == (2, embedder.dim) == (2, 2 * 384 + len(PROSODY_NAMES) + len(TONAL_NAMES))
    assert first.dtype == np.float32 and np.all(np.isfinite(first))
    np.testing.assert_allclose(first, again, rtol=1e-5, atol=1e-5)
    assert not np.allclose(first[0], first[1])
    assert "tiny.en" in embedder.model_id and "v" in embedder.model_id.rsplit("-", 1)[-1]
    assert embedder.embed([]).shape == (0, embedder.dim)


def test_embedding_reads_the_chosen_encoder_block_and_names_it(embedder: AudioEmbedder) -> None:
    from models.whisper import encoder_block_count, truncated_whisper_dir

    rows = _ravdess_rows()
    clip = _decode(RAVDESS / rows[0]["path"])
    assert encoder_block_count("tiny.en") == 4 and embedder.encoder_blocks == 3
    assert embedder.model_id == f"whisper-tiny.en-enc3-meanstd+prosody{len(PROSODY_NAMES)}+tonal{len(TONAL_NAMES)}-v2"
    full = AudioEmbedder("tiny.en", encoder_blocks=4, device="cpu")
    # all four blocks keep the id embeddings had before the depth was selectable
    assert full.model_id == f"whisper-tiny.en-enc-meanstd+prosody{len(PROSODY_NAMES)}+tonal{len(TONAL_NAMES)}-v2"
    third, fourth = embedder.encoder_states([clip])[0], full.encoder_states([clip])[0]
    assert third.shape == fourth.shape and not np.allclose(third, fourth, atol=1e-2)
    # the truncated model is the full one without block 3: same size of everything else, made once
    model_dir = truncated_whisper_dir("tiny.en", 3)
    before = (model_dir / "model.bin").stat().st_mtime_ns
    assert truncated_whisper_dir("tiny.en", 3) == model_dir and (model_dir / "model.bin").stat().st_mtime_ns == before
    # a head's card names the embedding: the embedder is rebuilt from it, and a foreign id is refused
    again = AudioEmbedder.from_model_id(embedder.model_id, "cpu")
    np.testing.assert_allclose(again.embed([clip]), embedder.embed([clip]), rtol=1e-5, atol=1e-5)
    assert AudioEmbedder.from_model_id(full.model_id, "cpu").encoder_blocks == 4
    for foreign in ("clap-htsat-v2", f"whisper-tiny.en-enc3-meanstd+prosody{len(PROSODY_NAMES)}-v1"):
        with pytest.raises(ValueError, match="cannot compute audio embeddings"):
            AudioEmbedder.from_model_id(foreign, "cpu")
    with pytest.raises(ValueError, match="4 encoder blocks"):
        AudioEmbedder("tiny.en", encoder_blocks=5, device="cpu")


def test_tonal_features_tell_major_from_minor() -> None:
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE

    def chord(*hz: float) -> np.ndarray:
        return (sum(np.sin(2 * np.pi * f * t) for f in hz) / len(hz)).astype(np.float32)

    c, d, e, f, g, a, b = 261.63, 293.66, 329.63, 349.23, 392.0, 440.0, 493.88
    e_flat, a_flat = 311.13, 415.30
    # I - IV - V - I in C major, and the same cadence in C minor
    major = np.concatenate([chord(c, e, g), chord(f, a, 2 * c), chord(g, b, 2 * d), chord(c, e, g, 2 * c)])
    minor = np.concatenate([chord(c, e_flat, g), chord(f, a_flat, 2 * c), chord(g, b, 2 * d),
                            chord(c, e_flat, g, 2 * c)])
    at = {name: i for i, name in enumerate(TONAL_NAMES)}
    in_major, in_minor = tonal_features(major), tonal_features(minor)
    assert in_major[at["major_minus_minor"]] > 0.2 and in_major[at["best_key_is_major"]] == 1.0
    assert in_minor[at["major_minus_minor"]] < -0.1 and in_minor[at["best_key_is_major"]] == 0.0
    # key-normalised: the same chord a fifth higher has (nearly) the same profile from its key
    from_key = slice(at["chroma_from_key_0"], None)
    c_minor, g_minor = tonal_features(chord(c, e_flat, g)), tonal_features(chord(g, 466.16, 2 * d))
    assert np.corrcoef(c_minor[from_key], g_minor[from_key])[0, 1] > 0.95
    assert np.all(np.isfinite(tonal_features(np.zeros(SAMPLE_RATE, np.float32))))


def test_live_windows_cut_a_recording_as_the_pipeline_does() -> None:
    from stream.windows import window_spans
    from training.evaluate import live_windows

    assert window_spans(30.0) == [(float(t), float(t) + 4) for t in range(0, 27, 2)]
    assert window_spans(5.0) == [(0.0, 4.0), (1.0, 5.0)]
    assert window_spans(3.0) == [(0.0, 3.0)]
    audio = np.arange(30 * SAMPLE_RATE, dtype=np.float32)
    windows = live_windows(audio)
    assert len(windows) == 14 and all(len(w) == 4 * SAMPLE_RATE for w in windows)
    assert windows[0][0] == 0 and windows[-1][-1] == audio[-1]
    assert [len(w) for w in live_windows(audio[: 5 * SAMPLE_RATE])] == [4 * SAMPLE_RATE] * 2


def test_long_clip_is_chunked_and_short_clip_is_accepted(embedder: AudioEmbedder) -> None:
    path = need_data("speech", "two_cities.flac")
    audio = _decode(path)
    assert len(audio) > 30 * SAMPLE_RATE
    states = embedder.encoder_states([audio])[0]
    # 44 s in two equal chunks of 22 s: 50 encoder frames per second in all.
    assert abs(states.shape[0] - len(audio) / SAMPLE_RATE * 50) < 5
    X = embedder.embed([audio, audio[: SAMPLE_RATE // 2]])
    assert X.shape == (2, embedder.dim) and np.all(np.isfinite(X))


def test_pitch_follows_the_speaker() -> None:
    """Median F0 of female actors' speech lies well above the male actors' (real voices, not synthetic tones)."""
    rows = [r for r in _ravdess_rows() if r["emotion"] == "neutral" and r["repetition"] == "1"][:16]
    f0_at = PROSODY_NAMES.index("f0_semitones_median")
    by_gender: dict[str, list[float]] = {"male": [], "female": []}
    for r in rows:
        features = prosody_features(_decode(RAVDESS / r["path"]))
        assert features[PROSODY_NAMES.index("voiced_ratio")] > 0.1
        by_gender[r["gender"]].append(100 * 2 ** features[f0_at])  # semitones / 12 re 100 Hz → Hz
    assert by_gender["male"] and by_gender["female"]
    assert 80 < np.median(by_gender["male"]) < 180 < np.median(by_gender["female"]) < 330


def test_silence_and_empty_audio_are_missing(embedder: AudioEmbedder) -> None:
    scorer = AudioScorer(embedder, head=None)
    rng = np.random.default_rng(0)
    quiet_noise = (10 ** (-70 / 20) * rng.standard_normal(4 * SAMPLE_RATE)).astype(np.float32)
    results = scorer.score([np.zeros(4 * SAMPLE_RATE, np.float32), quiet_noise, np.zeros(0, np.float32)])
    assert [r.reason for r in results] == ["silence", "silence", "no audio"]
    assert all(not r.available and r.score is None for r in results)
    assert active_level_db(quiet_noise) < SILENCE_DBFS


def test_unusable_audio_is_missing_not_an_error(embedder: AudioEmbedder) -> None:
    scorer = AudioScorer(embedder, head=None)
    stereo = np.zeros((2, SAMPLE_RATE), np.float32)
    broken = np.full(SAMPLE_RATE, np.nan, np.float32)
    results = scorer.score([stereo, broken])
    assert all(not r.available for r in results)
    assert all(r.reason.startswith("unusable audio") for r in results)
    with pytest.raises(ValueError, match="finite"):
        embedder.embed([broken])


def test_speech_without_a_head_is_missing(embedder: AudioEmbedder) -> None:
    rows = _ravdess_rows()
    [result] = AudioScorer(embedder, head=None).score([_decode(RAVDESS / rows[0]["path"])])
    assert not result.available and result.reason == "no audio head"


def test_valence_is_learnable_across_speakers(embedder: AudioEmbedder) -> None:
    """A logistic regression on 70 clips of actors 1-18 tells happy/calm from angry/sad/fearful/disgust in
    actors 19-24 (unseen speakers) far above chance, and the scorer carries that through."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows = [r for r in _ravdess_rows() if r["emotion"] in POSITIVE | NEGATIVE and r["intensity"] == "strong"]
    rng = np.random.default_rng(0)
    train = [r for r in rows if int(r["actor"]) <= 18]
    test = [r for r in rows if int(r["actor"]) >= 19]
    train = [train[i] for i in rng.choice(len(train), 70, replace=False)]
    test = [test[i] for i in rng.choice(len(test), 30, replace=False)]

    def label(r: dict[str, str]) -> int:
        return int(r["emotion"] in POSITIVE)

    X_train = embedder.embed([_decode(RAVDESS / r["path"]) for r in train])
    test_clips = [_decode(RAVDESS / r["path"]) for r in test]
    y_train, y_test = np.array([label(r) for r in train]), np.array([label(r) for r in test])
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=0.03, max_iter=2000, class_weight="balanced"))
    pipeline.fit(X_train, y_train)

    results = AudioScorer(embedder, _LogRegHead(pipeline)).score(test_clips)
    assert all(r.available for r in results), {r.reason for r in results}
    scores = np.array([r.score for r in results])
    accuracy = float(np.mean((scores >= 0.5) == y_test))
    assert accuracy >= 0.7, f"cross-speaker valence accuracy {accuracy:.2f}"
    assert scores[y_test == 1].mean() > scores[y_test == 0].mean() + 0.2
    assert all(SILENCE_DBFS < r.details["active_db"] < 0 and r.details["rms_db"] < 0 for r in results)
