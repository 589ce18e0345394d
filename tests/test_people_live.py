"""Who feels what (issue #32), through the real pipeline and models: each voice tied to the face whose mouth moves
with it, a face that never speaks and an off-screen voice left unbound, each person's own text, voice and face
verdicts, fused and rolling, with a reason for each missing one; the end summary per person. Real talking heads side
by side taking turns (testkit.talking_heads), RAVDESS actors of both sexes in a happy and an angry voice, and bad
input: no audio, no video, a crowd of faces, a face that leaves and comes back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from engine import PipelineConfig
from engine.people import MAX_MOUTHS, MouthTrack
from engine.pipeline import StreamPipeline
from media import VideoFrame
from models.visual import MAX_FACES, largest_faces
from protocol import EndMessage, WindowMessage
from stream.sources import FileSource
from testkit.data import need_data
from testkit.people import face_panels, share, sides_right, voice_truth


class CountingSource(FileSource):
    """A file replayed as fast as possible that counts the frames it samples."""

    frames = 0

    async def __aiter__(self):
        async for item in super().__aiter__():
            self.frames += isinstance(item, VideoFrame)
            yield item


def replay(engine, path: Path, config: PipelineConfig | None = None) -> tuple[StreamPipeline, list, EndMessage]:
    messages: list = []

    async def run():
        pipeline = StreamPipeline("people", CountingSource(path, realtime=False), engine, config or PipelineConfig(),
                                  emit=messages.append)
        return pipeline, await pipeline.run()

    pipeline, end = asyncio.run(run())
    return pipeline, [m for m in messages if isinstance(m, WindowMessage)], end


@pytest.fixture(scope="module")
def talking_heads(tmp_path_factory):
    """Two real talking heads side by side taking turns with their own voices (twice through their speech), and
    right of them a real face that never speaks: the video, and its conversation (turns, panels)."""
    from testkit.talking_heads import LISTENER, TALKERS, talkers_and_listener, write_conversation

    for name in (*TALKERS, LISTENER):
        need_data("videos", name)
    conversation = talkers_and_listener(need_data("videos", LISTENER).parent, rounds=2)
    # 16 fps: the 8 fps the mouths are read at is every other frame, and the video is made in 2/3 of the time
    path = write_conversation(conversation, tmp_path_factory.mktemp("people") / "conversation.mp4", fps=16.0)
    return path, conversation


@pytest.fixture(scope="module")
def talking_heads_replayed(engine_with_voices, talking_heads):
    path, conversation = talking_heads
    pipeline, windows, end = replay(engine_with_voices, path)
    return pipeline, windows, end, conversation


@pytest.mark.models
def test_each_voice_is_tied_to_the_face_whose_mouth_moves_with_it(talking_heads_replayed):
    pipeline, windows, end, conversation = talking_heads_replayed
    panel_of = face_panels(pipeline.frames.results.between(0.0, float("inf")), conversation)
    assert sorted(panel_of.values()) == sorted(conversation.panels()), "three faces, one per panel"
    truth = [(turn.t0, turn.t1, turn.voice) for turn in conversation.turns]
    speaker_of = voice_truth(pipeline.voices.segments_in(0.0, float("inf")), truth)
    bound = pipeline.people.binding()
    # each talker's main voice is tied to their own face; no voice to the listener, no voice to a wrong face
    for name in (c.name for c in conversation.speakers):
        main = max((v for v, who in speaker_of.items() if who == name),
                   key=lambda v: sum(b - a for a, b, k in pipeline.voices.segments_in(0, 1e9) if k == v))
        assert panel_of[bound[main]] == name, f"{name}'s voice {main} is tied to {panel_of.get(bound.get(main))}"
    assert all(panel_of[face] == speaker_of[voice] for voice, face in bound.items())
    listener = next(face for face, panel in panel_of.items() if panel == conversation.listener.name)
    listener_rows = [p for w in windows for p in w.people if p["person"] == listener]
    assert listener_rows and all(p["speaker"] is None for p in listener_rows)
    assert {p["modalities"]["text"]["reason"] for p in listener_rows} == {"no voice is tied to this face yet"}
    assert all(p["modalities"]["visual"]["available"] for p in listener_rows)


@pytest.mark.models
def test_each_person_in_a_window_has_their_own_verdicts_and_the_summary_each_timeline(talking_heads_replayed):
    pipeline, windows, end, conversation = talking_heads_replayed
    bound = pipeline.people.binding()
    assert all(w.people is not None for w in windows)
    rows = [p for w in windows for p in w.people]
    assert {"person-1", "person-2", "person-3"} <= {p["id"] for p in rows}
    for window in windows:
        ids = [p["id"] for p in window.people]
        assert len(ids) == len(set(ids))
        for person in window.people:
            assert person["fused"]["method"] and person["rolling"]["half_life_s"] == PipelineConfig().half_life_s
            for m in ("text", "audio", "visual"):
                verdict = person["modalities"][m]
                assert verdict["available"] == (verdict["score"] is not None)
                assert verdict["available"] or verdict["reason"], f"{person['id']} {m} missing without a reason"
            if person["speaker"] is not None and person["seconds"] == 0:
                assert person["modalities"]["audio"]["reason"] == "did not speak in this window"
    # a bound talker speaking alone in a window: their words are the window's words
    spoken = [p for w in windows for p in w.people if p["speaker"] in bound and p["seconds"] > 1.0]
    assert spoken and sum(p["modalities"]["audio"]["available"] for p in spoken) >= 0.5 * len(spoken)
    # the first window of each face carries its thumbnail, a small JPEG
    for face in {p["person"] for p in rows if p["person"] is not None}:
        first = next(p for p in rows if p["person"] == face)
        assert first["thumbnail"].startswith("data:image/jpeg;base64,") and len(first["thumbnail"]) < 20_000
    people = end.summary["people"]
    faces = [p for p in people if p["person"] is not None]
    assert len(faces) == 3 and all(p["id"] == f"person-{p['person']}" for p in faces)
    for voice, face in bound.items():
        entry = next(p for p in people if p["person"] == face)
        assert entry["speaker"] == voice and entry["seconds"] > 5 and entry["fused"]["score"] is not None
        assert entry["label"] == entry["fused"]["label"]
        assert len(entry["timeline"]) == entry["windows"] >= len(windows) - 1
        assert [point["t"] for point in entry["timeline"]] == sorted(point["t"] for point in entry["timeline"])


@pytest.mark.models
def test_a_happy_and_an_angry_voice_get_their_own_verdicts(engine_with_voices, tmp_path):
    """A woman in a happy voice and a man in an angry one (RAVDESS actors 24 and 23, held out of the voice and audio
    models) taking 10 turns: two voices, and each one's voice and overall verdict on their own side."""
    from testkit.media import write_flac
    from testkit.ravdess import Ravdess

    root = need_data("ravdess", "labels.csv").parent
    happy, angry = 24, 23
    audio, truth = Ravdess(root).conversation([happy, angry], 10, np.random.default_rng(2),
                                              emotion_of={happy: "happy", angry: "angry"})
    path = tmp_path / "dialogue.flac"
    write_flac(path, audio)
    pipeline, windows, end = replay(engine_with_voices, path)
    actor_of = voice_truth(pipeline.voices.segments_in(0.0, float("inf")), truth)
    assert sorted(set(actor_of.values())) == [angry, happy]
    sides = sides_right(windows, {voice: actor == happy for voice, actor in actor_of.items()})
    for actor in (happy, angry):
        voices = [v for v, a in actor_of.items() if a == actor]
        audio_right = [ok for v in voices for ok in sides[v]["audio"]]
        fused_right = [ok for v in voices for ok in sides[v]["fused"]]
        assert len(audio_right) >= 4 and share(audio_right) >= 0.8, (actor, audio_right)
        assert share(fused_right) >= 0.8, (actor, fused_right)
    # no video: each person is a voice, and says why there is no face
    for window in windows:
        for person in window.people:
            assert person["id"] == f"voice-{person['speaker']}" and person["person"] is None
            assert person["modalities"]["visual"]["reason"] == "a voice only: no face is tied to it"
    voices = [p for p in end.summary["people"] if p["person"] is None]
    assert {p["speaker"] for p in voices} == set(actor_of) and all(p["score"] is None for p in voices)


@pytest.mark.models
def test_a_video_without_sound_has_faces_and_says_why_they_have_no_voice(engine_with_voices, tmp_path):
    from testkit.media import remux_without_audio

    path = remux_without_audio(need_data("videos", "vna_original_2.mp4"), tmp_path / "silent.mp4")
    pipeline, windows, end = replay(engine_with_voices, path)
    assert pipeline.voices is None and pipeline.mouths is None
    # no voices, so no mouths to read: the source samples at the visual scorer's rate, not the mouths'
    assert pipeline.source.frames <= end.summary["duration"] * PipelineConfig().sample_fps + 2
    people = [p for w in windows for p in w.people]
    assert people and {p["id"] for p in people} == {"person-1"}
    assert all(p["speaker"] is None and p["modalities"]["visual"]["available"] for p in people)
    assert {p["modalities"]["audio"]["reason"] for p in people} == {
        "voices are not tracked (no audio, or --no-speakers)"}
    assert [p["id"] for p in end.summary["people"]] == ["person-1"]


@pytest.mark.models
def test_without_frames_between_key_frames_the_mouths_are_read_on_the_key_frames(engine_with_voices):
    """--mouth-fps 0: the source samples at the visual scorer's rate, and the mouths of its frames are still read."""
    pipeline, windows, _ = replay(engine_with_voices, need_data("videos", "vna_original_2.mp4"),
                                 PipelineConfig(mouth_fps=0.0))
    assert pipeline.source.sample_fps == PipelineConfig().sample_fps and not pipeline.frames.follow_mouths
    assert pipeline.mouths is not None
    key_faces = sum(len(a.faces) for a in pipeline.frames.results.between(0.0, float("inf")))
    assert pipeline.mouths.reads == key_faces > 0
    assert any(p["speaking"] is not None for w in windows for p in w.people)


@pytest.mark.models
def test_a_face_that_leaves_and_comes_back_is_the_same_person_and_missing_while_away(engine_with_voices, tmp_path):
    """A talking head whose picture goes black for 5 s while its voice goes on, then comes back in its place."""
    import subprocess

    src = need_data("videos", "vna_original_2.mp4")
    path = tmp_path / "away.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "2", "-i", str(src), "-vf",
                    "drawbox=t=fill:c=black:enable='between(t,4,9)'", "-c:v", "libx264", "-preset", "veryfast",
                    "-c:a", "aac", str(path)], check=True, timeout=120)
    pipeline, windows, end = replay(engine_with_voices, path)
    faces = {p["person"] for w in windows for p in w.people if p["person"] is not None}
    assert faces == {1}, "one face, back in its place: the same person"
    away = [w for w in windows if w.t_start >= 4.0 and w.t_end <= 9.0]
    assert away and all(p["person"] != 1 or not p["modalities"]["visual"]["available"]
                        for w in away for p in w.people)
    for w in away:
        for p in w.people:
            if p["person"] == 1:  # the face's voice speaks while the face is gone
                assert p["modalities"]["visual"]["reason"] == "face not in view in this window"
    assert [p["person"] for p in end.summary["people"] if p["person"] is not None] == [1]


@pytest.mark.models
def test_silence_music_and_two_voices_at_once_make_no_false_person(engine_with_voices, tmp_path):
    """4 s of silence, 12 s of an instrumental music video's sound, then two RAVDESS actors (a woman and a man)
    speaking over each other for three sentences: nobody in the silence or the music, and while both speak every
    person says what they have and why the rest is missing."""
    from testkit.media import write_flac
    from testkit.ravdess import Ravdess, load_audio

    root = need_data("ravdess", "labels.csv").parent
    music = load_audio(need_data("musicvideos", "Relaxation", "2.mp4"))[:12 * 16000]
    ravdess = Ravdess(root)
    her = np.concatenate([ravdess.speech(r["path"]) for r in ravdess.by_actor[20][:3]])
    him = np.concatenate([ravdess.speech(r["path"]) for r in ravdess.by_actor[21][8:11]])
    talk = np.zeros(max(len(her), len(him)), np.float32)
    talk[:len(her)] += her
    talk[:len(him)] += him
    path = tmp_path / "awkward.flac"
    write_flac(path, np.concatenate([np.zeros(4 * 16000, np.float32), 0.3 * music, talk]))
    pipeline, windows, end = replay(engine_with_voices, path)
    before_talk = [w for w in windows if w.t_end <= 16.0]
    assert before_talk and all(w.people == [] for w in before_talk), "silence and music make nobody"
    during = [w for w in windows if w.t_start >= 16.0]
    assert any(w.people for w in during)
    for window in during:
        assert len({p["id"] for p in window.people}) == len(window.people)
        for person in window.people:
            assert person["id"].startswith("voice-") and person["speaker"] is not None
            for verdict in person["modalities"].values():
                assert verdict["available"] or verdict["reason"]
    assert all(p["person"] is None for p in end.summary["people"])


def test_a_crowd_costs_what_its_largest_faces_cost():
    """Ten faces in a frame: the analyzer keeps the MAX_FACES largest, the mouths are read on the MAX_MOUTHS largest."""

    class Box:
        def __init__(self, side: float, x: float, person: int | None = None) -> None:
            self.box = (x, 10.0, x + side, 10.0 + side)
            self.person = person

    crowd = [Box(20 + 5 * i, 60.0 * i, person=i + 1) for i in range(10)]
    kept = largest_faces(crowd, MAX_FACES)
    assert len(kept) == MAX_FACES and [b.person for b in kept] == list(range(3, 11))
    reads: list[tuple] = []

    class Reading:
        lip_height = 0.3

    def read_mouth(image, box):
        reads.append(box)
        return Reading()

    mouths = MouthTrack(read_mouth)
    image = np.zeros((120, 640, 3), np.uint8)
    mouths.read([(0.0, image, crowd), (0.125, image, None), (0.25, image, None)])
    assert len(reads) == 3 * MAX_MOUTHS and set(mouths.series(0.0, 1.0)) == {7, 8, 9, 10}
    assert reads[MAX_MOUTHS:2 * MAX_MOUTHS] == reads[:MAX_MOUTHS], "frames between key frames: the key frame's boxes"


def test_frames_between_key_frames_wait_for_the_mouths_and_are_let_go_without_them():
    from engine.tracks import FrameTrack
    from media import VideoFrame

    def frames(track: FrameTrack, seconds: float, fps: float = 8.0) -> None:
        for i in range(int(seconds * fps)):
            track.put(VideoFrame(i / fps, np.zeros((4, 4, 3), np.uint8)))

    following = FrameTrack(backlog=8, keep_s=60.0, sample_fps=2.0, follow_mouths=True, source_fps=8.0)
    frames(following, 2.0)
    assert [f.t for f in following.take(2)] == [0.0, 0.5]
    assert [f.t for f in following.take_mouth_frames()] == [0.125, 0.25, 0.375, 0.625, 0.75, 0.875], (
        "the frames before the next key frame still waiting")
    assert not following.ready(1.0, eof=False), "a batch in flight"
    following.done()
    assert following.ready(1.0, eof=False) and not following.ready(1.2, eof=False), "frames after 1 s wait"
    following.take(2)
    assert [f.t for f in following.take_mouth_frames()] == [1.125, 1.25, 1.375, 1.625, 1.75, 1.875]
    following.done()
    assert following.ready(1.9, eof=False) and following.dropped == 0

    sifting = FrameTrack(backlog=8, keep_s=60.0, sample_fps=2.0, follow_mouths=False, source_fps=8.0)
    frames(sifting, 2.0)
    assert [f.t for f in sifting.take(8)] == [0.0, 0.5, 1.0, 1.5] and not sifting.take_mouth_frames()
    as_sampled = FrameTrack(backlog=8, keep_s=60.0, sample_fps=2.0)  # a source at the scorer's own rate
    frames(as_sampled, 1.0, fps=4.0)
    assert len(as_sampled.take(8)) == 4, "frames the source chose are all analysed"


def test_a_window_waits_for_its_last_key_frame_not_for_any_frame_near_its_end():
    """Frames sampled faster than the key frames, with uneven times (a late key frame moves the next one's due
    time): a frame between key frames near the window's end does not make it ready while a key frame before the
    end may still come."""
    from engine.tracks import FrameTrack
    from media import VideoFrame

    track = FrameTrack(backlog=8, keep_s=60.0, sample_fps=2.0, follow_mouths=True, source_fps=8.0)
    for t in (0.0, 0.9, 1.05):  # keys at 0 and 0.9 (late: the next is due at 1.15), 1.05 between them
        track.put(VideoFrame(t, np.zeros((4, 4, 3), np.uint8)))
    track.take(8), track.take_mouth_frames(), track.done()
    assert not track.ready(1.5, eof=False), "the key frame due at 1.15 is not in"
    track.put(VideoFrame(1.2, np.zeros((4, 4, 3), np.uint8)))
    assert [f.t for f in track.take(8)] == [1.2]
    track.done()
    assert track.ready(1.5, eof=False)


def test_the_chunker_says_up_to_where_no_new_stretch_can_come():
    from speech.speakers import CLOSED_AFTER_S, SpeechChunker

    chunker = SpeechChunker()
    chunker.push([], 5.0)
    assert chunker.settled_until == pytest.approx(5.0 - CLOSED_AFTER_S), "silence: settled but for the last moments"
    chunker.push([(6.0, 7.0)], 7.2)  # a region still open at the end of the audio
    assert chunker.settled_until == pytest.approx(6.0)
    chunker.push([(6.0, 7.0)], 7.0 + CLOSED_AFTER_S + 1.0)  # now closed
    assert chunker.settled_until == pytest.approx(7.0 + 1.0)


def test_a_voice_heard_alone_hands_its_windows_to_the_face_it_is_tied_to_and_each_missing_part_says_why():
    """engine/people.py's bookkeeping without models: a voice first heard alone, then tied to a face."""
    from engine.people import PeopleTrack, WindowVoices
    from models.base import ModalityScore
    from models.faces import EMOTIONS, Face
    from models.fusion import fuse
    from models.visual import FrameAnalysis

    happy = {e: 1.0 if e == "happy" else 0.0 for e in EMOTIONS}

    def frame(t: float) -> FrameAnalysis:
        face = Face((100.0, 100.0, 200.0, 200.0), 0.9, happy, valence=0.9, person=1)
        return FrameAnalysis([face], 0.9, np.zeros(1280, np.float32), (360, 640), t)

    track = PeopleTrack(lambda scores: fuse(scores, "weighted"), 6.0, mouths=None)
    window = {"text": ModalityScore.of(0.8), "audio": ModalityScore.of(0.7), "visual": ModalityScore.of(0.9)}
    heard = WindowVoices({0: 2.0}, [(0.5, 2.5, 0)], [0])
    alone = track.window_people(0.0, 4.0, [], window, heard, 4.0, {})
    assert [p["id"] for p in alone] == ["voice-0"] and alone[0]["modalities"]["audio"]["score"] == 0.7
    assert alone[0]["modalities"]["visual"]["reason"] == "a voice only: no face is tied to it"
    track.binding = lambda: {0: 1}  # type: ignore[method-assign]  # the mouths made it clear
    both = track.window_people(2.0, 6.0, [frame(3.0)], window, WindowVoices({0: 1.5, 1: 1.0}, [], [0]), 6.0,
                               {0: {"text": ModalityScore.of(0.6), "audio": ModalityScore.missing("too little")},
                                1: {"text": ModalityScore.missing("no words"), "audio": ModalityScore.of(0.2)}})
    by_id = {p["id"]: p for p in both}
    assert set(by_id) == {"person-1", "voice-1"}
    me = by_id["person-1"]
    assert me["speaker"] == 0 and me["modalities"]["text"]["score"] == 0.6, "two voices: their own words"
    assert me["modalities"]["visual"]["score"] == pytest.approx(0.9) and me["seconds"] == 1.5
    assert by_id["voice-1"]["modalities"]["audio"]["score"] == 0.2
    track.binding = lambda: {}  # type: ignore[method-assign]  # the evidence weakens: the voice is alone again
    track.window_people(3.0, 7.0, [], window, WindowVoices({0: 1.0}, [], [0]), 7.0, {})
    assert "voice-0" in track.people
    track.binding = lambda: {0: 1}  # type: ignore[method-assign]  # and tied again
    quiet = track.window_people(4.0, 8.0, [frame(5.0)], window, WindowVoices({}, [], []), 8.0, {})
    assert "voice-0" not in track.people, "its window alone handed over again"
    assert quiet[0]["modalities"]["text"]["reason"] == "did not speak in this window"
    away = track.window_people(6.0, 10.0, [], window, WindowVoices({0: 2.0}, [], []), 10.0, {})
    assert away[0]["id"] == "person-1" and away[0]["modalities"]["visual"]["reason"] == (
        "face not in view in this window")
    summary = track.summary([{"person": 1, "first_seen": 3.0, "last_seen": 5.0, "frames": 2, "score": 0.9,
                              "top_emotion": "happy"}])
    me_over_all = next(p for p in summary if p["person"] == 1)
    assert me_over_all["first_seen"] == 3.0 and me_over_all["windows"] == 5, "the voice's windows handed over"
    assert [pt["t"] for pt in me_over_all["timeline"]] == [4.0, 6.0, 7.0, 8.0, 10.0]
    assert [p["id"] for p in summary] == ["person-1", "voice-1"]
    no_voices = PeopleTrack(lambda scores: fuse(scores, "weighted"), 6.0, mouths=None)
    faces_only = no_voices.window_people(0.0, 4.0, [frame(1.0)], window, None, 4.0, {})
    assert faces_only[0]["modalities"]["audio"]["reason"] == "voices are not tracked (no audio, or --no-speakers)"


def test_a_persons_seconds_spoken_count_each_moment_once_though_windows_overlap():
    """Windows of 4 s every 2 s: a voice speaking 1-3 s and 4.5-5.5 s is in three windows, 2 + 2 + 1 s of them, but
    has spoken 3 s over the stream, as the end summary says."""
    from engine.people import PeopleTrack, WindowVoices
    from models.base import ModalityScore
    from models.fusion import fuse

    track = PeopleTrack(lambda scores: fuse(scores, "weighted"), 6.0, mouths=None)
    window = {"text": ModalityScore.of(0.8), "audio": ModalityScore.of(0.7)}
    speech = [(1.0, 3.0, 0), (4.5, 5.5, 0)]
    said = []
    for t0 in (0.0, 2.0, 4.0):
        t1 = t0 + 4.0
        seconds = {0: sum(max(0.0, min(b, t1) - max(a, t0)) for a, b, _ in speech)}
        said += track.window_people(t0, t1, [], window, WindowVoices(seconds, speech, [0]), t1, {})
    assert [p["seconds"] for p in said] == [2.0, 2.0, 1.0]
    (voice,) = track.summary([])
    assert voice["id"] == "voice-0" and voice["seconds"] == pytest.approx(3.0) and voice["windows"] == 3


def test_a_voice_with_too_little_speech_in_the_window_is_completed_with_its_speech_just_before():
    from engine.people import PERSON_AUDIO_BEFORE_S, voice_audio
    from media import SAMPLE_RATE

    timeline = np.arange(60 * SAMPLE_RATE, dtype=np.float32) / SAMPLE_RATE  # each sample holds its media time

    def read(a: float, b: float) -> np.ndarray:
        return timeline[int(round(a * SAMPLE_RATE)):int(round(b * SAMPLE_RATE))]

    segments = [(10.0, 11.0, 0), (13.0, 13.8, 1), (14.5, 15.5, 0), (20.5, 21.2, 0)]
    audio = voice_audio(read, segments, 0, 20.0, 24.0)  # 0.7 s in the window: its 1 s at 14.5 s comes first
    assert len(audio) == int(1.7 * SAMPLE_RATE) and audio[0] == pytest.approx(14.5) and audio[-1] < 21.2
    alone = voice_audio(read, segments, 1, 12.0, 16.0)
    assert len(alone) == int(0.8 * SAMPLE_RATE), "another voice's speech is never taken"
    assert voice_audio(read, segments, 0, 20.0 + PERSON_AUDIO_BEFORE_S + 6.0, 40.0).size == 0, "too long ago"
