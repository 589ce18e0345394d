"""Per-person timelines: faces tracked across sampled frames keep a stable `person` id, windows carry per-person
scores and the visual evidence (`strongest_t` ...), the end summary a per-person summary."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest

from engine import PipelineConfig, analyze_file
from models.faces import EMOTIONS, Face, face_valence
from models.images import load_image
from models.scene import SCENE_DIM
from models.tracking import FaceTracker, PeopleTracker
from models.visual import FrameAnalysis, VisualScorer, _weighted_valence
from testkit.data import need_data

FRAME = (360, 640)  # (height, width) of the synthetic frames


@dataclass
class Box:
    box: tuple[float, float, float, float]
    person: int | None = None


def square(cx: float, cy: float, side: float = 100.0) -> Box:
    return Box((cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))


def track(tracker: FaceTracker, frames: list[list[Box]], fps: float = 2.0) -> list[list[int]]:
    return [tracker.update(i / fps, faces, FRAME) for i, faces in enumerate(frames)]


# --- the tracker on synthetic boxes -------------------------------------------------------------------------------


def test_a_face_moving_further_than_its_width_between_samples_keeps_its_id():
    # 120 px of a 100 px face per 0.5 s sample: no overlap from one frame to the next, so only the centre fallback
    # and the velocity prediction can follow it
    frames = [[square(60 + 120 * i, 180)] for i in range(5)]
    ids = track(FaceTracker(), frames)
    assert ids == [[1]] * 5
    assert frames[-1][0].person == 1


def test_two_faces_get_two_ids_that_stay_with_them():
    ids = track(FaceTracker(), [[square(150, 180), square(450, 180)] for _ in range(4)])
    assert ids == [[1, 2]] * 4
    # the order faces come in does not matter
    tracker = FaceTracker()
    track(tracker, [[square(150, 180), square(450, 180)]])
    assert tracker.update(0.5, [square(452, 182), square(148, 178)], FRAME) == [2, 1]


def test_a_face_gone_longer_than_forget_s_comes_back_as_a_new_person_without_rejoining():
    tracker = FaceTracker(forget_s=3.0, rejoin_s=0.0)
    assert tracker.update(0.0, [square(300, 180)], FRAME) == [1]
    assert tracker.update(2.5, [square(300, 180)], FRAME) == [1]  # missed detections for 2.5 s: the same person
    assert tracker.update(6.0, [], FRAME) == []
    assert tracker.update(6.5, [square(300, 180)], FRAME) == [2]  # away 4 s: a new one


def test_a_face_back_in_its_place_is_the_same_person_and_one_elsewhere_or_too_late_is_not():
    tracker = FaceTracker(forget_s=3.0, rejoin_s=30.0)
    assert tracker.update(0.0, [square(150, 180), square(450, 180)], FRAME) == [1, 2]
    assert tracker.update(1.0, [square(450, 180)], FRAME) == [2]  # the one on the left steps out
    assert tracker.update(10.0, [square(450, 180)], FRAME) == [2]
    assert tracker.update(12.0, [square(155, 178), square(450, 180)], FRAME) == [1, 2]  # back, 11 s later
    assert tracker.update(13.0, [square(450, 180)], FRAME) == [2]
    assert tracker.update(20.0, [square(300, 60), square(450, 180)], FRAME) == [3, 2]  # elsewhere: someone new
    tracker.update(21.0, [], FRAME)
    assert tracker.update(60.0, [square(150, 180)], FRAME) == [4]  # 47 s after person 1 left: no longer taken up


def test_crossing_faces_keep_their_ids():
    # two faces walking past each other at 60 px a sample, one a little lower: they pass between two samples, after
    # which each is nearer the other's last box than its own, and only their velocities tell them apart
    frames = [[square(300 - 60 * (3 - i), 160), square(340 + 60 * (3 - i), 180)] for i in range(8)]
    ids = track(FaceTracker(), frames)
    assert ids == [[1, 2]] * 8


def test_a_face_far_away_or_of_another_size_is_someone_else():
    tracker = FaceTracker()
    tracker.update(0.0, [square(100, 180)], FRAME)
    assert tracker.update(0.5, [square(500, 180)], FRAME) == [2]  # 4 face widths away
    tracker = FaceTracker()
    tracker.update(0.0, [square(300, 180, side=60)], FRAME)
    assert tracker.update(0.5, [square(330, 180, side=200)], FRAME) == [2]  # overlapping, but 3x its size


def test_a_change_of_resolution_keeps_the_people():
    tracker = FaceTracker()
    tracker.update(0.0, [square(300, 180)], FRAME)
    half = Box(tuple(v / 2 for v in square(300, 180).box))
    assert tracker.update(0.5, [half], (FRAME[0] // 2, FRAME[1] // 2)) == [1]


def test_five_slowly_moving_faces_stay_five_people():
    tracker = FaceTracker()
    rng = np.random.default_rng(0)
    centres = rng.uniform(100, 500, size=(5, 2))
    for i in range(200):
        centres += rng.normal(0, 5, size=centres.shape)
        tracker.update(i / 2, [square(x, y, 60) for x, y in centres], FRAME)
    assert tracker.next_person == 6, "five slowly moving faces are five people"


def test_people_tracker_is_bounded_and_skips_frames_without_faces():
    people = PeopleTracker(FaceTracker(forget_s=0.1, rejoin_s=0.0), keep=3)
    people.observe(0.0, object())  # a pipeline fake's analysis: no faces, nothing tracked
    emotions = {e: 1.0 if e == "happy" else 0.0 for e in EMOTIONS}
    for i in range(10):
        # person i+1 appears in i+1 frames, far apart in time so that each is a new person
        for k in range(i + 1):
            face = Face(square(300, 180).box, 0.9, emotions, valence=1.0)
            people.observe(10.0 * i + 0.05 * k, FrameAnalysis([face], 1.0, np.zeros(SCENE_DIM), FRAME))
    summary = people.summary()
    assert [p["person"] for p in summary] == [8, 9, 10] and people.people_seen == 10
    assert summary[-1] == {"person": 10, "first_seen": 90.0, "last_seen": 90.45, "frames": 10, "score": 1.0,
                           "top_emotion": "happy"}


# --- the scorer's per-person details and evidence -----------------------------------------------------------------


class ConstantScene:
    def __init__(self, p: float) -> None:
        self.p = p

    def positivity(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), self.p)


def face(top: str, p: float, person: int | None, x: float = 300.0) -> Face:
    rest = (1 - p) / (len(EMOTIONS) - 1)
    emotions = {e: p if e == top else rest for e in EMOTIONS}
    return Face(square(x, 180).box, 0.9, emotions, face_valence(emotions), person)


def frame_at(t: float | None, *faces: Face) -> FrameAnalysis:
    return FrameAnalysis(list(faces), _weighted_valence(list(faces), FRAME), np.zeros(SCENE_DIM, np.float32), FRAME,
                         t=t)


def test_scorer_names_people_and_the_strongest_frame():
    # person 1 smiles throughout, most broadly at 10.5 s, when person 2 (mildly sad) is not detected
    frames = [frame_at(10.0, face("happy", 0.7, 1), face("sad", 0.5, 2, x=500)),
              frame_at(10.5, face("happy", 0.95, 1)),
              frame_at(11.0, face("happy", 0.8, 1), face("sad", 0.5, 2, x=500))]
    result = VisualScorer(None, ConstantScene(0.5)).score(frames)
    details = result.details
    assert result.score > 0.5
    people = {p["person"]: p for p in details["people"]}
    assert list(people) == [1, 2]
    assert people[1]["top_emotion"] == "happy" and people[1]["score"] > 0.5 and people[1]["frames"] == 3
    assert people[2]["top_emotion"] == "sad" and people[2]["score"] < 0.5 and people[2]["frames"] == 2
    assert people[1]["share"] == pytest.approx(0.6, abs=1e-3) and people[2]["share"] == pytest.approx(0.4, abs=1e-3)
    assert details["strongest_source"] == "face" and details["strongest_person"] == 1
    assert details["strongest_emotion"] == "happy" and details["strongest_t"] == 10.5
    assert details["strongest_score"] >= result.score

    negative = VisualScorer(None, ConstantScene(0.5)).score([frame_at(3.0, face("sad", 0.9, 4)),
                                                             frame_at(3.5, face("neutral", 0.9, 4))])
    assert negative.score < 0.5
    assert negative.details["strongest_t"] == 3.0 and negative.details["strongest_emotion"] == "sad"
    assert negative.details["people"] == [{"person": 4, "score": negative.details["face_valence"],
                                           "top_emotion": negative.details["top_emotion"], "frames": 2,
                                           "share": 1.0}]


def test_scene_evidence_and_untimed_frames():
    scene_only = VisualScorer(None, ConstantScene(0.2)).score([frame_at(1.0), frame_at(1.5)])
    assert scene_only.details["strongest_source"] == "scene" and scene_only.details["strongest_t"] == 1.0
    assert "people" not in scene_only.details
    # faces nobody tracked and frames without times (images scored outside a stream): no people, no times
    untimed = VisualScorer(None, None).score([frame_at(None, face("happy", 0.9, None))])
    assert untimed.available and "people" not in untimed.details and "strongest_t" not in untimed.details


# --- real media through the pipeline ------------------------------------------------------------------------------


def analyze(engine, path) -> dict:
    return asyncio.run(analyze_file(path, engine, PipelineConfig()))


def visual_details(result: dict) -> list[dict]:
    return [w["modalities"]["visual"].get("details", {}) for w in result["windows"]]


@pytest.fixture(scope="module")
def face_clip(engine) -> dict:
    return analyze(engine, need_data("videos", "pyfeat_WolfgangLanger_Pexels.mp4"))


def test_the_face_clip_keeps_one_id_for_its_face(face_clip):
    windows = [d for d in visual_details(face_clip) if d.get("frames_with_faces")]
    assert len(windows) >= 8
    main = Counter(max(d["people"], key=lambda p: p["share"])["person"] for d in windows)
    person, count = main.most_common(1)[0]
    assert count >= 0.9 * len(windows), main
    assert len(face_clip["people"]) <= 2, face_clip["people"]  # one man in view throughout; at most one brief slip
    (summary,) = [p for p in face_clip["people"] if p["person"] == person]
    assert summary["first_seen"] <= 0.5 and summary["last_seen"] >= face_clip["duration"] - 1.0
    sampled = len(np.arange(0, face_clip["duration"], 0.5))  # at 2 fps
    assert summary["frames"] >= 0.9 * sampled


def test_evidence_on_the_face_clip_is_consistent_with_the_score(face_clip):
    for window, details in zip(face_clip["windows"], visual_details(face_clip)):
        visual = window["modalities"]["visual"]
        assert window["t_start"] <= details["strongest_t"] < window["t_end"]
        # the strongest frame leans the way the window does, at least as far
        assert (details["strongest_score"] - 0.5) * (visual["score"] - 0.5) >= 0
        assert abs(details["strongest_score"] - 0.5) >= abs(visual["score"] - 0.5) - 0.05
        if len(details["people"]) == 1:
            assert details["people"][0]["score"] == details["face_valence"]
            assert details["people"][0]["top_emotion"] == details["top_emotion"]
        if details["strongest_source"] == "face":
            assert details["strongest_person"] in {p["person"] for p in details["people"]}


def test_no_face_clip_has_no_people(engine):
    result = analyze(engine, need_data("videos", "pyfeat_no_face.mp4"))
    assert result["people"] == []
    for window, details in zip(result["windows"], visual_details(result)):
        assert "people" not in details
        assert details["strongest_source"] == "scene"
        assert window["t_start"] <= details["strongest_t"] < window["t_end"]


def test_group_photo_gives_one_stable_id_per_face(engine, tmp_path):
    image_path = need_data("videos", "pyfeat_multi_face.jpg")
    analyzer = engine.scorers.frames
    image = load_image(image_path)
    found = len(analyzer.analyze_faces(image))
    assert found >= 4  # five people; tests/test_visual.py tolerates one miss
    # the same photo three times: each face keeps its id
    people = PeopleTracker()
    for t, analysis in zip((0.0, 0.5, 1.0), analyzer.analyze([image] * 3)):
        people.observe(t, analysis)
        assert sorted(f.person for f in analysis.faces) == list(range(1, found + 1))
    assert [p["frames"] for p in people.summary()] == [3] * found
    # and as a 3 s video through the pipeline (its odd height cropped by one row for yuv420p)
    video = tmp_path / "group.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-loop", "1", "-i", str(image_path), "-t", "3", "-r", "10",
                    "-vf", "crop=iw:floor(ih/2)*2:0:0", "-pix_fmt", "yuv420p", "-c:v", "libx264", str(video)],
                   check=True, timeout=60)
    result = analyze(engine, video)
    assert len(result["people"]) == found
    assert all(p["frames"] == 6 for p in result["people"]), result["people"]
    assert all(len(d["people"]) == found for d in visual_details(result))


async def test_a_source_sampling_for_mouths_slows_to_the_scorers_rate_when_told_while_it_plays():
    """The pipeline raises a source's rate before it opens (mouths may be read) and lowers it once open when no
    mouths will be: the change holds from the next frame, whatever the source has already opened."""
    from media import VideoFrame
    from stream.sources import FileSource

    source = FileSource(need_data("videos", "vna_original_2.mp4"), realtime=False, sample_fps=8.0)
    await source.open()
    times = []
    async for item in source:
        if isinstance(item, VideoFrame):
            times.append(item.t)
            if item.t >= 4.0 and source.sample_fps == 8.0:
                source.sample_fps = 2.0
    before = [t for t in times if t < 4.0]
    after = [t for t in times if t > 4.5]
    assert len(before) == pytest.approx(4.0 * 8, abs=2)
    assert len(after) == pytest.approx((times[-1] - 4.5) * 2, abs=2) and min(np.diff(after)) >= 0.45
