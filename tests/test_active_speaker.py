"""Who is talking: the mouth-movement speaking score and the voice → face binding of models/active_speaker.py on
synthetic mouth series (no model), and the face mesh's mouth on a real talking head (`models`)."""

from __future__ import annotations

import numpy as np
import pytest

from models.active_speaker import (
    SpeakingFaces,
    mouth_movement,
    moving_threshold,
    talking_probability,
)

RATE = 8.0  # mouth samples per second in the synthetic series
WINDOW_S, HOP_S = 4.0, 2.0  # the pipeline's windows


def talking(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A talking mouth's lip height: about 4 syllables a second, each opening the mouth to its own height (0.05-0.35
    of the mouth's width) and closing it again, and the mesh's jitter."""
    if not len(t):
        return np.zeros(0)
    starts = np.concatenate([[t[0] - 0.1], t[0] - 0.1 + np.cumsum(rng.uniform(0.15, 0.35, int(5 * np.ptp(t)) + 2))])
    k = np.searchsorted(starts, t, side="right") - 1
    phase = (t - starts[k]) / (starts[k + 1] - starts[k])
    peaks = rng.uniform(0.05, 0.35, len(starts))
    return 0.35 + peaks[k] * np.sin(np.pi * phase) + rng.normal(0, 0.005, len(t))


def still(t: np.ndarray, rng: np.random.Generator, level: float = 0.4) -> np.ndarray:
    """A mouth that does not talk: a slow drift (a smile coming and going) and the mesh's jitter."""
    return level + 0.04 * np.sin(2 * np.pi * 0.1 * t) + rng.normal(0, 0.004, len(t))


def conversation(turns: list[tuple[float, float, str]], faces: dict[str, str | None], end: float,
                 seed: int = 0) -> dict[str, list[tuple[float, float]]]:
    """Lip-height series per face: a face talks during the turns of the voice `faces` maps it to (None: never)."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, end, 1 / RATE)
    series = {}
    for face, voice in faces.items():
        height = still(t, rng)
        for t0, t1, speaker in turns:
            if speaker == voice:
                inside = (t >= t0) & (t <= t1)
                height[inside] = talking(t[inside], rng)
        series[face] = list(zip(t.tolist(), height.tolist()))
    return series


def run(series: dict[str, list[tuple[float, float]]], turns: list[tuple[float, float, str]], end: float,
        **options) -> tuple[SpeakingFaces, list[dict]]:
    """The stream: 4 s windows every 2 s, each with its samples, speech regions and segments."""
    faces = SpeakingFaces(**{"frame_rate": RATE, **options})
    scores = []
    t0 = 0.0
    while t0 < end:
        t1 = t0 + WINDOW_S
        window = {f: [(t, o) for t, o in s if t0 <= t < t1] for f, s in series.items()}
        segments = [(a, b, v) for a, b, v in turns if b > t0 and a < t1]
        scores.append(faces.update(t0, t1, window, [(a, b) for a, b, _ in segments], segments))
        t0 += HOP_S
    return faces, scores


def alternating(voices: list[str], turn_s: float = 2.5, gap_s: float = 1.0,
                rounds: int = 3) -> tuple[list[tuple[float, float, str]], float]:
    turns, t = [], 0.5
    for _ in range(rounds):
        for v in voices:
            turns.append((t, t + turn_s, v))
            t += turn_s + gap_s
    return turns, t + 2.0


# --- the measure ------------------------------------------------------------------------------------------------

def test_talking_mouth_moves_more_than_a_still_one_at_every_rate():
    rng = np.random.default_rng(1)
    for rate in (2.0, 5.0, 8.0, 12.5):
        t = np.arange(0, 4, 1 / rate)
        threshold = moving_threshold(rate)
        moving = mouth_movement(list(zip(t, talking(t, rng))), [(0, 4)], max_gap_s=2.5 / rate)
        resting = mouth_movement(list(zip(t, still(t, rng))), [(0, 4)], max_gap_s=2.5 / rate)
        assert moving is not None and resting is not None
        assert talking_probability(moving.mean_step, threshold) > 0.8
        assert talking_probability(resting.mean_step, threshold) < 0.2


def test_thresholds_follow_the_rate_and_too_few_samples_give_no_measure():
    assert moving_threshold(2.0) > moving_threshold(8.0) > moving_threshold(25.0)
    assert moving_threshold(1.0) == moving_threshold(2.0)  # held at the ends of the measured table
    assert moving_threshold(8.0) == pytest.approx(0.035)
    assert mouth_movement([(0.0, 0.1), (0.5, 0.3)], [(0, 1)], max_gap_s=1.0) is None  # one pair
    # pairs further apart than max_gap_s (a lost face) are not a movement
    steady = mouth_movement([(0.0, 0.1), (0.1, 0.1), (2.0, 0.5), (2.1, 0.5)], [(0, 3)], max_gap_s=0.3)
    assert steady is not None and steady.pairs == 2 and steady.mean_step == 0.0
    assert talking_probability(0.0, 0.03) == 0.0
    assert talking_probability(0.03, 0.03) == pytest.approx(0.5)


# --- per-window speaking scores ---------------------------------------------------------------------------------

def test_window_scores_follow_who_talks_and_are_zero_without_a_voice():
    turns, end = alternating(["anna", "ben"], rounds=1)
    series = conversation(turns, {"left": "anna", "right": "ben"}, end)
    faces = SpeakingFaces(frame_rate=RATE)
    a0, a1, _ = turns[0]
    during_anna = faces.update(a0, a1, {f: [(t, o) for t, o in s if a0 <= t < a1] for f, s in series.items()},
                               [(a0, a1)], [turns[0]])
    assert during_anna["left"] > 0.8 and during_anna["right"] < 0.2
    quiet = {f: [(t, o) for t, o in s if a1 + 0.1 <= t < a1 + 0.9] for f, s in series.items()}
    assert faces.update(a1 + 0.1, a1 + 0.9, quiet, [], []) == {"left": 0.0, "right": 0.0}


def test_a_mouth_that_moves_as_much_in_silence_scores_low():
    rng = np.random.default_rng(3)
    t = np.arange(0, 4, 1 / RATE)
    chewing = list(zip(t.tolist(), talking(t, rng).tolist()))  # moves the whole window, voice only in 0..2 s
    talker = [(ti, o if ti < 2.0 else s) for (ti, o), s in zip(chewing, still(t, rng).tolist())]
    scores = SpeakingFaces(frame_rate=RATE).update(0.0, 4.0, {"chewing": chewing, "talker": talker}, [(0.0, 2.0)])
    assert scores["talker"] > 0.8
    assert scores["chewing"] < 0.2


# --- binding voices to faces ------------------------------------------------------------------------------------

def test_each_voice_is_bound_to_the_face_that_talks_with_it():
    turns, end = alternating(["anna", "ben"])
    faces, _ = run(conversation(turns, {"left": "anna", "right": "ben"}, end), turns, end)
    assert faces.binding() == {"anna": "left", "ben": "right"}
    assert faces.speaking_face(turns[-1][0] + 1.0, turns) == "right"
    assert faces.speaking_face(turns[-1][1] + 0.5, turns) is None  # nobody speaks then


def test_swapping_the_mouths_swaps_the_binding():
    turns, end = alternating(["anna", "ben"])
    series = conversation(turns, {"left": "anna", "right": "ben"}, end)
    swapped = {"left": series["right"], "right": series["left"]}
    faces, _ = run(swapped, turns, end)
    assert faces.binding() == {"anna": "right", "ben": "left"}
    unsaid, _ = run(swapped, turns, end, frame_rate=None)  # the rate read from the series
    assert unsaid.binding() == {"anna": "right", "ben": "left"}


def test_a_face_that_never_talks_stays_unbound():
    turns, end = alternating(["anna", "ben"])
    faces, _ = run(conversation(turns, {"left": "anna", "right": "ben", "listener": None}, end), turns, end)
    assert "listener" not in faces.binding().values()
    assert faces.binding() == {"anna": "left", "ben": "right"}


def test_an_off_screen_voice_stays_unbound():
    turns, end = alternating(["anna", "narrator"])
    faces, _ = run(conversation(turns, {"left": "anna", "right": None}, end), turns, end)
    assert faces.binding() == {"anna": "left"}


def test_a_face_that_moves_its_mouth_all_the_time_is_no_voice_s_face():
    """A mouth that moves as much whoever speaks, and in silence, is not bound, however much it moves."""
    turns, end = alternating(["anna", "narrator"])
    series = conversation(turns, {"left": "anna"}, end)
    rng = np.random.default_rng(5)
    t = np.array([s[0] for s in series["left"]])
    series["chewing"] = list(zip(t.tolist(), talking(t, rng).tolist()))
    faces, _ = run(series, turns, end)
    assert faces.binding() == {"anna": "left"}


def test_silence_binds_nothing_and_scores_nothing():
    rng = np.random.default_rng(7)
    end = 20.0
    t = np.arange(0.0, end, 1 / RATE)
    series = {"left": list(zip(t.tolist(), talking(t, rng).tolist())),  # a mouth moving without any voice
              "right": list(zip(t.tolist(), still(t, rng).tolist()))}
    faces, scores = run(series, [], end)
    assert faces.binding() == {}
    assert all(score == 0.0 for window in scores for score in window.values())


def test_too_little_evidence_leaves_the_voice_unbound():
    turns, end = alternating(["anna", "ben"], rounds=1)
    first = turns[:1]  # one segment of one voice: below min_segments
    faces, _ = run(conversation(first, {"left": "anna", "right": "ben"}, end), first, end)
    assert faces.binding() == {}


def test_segments_seen_again_in_overlapping_windows_count_once():
    turns, end = alternating(["anna", "ben"])
    faces, _ = run(conversation(turns, {"left": "anna", "right": "ben"}, end), turns, end)
    evidence = faces.evidence()
    assert evidence["anna"]["left"].segments == sum(1 for *_, v in turns if v == "anna")


def test_a_monologue_is_bound_to_its_face():
    """One face, one voice talking on with short pauses: its long turn still gives separate occasions."""
    turns = [(0.5 + 1.6 * k, 0.5 + 1.6 * k + 1.3, "anna") for k in range(10)]  # 0.3 s pauses
    end = turns[-1][1] + 2.0
    faces, _ = run(conversation(turns, {"left": "anna"}, end), turns, end)
    assert faces.binding() == {"anna": "left"}


def test_a_listener_moving_through_one_turn_only_is_not_bound():
    """A listener who happens to move her mouth through one whole turn of an off-screen voice (a laugh, a grimace)
    is not that voice's face, however many segments the VAD cut that turn into: evidence must come from more than
    one turn."""
    turns, end = alternating(["anna", "narrator"])
    narrator = turns[1]
    half = (narrator[0] + narrator[1]) / 2
    split = [turns[0], (narrator[0], half - 0.15, "narrator"), (half + 0.15, narrator[1], "narrator")]
    series = conversation(turns, {"left": "anna", "listener": None}, end)
    rng = np.random.default_rng(11)
    grimace = [t for t, _ in series["listener"] if narrator[0] <= t <= narrator[1]]
    moving = dict(zip(grimace, talking(np.array(grimace), rng).tolist()))
    series["listener"] = [(t, moving.get(t, o)) for t, o in series["listener"]]
    upto = narrator[1] + 1.0
    lenient, _ = run(series, split, upto, min_turns=1)
    assert lenient.binding().get("narrator") == "listener"  # what one turn alone would do
    faces, _ = run(series, split, upto)
    assert "narrator" not in faces.binding()


# --- the real mouth -----------------------------------------------------------------------------------------------

@pytest.mark.models
def test_the_mouth_of_a_real_talking_head_moves_while_its_voice_speaks():
    """vna_original_2 (a talking head, her own voice, speech from 0.06 s on) against the same face not speaking:
    the clip has no silence of its own long enough (in its pauses the mouth still moves), so, as in
    benchmarks/active_speaker.py, her most-closed-mouth frame held with a slow head sway and sensor noise
    (testkit.talking_heads.listening). The mouth landmarks land inside the face box, the inner lips in its lower
    half, and the lips' height moves above the 8 fps threshold while she speaks, below it while she listens."""
    from models.faces import FaceDetector
    from models.mouth import LOWER_INNER_LIP, MOUTH_LEFT_CORNER, MOUTH_RIGHT_CORNER, UPPER_INNER_LIP, mouth_reader
    from stream.decoding import sample_video
    from testkit.data import need_data
    from testkit.talking_heads import decode_audio, listening, speech_regions

    path = need_data("videos", "vna_original_2.mp4")
    frames = sample_video(path, RATE, max_frames=48)  # 6 s
    speech = speech_regions(decode_audio(path))
    detector, reader = FaceDetector("full"), mouth_reader()

    def mouth(image: np.ndarray) -> tuple[float, tuple[float, float, float, float]]:
        boxes = detector.detect(image)
        assert boxes, "no face found"
        box = max(boxes, key=lambda b: b.box[2] - b.box[0]).box
        reading = reader.read(image, box)
        assert reading is not None and reading.presence > 0.9
        x0, y0, x1, y1 = box
        lips = reading.landmarks[[UPPER_INNER_LIP, LOWER_INNER_LIP, MOUTH_LEFT_CORNER, MOUTH_RIGHT_CORNER], :2]
        assert np.all((lips[:, 0] > x0) & (lips[:, 0] < x1) & (lips[:, 1] > y0) & (lips[:, 1] < y1))
        assert np.all(lips[:2, 1] > (y0 + y1) / 2)  # the lips are in the lower half of the face
        assert reading.landmarks[LOWER_INNER_LIP, 1] >= reading.landmarks[UPPER_INNER_LIP, 1] - 0.5
        return reading.lip_height, box

    speaking = [(f.t, mouth(f.image)[0]) for f in frames]
    closed = frames[int(np.argmin([o for _, o in speaking]))].image
    listening_series = [(k / RATE, mouth(listening(closed, k / RATE, seed=1))[0]) for k in range(24)]  # 3 s

    voiced = [(a, min(b, frames[-1].t)) for a, b in speech if a < frames[-1].t]
    assert voiced and voiced[0][0] < 0.5
    while_speaking = mouth_movement(speaking, voiced, max_gap_s=2.5 / RATE)
    while_listening = mouth_movement(listening_series, [(0.0, 3.0)], max_gap_s=2.5 / RATE)
    assert while_speaking is not None and while_listening is not None
    threshold = moving_threshold(RATE)
    assert while_speaking.mean_step > 1.5 * threshold  # talking_probability > 0.84
    assert while_listening.mean_step < threshold / 1.5  # talking_probability < 0.16


def test_a_face_gone_from_view_takes_its_evidence_along_and_the_voice_is_tied_to_the_face_it_has_now():
    """Anna talks as face "before", leaves the view for longer than history_s, and comes back as a new face "after"
    (a new track id): her voice is tied to the face that talks with it now, and the old face's evidence is gone."""
    turns, end = alternating(["anna", "ben"], rounds=4)
    away = (turns[3][1], turns[3][1] + 40.0)  # after her second turn, 40 s without her face nor voices
    later = [(a + 40.0, b + 40.0, v) for a, b, v in turns[4:]]
    first = conversation(turns[:4], {"before": "anna", "ben's": "ben"}, away[0])
    second = conversation(later, {"after": "anna", "ben's": "ben"}, end + 40.0)
    series = {"before": first["before"], "ben's": first["ben's"] + [s for s in second["ben's"] if s[0] >= away[1]],
              "after": [s for s in second["after"] if s[0] >= away[1]]}
    faces, _ = run(series, turns[:4] + later, end + 40.0)
    assert faces.binding() == {"anna": "after", "ben": "ben's"}
    assert "before" not in faces.evidence().get("anna", {})
