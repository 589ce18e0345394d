"""Input quality in every modality's confidence, and in fusion: hand-computed rules, and real clips and faces against
their degraded copies (a face downscaled to 24 px, noise at 0 dB SNR) scoring lower and counting less."""

from __future__ import annotations

import numpy as np
import pytest

from media import SAMPLE_RATE
from models.audio import audio_quality, clipped_share
from models.base import ModalityScore, Quality
from models.faces import Face, FaceBox, face_quality
from models.fusion import evidence, fuse
from models.text import Said, text_quality
from models.visual import FrameAnalysis, VisualScorer
from testkit.data import need_data


def test_face_quality_by_hand():
    assert face_quality(64, 0.0028, 1.0) == (1.0, [])
    q, notes = face_quality(24, 0.003, 1.0)
    assert q == pytest.approx((24 - 16) / (64 - 16)) and notes == ["small face (24 px)"]
    q, notes = face_quality(200, 0.0018, 0.0)  # half-way sharp, a profile
    assert q == pytest.approx(0.5 * 0.5) and notes == ["blurred face", "face turned away"]
    assert face_quality(200, None, None)[0] == 1.0  # nothing measured: nothing held against it


def test_frontal_from_the_key_points():
    eyes_and_nose = ((40.0, 50.0), (80.0, 50.0), (60.0, 70.0))
    assert FaceBox((0, 0, 100, 100), 0.9, eyes_and_nose).frontal == pytest.approx(1.0)
    assert FaceBox((0, 0, 100, 100), 0.9, ((40.0, 50.0), (80.0, 50.0), (80.0, 70.0))).frontal == pytest.approx(0.0)
    assert FaceBox((0, 0, 100, 100), 0.9).frontal is None


def _frame(face_px: float, sharpness: float, valence: float, size=(360, 640)) -> FrameAnalysis:
    face = Face(box=(100, 100, 100 + face_px, 100 + face_px), score=0.9,
                emotions={"angry": 0.0, "disgust": 0.0, "fear": 0.0, "happy": valence, "sad": 1 - valence,
                          "surprise": 0.0, "neutral": 0.0}, valence=valence, sharpness=sharpness, frontal=1.0)
    return FrameAnalysis(faces=[face], face_valence=valence, scene_embedding=np.zeros(4, np.float32), image_size=size)


class _Scene:
    def positivity(self, X):
        return np.full(len(X), 0.3)


def test_small_blurred_faces_count_less_in_the_visual_blend_and_its_quality():
    scorer = VisualScorer(None, _Scene())
    sharp = scorer.score([_frame(120, 0.01, 0.95)] * 4)
    tiny = scorer.score([_frame(20, 0.0012, 0.95)] * 4)
    assert sharp.details["face_share"] == pytest.approx(0.75)
    assert tiny.details["face_share"] < 0.1 and tiny.score < sharp.score  # the scene (0.3) carries it
    assert sharp.quality is not None and sharp.quality.value == pytest.approx(1.0)
    assert tiny.quality is not None and "small faces (20 px)" in tiny.quality.notes
    thumbnail = scorer.score([FrameAnalysis([], None, np.zeros(4, np.float32), image_size=(54, 96))] * 4)
    assert thumbnail.quality is not None and thumbnail.quality.value < 0.3
    assert thumbnail.quality.notes == ("low-resolution frames (54 px)",)
    assert thumbnail.confidence < 0.6 * abs(2 * thumbnail.score - 1) * 0.3


def test_audio_quality_by_hand():
    assert audio_quality(-30.0, -0.4, 0.0).value == 1.0
    quiet = audio_quality(-52.5, -0.4, 0.0)
    assert quiet.value == pytest.approx(0.5) and quiet.notes == ("quiet (-52 dBFS)",)
    assert audio_quality(-30.0, -0.08, 0.0).value == 0.0
    assert audio_quality(-30.0, -0.4, 0.01).value == pytest.approx(0.5)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = np.sin(2 * np.pi * 220 * t).astype(np.float32)
    assert clipped_share(tone) == 0.0
    assert clipped_share(np.clip(3 * tone, -1, 1)) > 0.3


def test_text_quality_from_the_words_and_their_probabilities():
    assert text_quality(Said("it was the best of times", "en", (0.9,) * 6)).value == 1.0
    unsure = text_quality(Said("it was the best of times", "en", (0.55,) * 6))
    assert unsure.value == pytest.approx(0.5) and unsure.notes == ("unsure words (probability 0.55)",)
    one = text_quality(Said("what", "en", (0.9,)))
    assert one.value == pytest.approx(0.25) and one.notes == ("few words (1)",)
    assert text_quality(Said("a b c d")).value == 1.0  # no probabilities known: the count alone


def test_a_poor_input_moves_the_fused_verdict_towards_the_middle_and_says_why():
    text = ModalityScore.of(0.7)
    good_face = ModalityScore.of(0.9, quality=Quality(1.0))
    poor_face = ModalityScore.of(0.1, quality=Quality(0.1, ("small faces (9 px)",)))
    assert evidence(poor_face) == pytest.approx(0.5 - 0.1 * 0.4)
    assert poor_face.confidence == pytest.approx(0.8 * 0.1)
    clean = fuse({"text": text, "visual": good_face})
    degraded = fuse({"text": text, "visual": poor_face})
    ignored = fuse({"text": text, "visual": ModalityScore.of(0.1)})
    assert clean.score > degraded.score > 0.5 > ignored.score  # towards the middle, not across
    assert any("poor visual input (quality 0.10: small faces (9 px))" == d for d in degraded.doubts)
    for method in ("product", "stacking", "vote"):
        assert fuse({"text": text, "visual": poor_face}, method).score is not None


@pytest.mark.models
def test_a_real_face_downscaled_to_24_px_has_low_quality_and_less_weight():
    import av

    from models.images import resize
    from models.visual import VisualAnalyzer

    with av.open(str(need_data("videos", "pyfeat_single_face.mp4"))) as container:
        image = next(container.decode(video=0)).to_ndarray(format="rgb24")
    analyzer = VisualAnalyzer("cpu")
    [face] = analyzer.analyze_faces(image)
    assert face.size_px > 100 and face.quality > 0.9
    k = 24 / face.size_px
    small = resize(image, int(image.shape[1] * k), int(image.shape[0] * k))
    [small_face] = analyzer.analyze_faces(small)
    assert small_face.size_px == pytest.approx(24, abs=4) and small_face.quality < 0.3
    scorer = VisualScorer(analyzer, None)
    assert scorer.score(analyzer.analyze([image])).quality.value > 0.9
    assert scorer.score(analyzer.analyze([small])).quality.value < 0.3


@pytest.mark.models
def test_a_real_voice_with_noise_at_0_db_has_low_quality():
    from models.audio import AudioEmbedder, AudioScorer
    from models.heads import load_head
    from training.embed_cache import load_audio

    head = load_head("audio")
    audio_scorer = AudioScorer(AudioEmbedder.for_head(head, "cpu"), head)
    voice = load_audio(need_data("ravdess", "Actor_20", "03-01-03-02-01-01-20.flac"))[:4 * SAMPLE_RATE]
    rng = np.random.default_rng(0)
    noisy = voice + rng.standard_normal(len(voice)).astype(np.float32) * np.sqrt(np.mean(voice ** 2))
    clean_score, noisy_score = audio_scorer.score([voice, noisy.astype(np.float32)])
    assert clean_score.quality.value == 1.0 and not clean_score.quality.notes
    assert noisy_score.quality.value < 0.2 and "noisy" in noisy_score.quality.notes
    assert noisy_score.confidence < clean_score.confidence


def test_the_end_summary_keeps_the_mean_quality_and_the_notes_of_a_third_of_the_windows():
    from engine.summary import OverallScores

    overall = OverallScores()
    for value, notes in ((0.2, ("small faces (14 px)",)), (0.4, ("small faces (20 px)",)), (1.0, ()),
                         (0.9, ("blurred face",)), (1.0, ()), (1.0, ())):
        overall.add({"visual": ModalityScore.of(0.8, quality=Quality(value, notes))})
    visual = overall.modalities()["visual"]
    assert visual.quality is not None and visual.quality.value == pytest.approx(4.5 / 6)
    assert visual.quality.notes == ("small faces",)  # 2 of 6 windows; "blurred face" only 1
    assert visual.to_json()["quality"] == {"value": 0.75, "notes": ["small faces"], "features": {}}
    assert overall.modalities()["text"].quality is None
