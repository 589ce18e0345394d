"""Who feels what in one stream: each person seen or heard, and their own sentiment per window.

A person is a tracked face (models/tracking.py: `person` N), a voice (engine/voices.py: `speaker` K), or a face with
the voice bound to it. The binding comes from the mouths: `MouthTrack` reads the lips of the faces in view
(MediaPipe's face mesh, models/mouth.py) on every sampled frame, key frames and the frames between them
(PipelineConfig.mouth_fps), from the box the face detector gave on the key frame; models/active_speaker.SpeakingFaces
sets each face's mouth movement against each voice's speech, binding a voice to a face once the evidence is clear
(two turns at least, a margin over the face's silences and over the other faces); an off-screen voice and a face
that never speaks stay unbound.

Per window, each person in it (their face in view, or their voice heard) gets (`PeopleTrack.window_people`):
- text: the sentiment of their words (the words whose speaker is their voice);
- audio: the voice sentiment of their speech (their stretches, with up to PERSON_AUDIO_BEFORE_S of their earlier
  speech when the window holds less than the audio model needs), or the window's own audio score where they were
  the only voice in it;
- visual: their face's pooled expression valence (models.visual.person_face_score);
each missing with its reason; fused as the stream's modalities are, and followed by their own rolling EMA. The
stream's verdict is not changed by any of it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.summary import OverallScores, rolling_json
from models.active_speaker import SpeakingFaces
from models.audio_features import MIN_SCORED_S
from models.base import MODALITIES, ModalityScore
from models.fusion import FusedScore, RollingSentiment
from models.images import jpeg_data_uri
from models.visual import largest_faces, person_face_score
from protocol import Modalities, PersonPoint, PersonSummary, PersonVerdict

MAX_MOUTHS = 4  # faces whose mouths are followed: the largest in view (a mesh read is about 4 ms a face)
MOUTH_KEEP_S = 30.0  # mouth samples kept per face
THUMBNAIL_PX = 64
THUMBNAIL_EVERY_S = 30.0  # media seconds between two thumbnails of one person
FACE_MARGIN = 0.25  # around the face box, in the thumbnail
PERSON_AUDIO_BEFORE_S = 8.0  # how far before a window a person's earlier speech may complete it
TIMELINE_KEPT = 1800  # points of each person's timeline kept for the end (an hour at the default hop)
PEOPLE_KEPT = 50  # people whose verdicts are kept for the end (the most present, and anyone of the last minute)

Box = tuple[float, float, float, float]


def person_id(person: int | None, speaker: int | None) -> str:
    """A person's id in the protocol: their face track's, or their voice's where they have no face."""
    return f"person-{person}" if person is not None else f"voice-{speaker}"


class MouthTrack:
    """The lips of the faces in view, frame after frame (one stream; read in the engine's voice thread).

    On a key frame (analysed whole, its faces given their person ids) the largest MAX_MOUTHS faces are taken, and
    each one's mesh is read on that frame and on the frames up to the next key frame from the same box, the
    detector's: a face moves little in half a second, and a region that stays put keeps the lips' measure steady
    (following each frame's landmarks, as MediaPipe does, doubled the lips' movement of a still face on the
    talking heads of benchmarks/active_speaker.py, and made a listener look like a talker). A face whose mesh is
    lost is dropped until the next key frame finds it."""

    def __init__(self, read_mouth: Callable[[np.ndarray, Box], Any], keep_s: float = MOUTH_KEEP_S) -> None:
        self.read_mouth = read_mouth  # (image, box) → models.mouth.MouthReading | None
        self.keep_s = keep_s
        self.followed: dict[int, Box] = {}
        self.reads = 0
        self.busy_s = 0.0
        self._samples: dict[int, deque[tuple[float, float]]] = {}
        self._lock = threading.Lock()

    def read(self, frames: Sequence[tuple[float, np.ndarray, Sequence[Any] | None]]) -> None:
        """(t, RGB image, faces) of frames in time order: faces for a key frame (models.faces.Face with `person`),
        None for a frame between key frames. Blocking: run it off the event loop."""
        started = time.perf_counter()
        latest = None
        for t, image, faces in frames:
            if faces is not None:
                tracked = largest_faces([f for f in faces if f.person is not None], MAX_MOUTHS)
                self.followed = {f.person: f.box for f in tracked}  # models.faces.Face.box: x0, y0, x1, y1
            for person, box in list(self.followed.items()):
                reading = self.read_mouth(image, box)
                self.reads += 1
                if reading is None:
                    del self.followed[person]
                    continue
                with self._lock:
                    self._samples.setdefault(person, deque()).append((t, reading.lip_height))
            latest = t
        if latest is not None:
            with self._lock:
                for person in list(self._samples):
                    series = self._samples[person]
                    while series and series[0][0] < latest - self.keep_s:
                        series.popleft()
                    if not series:
                        del self._samples[person]
        self.busy_s += time.perf_counter() - started

    def series(self, t0: float, t1: float) -> dict[int, list[tuple[float, float]]]:
        """Each face's (t, lip height) samples inside [t0, t1)."""
        with self._lock:
            out = {person: [s for s in series if t0 <= s[0] < t1] for person, series in self._samples.items()}
        return {person: samples for person, samples in out.items() if samples}


@dataclass
class _Person:
    """A person's state across windows (constant memory but the bounded timeline)."""

    id: str
    person: int | None
    speaker: int | None
    rolling: RollingSentiment
    overall: OverallScores = field(default_factory=OverallScores)
    timeline: deque[PersonPoint] = field(default_factory=lambda: deque(maxlen=TIMELINE_KEPT))
    seconds: float = 0.0  # of their speech, each moment counted once though windows overlap
    counted_until: float = 0.0  # media time up to which their speech is in `seconds`
    windows: int = 0
    first_seen: float | None = None
    last_seen: float | None = None


@dataclass
class WindowVoices:
    """What the voices know of one window: each voice's seconds in it, their stretches (whole), each word's speaker."""

    seconds: dict[int, float]
    segments: list[tuple[float, float, int]]
    word_speakers: list[int | None]  # one per word of the window (committed, then pending)


class PeopleTrack:
    """One stream's people: the mouths, the speaking faces and the binding, the thumbnails, and each person's
    rolling score, overall means and timeline. `window_people` builds a window's `people`."""

    def __init__(self, fuse: Callable[[dict[str, ModalityScore]], FusedScore], half_life_s: float,
                 mouths: MouthTrack | None) -> None:
        self.fuse = fuse
        self.half_life_s = half_life_s
        self.mouths = mouths
        self.speaking = SpeakingFaces() if mouths is not None else None
        self.people: dict[str, _Person] = {}
        self._thumbnails: dict[int, tuple[float, str]] = {}  # face → (media time taken, JPEG data URL)
        self._sent_thumbnail: dict[int, float] = {}  # face → media time of the thumbnail last sent

    # -- faces ------------------------------------------------------------------------------------------------------
    def take_thumbnails(self, t: float, image: np.ndarray, faces: Sequence[Any]) -> None:
        """A small picture of each tracked face of a key frame, for a person who has none or one older than
        THUMBNAIL_EVERY_S (cheap: a 64 px JPEG, at most once per person every 30 s)."""
        from models.faces import face_crop

        for face in faces:
            if face.person is None:
                continue
            taken = self._thumbnails.get(face.person)
            if taken is None or t - taken[0] >= THUMBNAIL_EVERY_S:
                crop = face_crop(image, face.box, FACE_MARGIN)
                self._thumbnails[face.person] = (t, jpeg_data_uri(crop, THUMBNAIL_PX))

    def binding(self) -> dict[int, int]:
        """voice → face, where the mouths made it clear."""
        return self.speaking.binding() if self.speaking is not None else {}

    def _speaking_scores(self, t0: float, t1: float, settled_until: float,
                         segments: list[tuple[float, float, int]]) -> dict[int, float]:
        """The window's speaking score of each face whose mouth was read (SpeakingFaces), over the part of the
        window whose voices are settled (a stretch still to come must not count as a silence)."""
        if self.speaking is None or self.mouths is None:
            return {}
        end = min(t1, settled_until)
        if end <= t0:
            return {}
        return self.speaking.update(t0, end, self.mouths.series(t0, end), [],
                                    [s for s in segments if s[0] < end])

    # -- a window's people -----------------------------------------------------------------------------------------
    def window_people(self, t0: float, t1: float, frames: list[Any],
                      scores: dict[str, ModalityScore], voices: WindowVoices | None, settled_until: float,
                      own_scores: dict[int, dict[str, ModalityScore]]) -> list[PersonVerdict]:
        """The window's people: each face in its frames and each voice heard in it, with their modalities (their
        text and voice from `own_scores` (voice → scores of their own words and speech, for a window with several
        voices) or, for the only voice of the window, the window's own), fused and rolling."""
        faces_in_view = sorted({f.person for frame in frames for f in getattr(frame, "faces", ())
                                if f.person is not None})
        segments = voices.segments if voices is not None else []
        speaking = self._speaking_scores(t0, t1, settled_until, segments) if faces_in_view else {}
        bound = self.binding()
        face_of = dict(bound)
        voice_of = {face: voice for voice, face in bound.items()}
        heard = {k: s for k, s in (voices.seconds if voices is not None else {}).items() if s > 0}
        members: list[tuple[int | None, int | None]] = [(face, voice_of.get(face)) for face in faces_in_view]
        members += [(face_of[v], v) for v in heard if v in face_of and face_of[v] not in faces_in_view]
        members += [(None, v) for v in sorted(heard) if v not in face_of]
        out: list[PersonVerdict] = []
        only_voice = next(iter(heard)) if len(heard) == 1 else None
        for face, voice in members:
            modalities = {
                "text": self._voice_part("text", voice, heard, only_voice, own_scores, scores, voices is not None),
                "audio": self._voice_part("audio", voice, heard, only_voice, own_scores, scores, voices is not None),
                "visual": person_face_score(frames, face) if face is not None else ModalityScore.missing(
                    "a voice only: no face is tied to it"),
            }
            out.append(self._add(t0, t1, face, voice, heard.get(voice, 0.0) if voice is not None else 0.0,
                                 speaking.get(face) if face is not None else None, modalities, segments))
        if len(self.people) > 2 * PEOPLE_KEPT:
            self._prune(t1)
        return out

    def _prune(self, now: float) -> None:
        """Bounded memory over a long stream of many passers-by: the PEOPLE_KEPT most present (by windows) and
        everyone seen or heard in the last minute stay."""
        recent = {k for k, p in self.people.items() if p.last_seen is not None and now - p.last_seen <= 60.0}
        kept = sorted(self.people.values(), key=lambda p: (p.windows, p.last_seen or 0.0), reverse=True)
        keep = {p.id for p in kept[:PEOPLE_KEPT]} | recent
        self.people = {k: p for k, p in self.people.items() if k in keep}
        faces = {p.person for p in self.people.values()}
        self._thumbnails = {face: v for face, v in self._thumbnails.items() if face in faces}
        self._sent_thumbnail = {face: v for face, v in self._sent_thumbnail.items() if face in faces}

    @staticmethod
    def _voice_part(modality: str, voice: int | None, heard: dict[int, float], only_voice: int | None,
                    own_scores: dict[int, dict[str, ModalityScore]], scores: dict[str, ModalityScore],
                    voices_tracked: bool) -> ModalityScore:
        if not voices_tracked:
            return ModalityScore.missing("voices are not tracked (no audio, or --no-speakers)")
        if voice is None:
            return ModalityScore.missing("no voice is tied to this face yet")
        if voice not in heard:
            return ModalityScore.missing("did not speak in this window")
        if voice == only_voice:
            window_score = scores.get(modality)
            if window_score is not None:
                return window_score
        own = own_scores.get(voice, {}).get(modality)
        return own if own is not None else ModalityScore.missing(f"no {modality} score of their speech")

    def _add(self, t0: float, t1: float, face: int | None, voice: int | None, seconds: float,
             speaking: float | None, modalities: dict[str, ModalityScore],
             segments: list[tuple[float, float, int]]) -> PersonVerdict:
        key = person_id(face, voice)
        state = self.people.get(key)
        if state is None:
            state = self.people[key] = _Person(key, face, None, RollingSentiment(self.half_life_s))
        if voice is not None and face is not None:  # a voice heard alone before it was tied (again) to this face
            self._take_over(state, person_id(None, voice))
        state.speaker = voice if voice is not None else state.speaker
        fused = self.fuse(modalities)
        state.rolling.update(fused.score, t1, fused.certainty)
        state.overall.add(modalities)
        if voice is not None:  # only what this window adds to the ones before it (they overlap by window - hop)
            since = max(t0, state.counted_until)
            state.seconds += sum(max(0.0, min(b, t1) - max(a, since)) for a, b, k in segments if k == voice)
        state.counted_until = max(state.counted_until, t1)
        state.windows += 1
        state.first_seen = t0 if state.first_seen is None else state.first_seen
        state.last_seen = t1
        rolling = rolling_json(state.rolling)
        state.timeline.append({"t": round(t1, 3), "score": None if fused.score is None else round(fused.score, 4),
                               "rolling": rolling["score"]})
        verdict: PersonVerdict = {
            "id": key, "person": face, "speaker": voice, "seconds": round(seconds, 2),
            "speaking": None if speaking is None else round(speaking, 3),
            "modalities": _modalities_json(modalities),
            "fused": fused.to_json(),  # type: ignore[typeddict-item]  # FusedScore.to_json is the protocol's shape
            "rolling": rolling,
        }
        thumbnail = self._thumbnails.get(face) if face is not None else None
        if face is not None and thumbnail is not None and self._sent_thumbnail.get(face) != thumbnail[0]:
            verdict["thumbnail"] = thumbnail[1]
            self._sent_thumbnail[face] = thumbnail[0]
        return verdict

    def _take_over(self, state: _Person, voice_key: str) -> None:
        """A voice now tied to a face: what it had alone becomes the face's person's (its timeline, its means)."""
        alone = self.people.pop(voice_key, None)
        if alone is None:
            return
        state.overall.merge(alone.overall)
        mine = {point["t"] for point in state.timeline}
        both = sorted([*state.timeline, *(p for p in alone.timeline if p["t"] not in mine)], key=lambda p: p["t"])
        state.timeline = deque(both, maxlen=TIMELINE_KEPT)
        state.seconds += alone.seconds
        state.counted_until = max(state.counted_until, alone.counted_until)
        state.windows += sum(1 for p in alone.timeline if p["t"] not in mine)
        if alone.first_seen is not None:
            state.first_seen = min(alone.first_seen, state.first_seen if state.first_seen is not None else np.inf)
        if state.rolling.score is None:
            state.rolling = alone.rolling

    # -- the end -------------------------------------------------------------------------------------------------------
    def summary(self, faces: list[dict]) -> list[PersonSummary]:
        """end.summary.people: each tracked face (models.tracking.PeopleTracker.summary) with their voice, their
        modalities' means, overall verdict and timeline; then each voice tied to no face."""
        by_face = {p.person: p for p in self.people.values() if p.person is not None}
        out: list[dict[str, Any]] = []
        for entry in faces:
            state = by_face.get(entry["person"])
            out.append({**entry, **(self._overall(state) if state is not None else {
                "id": person_id(entry["person"], None)})})
        voices = sorted((p for p in self.people.values() if p.person is None), key=lambda p: -p.seconds)
        for state in voices[:max(0, PEOPLE_KEPT - len(out))]:
            out.append({"person": None, "first_seen": round(state.first_seen or 0.0, 3),
                        "last_seen": round(state.last_seen or 0.0, 3), "frames": 0, "score": None,
                        "top_emotion": None, **self._overall(state)})
        return out  # type: ignore[return-value]  # PersonSummary's keys, built from the face summary's

    def _overall(self, state: _Person) -> dict[str, Any]:
        modalities = state.overall.modalities()
        fused = self.fuse(modalities)
        return {"id": state.id, "speaker": state.speaker, "seconds": round(state.seconds, 2),
                "windows": state.windows, "modalities": _modalities_json(modalities), "fused": fused.to_json(),
                "label": fused.label, "timeline": sorted(state.timeline, key=lambda p: p["t"])}


def _modalities_json(scores: dict[str, ModalityScore]) -> Modalities:
    return {m: scores[m].to_json() for m in MODALITIES if m in scores}  # type: ignore[return-value]


def voice_audio(ring_read: Callable[[float, float], np.ndarray], segments: list[tuple[float, float, int]],
                voice: int, t0: float, t1: float) -> np.ndarray:
    """The speech of one voice in [t0, t1), completed with its latest earlier speech (up to PERSON_AUDIO_BEFORE_S
    before t0) when the window holds less than the voice model needs (MIN_SCORED_S)."""
    mine = sorted((a, b) for a, b, k in segments if k == voice and b > t0 - PERSON_AUDIO_BEFORE_S and a < t1)
    inside = [(max(a, t0), min(b, t1)) for a, b in mine if b > t0]
    total = sum(b - a for a, b in inside)
    earlier = [(max(a, t0 - PERSON_AUDIO_BEFORE_S), min(b, t0)) for a, b in mine if a < t0]
    while total < MIN_SCORED_S and earlier:
        a, b = earlier.pop()
        inside.insert(0, (a, b))
        total += b - a
    pieces = []
    for a, b in inside:
        try:
            pieces.append(ring_read(a, b))
        except OverflowError:  # the ring no longer holds it
            continue
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
