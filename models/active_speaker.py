"""Who is talking: which visible face speaks, and which voice belongs to which face, from how the faces' mouths move
and the voice activity, with no model of its own (numpy only).

**Mouth movement.** Talking moves the lips several times a second; a smile, a mouth held open or a slow change of
expression moves them slowly. A face's mouth comes as a series of (t, lip height) samples
(models.mouth.MouthReading.lip_height, scale-free; the thresholds below are for it). The measure is the mean absolute
change between consecutive samples of a face (pairs further apart than `max_gap_s` are left out: a dropped frame or a
lost face), over a stretch of time: `mouth_movement`. What counts as moving depends on the sampling rate (a slow change
spreads over more, smaller steps at a higher rate), so the threshold comes from a table measured on the real clips of
../shared/data/videos at 2, 5, 8, 12.5 and 25 fps (benchmarks/active_speaker.py `rates`: the threshold with the best
balanced accuracy between 2 s windows of the talking heads while their voice speaks and of two faces that never speak),
interpolated on the log of the rate. `talking_probability` turns a movement into a soft 0..1 around that threshold.

**Speaking score per window** (`SpeakingFaces.update`): for each face, how much its mouth moved while a voice was
active in the window; lowered by how much it moved in the window's silent stretches (a mouth that moves as much
without a voice, chewing or laughing, is not talking). A window without any voice scores 0 for every face. A face
without enough samples while the voice spoke has no score.

**Binding voices to faces** (`SpeakingFaces.binding`): each speech segment of a voice (speaker ids come from the
voice clustering, as (t0, t1, speaker)) is counted once, when it has ended: for each face with enough samples in it,
the face's talking probability during the segment. Long silences (no voice at all) are counted the same way, as
"nobody". A voice is bound to the face that talks during most of its segments (`hit` ≥ `min_hit`) clearly more than
during other voices' segments and silences (`hit - elsewhere` ≥ `min_margin`), seen over at least `min_segments` of
that voice's segments in at least `min_turns` of its turns (a turn lasts until another voice speaks, the voice pauses
`turn_gap_s` or it has gone on `max_turn_s`: a listener who grimaces through one whole turn is not bound for it), and
clearly ahead of the next face (`min_lead`); each face to one voice and each voice to one face, the clearest pair
first. Evidence is kept per face for its last `memory` observations, so a binding can move on. Anything else stays
unbound: a voice whose speaker is off-screen (no face moves with it), a face that never speaks or moves all the time,
too little evidence. Nothing is learnt from time in which nobody speaks except that a face's mouth then moves (or
not), so silence never creates a binding.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

FaceId = Any  # a tracked face's id (models.tracking's person ids, or any hashable)
SpeakerId = Any  # a voice's id from the voice clustering (any hashable)
MouthSeries = Sequence[tuple[float, float]]  # (media time s, lip height) of one face, in time order

# Movement that separated talking from not talking best, per sampling rate (fps → mean |Δ lip height| between
# consecutive samples; models.mouth.MouthReading.lip_height, the lips' outer height / the mouth's width): measured by
# benchmarks/active_speaker.py `rates` (2 s windows).
MOVING_THRESHOLDS: tuple[tuple[float, float], ...] = ((2.0, 0.045), (5.0, 0.040), (8.0, 0.035), (12.5, 0.026),
                                                      (25.0, 0.020))
STEEPNESS = 4.0  # talking_probability = m^k / (m^k + threshold^k): 0.16 at 2/3 of the threshold, 0.84 at 1.5 x
MIN_PAIRS = 2  # consecutive-sample pairs needed to measure a stretch (3 samples: 1 s at 2 fps, 0.25 s at 8 fps)


def moving_threshold(frame_rate: float) -> float:
    """The mouth movement (mean |Δ lip height| per sample step) above which a face sampled at frame_rate talks."""
    rates = np.log([r for r, _ in MOVING_THRESHOLDS])
    values = np.log([v for _, v in MOVING_THRESHOLDS])
    return float(np.exp(np.interp(math.log(max(frame_rate, 1e-3)), rates, values)))


def talking_probability(movement: float, threshold: float) -> float:
    """A soft step at the threshold: 0.5 there, → 1 for larger movement, → 0 for a still mouth."""
    if movement <= 0:
        return 0.0
    ratio = (threshold / movement) ** STEEPNESS
    return 1.0 / (1.0 + ratio)


def sample_rate_of(series: Iterable[MouthSeries]) -> float | None:
    """The median sampling rate of the series (fps), None with fewer than two samples in any of them."""
    steps = [float(s) for one in series for s in np.diff([t for t, _ in one]) if s > 0]
    return 1.0 / float(np.median(steps)) if steps else None


@dataclass(frozen=True)
class Movement:
    mean_step: float  # mean |Δ lip height| between consecutive samples
    pairs: int  # how many pairs it is over


def mouth_movement(series: MouthSeries, spans: Sequence[tuple[float, float]], max_gap_s: float,
                   min_pairs: int = MIN_PAIRS) -> Movement | None:
    """The mouth's movement over the pairs of consecutive samples that lie both inside the same span and at most
    max_gap_s apart; None with fewer than min_pairs such pairs."""
    if len(series) < 2 or not spans:
        return None
    t = np.array([s[0] for s in series], dtype=np.float64)
    o = np.array([s[1] for s in series], dtype=np.float64)
    steps: list[np.ndarray] = []
    for a, b in spans:
        inside = np.flatnonzero((t >= a) & (t <= b))
        if len(inside) < 2:
            continue
        ti, oi = t[inside], o[inside]
        close = np.diff(ti) <= max_gap_s
        steps.append(np.abs(np.diff(oi))[close])
    joined = np.concatenate(steps) if steps else np.zeros(0)
    if len(joined) < min_pairs:
        return None
    return Movement(float(joined.mean()), int(len(joined)))


def _merged(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for a, b in sorted((float(a), float(b)) for a, b in spans if b > a):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _within(spans: Sequence[tuple[float, float]], t0: float, t1: float) -> list[tuple[float, float]]:
    return [(max(a, t0), min(b, t1)) for a, b in spans if b > t0 and a < t1]


def _gaps(spans: Sequence[tuple[float, float]], t0: float, t1: float) -> list[tuple[float, float]]:
    out, at = [], t0
    for a, b in _within(spans, t0, t1):
        if a > at:
            out.append((at, a))
        at = max(at, b)
    if t1 > at:
        out.append((at, t1))
    return out


@dataclass(frozen=True)
class VoiceFaceEvidence:
    hit: float  # mean talking probability of the face during this voice's segments
    segments: int  # how many of this voice's segments the face was measured in
    turns: int  # in how many of the voice's turns (separate occasions: see SpeakingFaces._turn_of)
    elsewhere: float  # mean talking probability of the face during other voices' segments and silences (0 if none)
    elsewhere_count: int

    @property
    def score(self) -> float:
        return self.hit - self.elsewhere


_NOBODY = object()  # the speaker of a stretch of silence, in a face's observations


class SpeakingFaces:
    """Per-window speaking scores of the tracked faces, and over time which voice is which face.

    frame_rate: the rate the faces' mouths are sampled at (None: read from the series as they come).
    min_segments: segments of a voice a face must have been measured in before they can be bound.
    min_turns: ... in at least this many of the voice's turns (turn_gap_s, max_turn_s: where a turn ends).
    min_hit: the face must talk (probability) on average at least this much during the voice's segments.
    min_margin: ... and this much more than during other voices' segments and silences.
    min_lead: ... and this much more (in score) than any other face does for that voice.
    min_silence_s: a silence (no voice at all) this long is counted as a "nobody speaks" observation.
    memory: the last observations kept per face (older evidence is forgotten, so a binding can change).
    history_s: mouth samples and speech regions kept this long, for segments that end after their window.
    """

    def __init__(self, frame_rate: float | None = None, min_segments: int = 2, min_turns: int = 2,
                 min_hit: float = 0.5, min_margin: float = 0.3, min_lead: float = 0.25, min_silence_s: float = 0.8,
                 turn_gap_s: float = 2.0, max_turn_s: float = 6.0, memory: int = 60, history_s: float = 30.0) -> None:
        self.frame_rate = frame_rate
        self.min_segments = int(min_segments)
        self.min_turns = int(min_turns)
        self.turn_gap_s = float(turn_gap_s)
        self.max_turn_s = float(max_turn_s)
        self.min_hit = float(min_hit)
        self.min_margin = float(min_margin)
        self.min_lead = float(min_lead)
        self.min_silence_s = float(min_silence_s)
        self.history_s = float(history_s)
        self._memory = int(memory)
        self._series: dict[FaceId, dict[float, float]] = defaultdict(dict)  # face → {t: lip height}
        self._speech: list[tuple[float, float]] = []
        self._seen_until = -math.inf
        self._counted_segments: set[tuple[SpeakerId, float]] = set()
        self._silence_done: float | None = None  # silence before this time has been counted
        # face → recent (speaker or _NOBODY, turn number, talking probability) observations
        self._observations: dict[FaceId, deque[tuple[object, int, float]]] = {}
        self._turn = 0  # turns counted so far (all voices)
        self._last_segment: tuple[SpeakerId, float, float] | None = None  # speaker, turn start, end

    # -- sampling rate and thresholds -------------------------------------------------------------------------

    def _rate(self) -> float:
        if self.frame_rate is not None:
            return float(self.frame_rate)
        rate = sample_rate_of(self._sorted(face) for face in self._series)
        return rate if rate is not None else MOVING_THRESHOLDS[0][0]

    def _max_gap_s(self, rate: float) -> float:
        return max(2.5 / rate, 0.6)  # a step over more than ~2 missing frames is not one movement

    def _sorted(self, face: FaceId) -> list[tuple[float, float]]:
        return sorted(self._series[face].items())

    def _talking(self, face: FaceId, spans: Sequence[tuple[float, float]], rate: float) -> float | None:
        movement = mouth_movement(self._sorted(face), spans, self._max_gap_s(rate))
        return None if movement is None else talking_probability(movement.mean_step, moving_threshold(rate))

    # -- the stream ------------------------------------------------------------------------------------------------

    def update(self, window_t0: float, window_t1: float, mouth_series: Mapping[FaceId, MouthSeries],
               speech_regions: Sequence[tuple[float, float]],
               segments: Sequence[tuple[float, float, SpeakerId]] = ()) -> dict[FaceId, float]:
        """Take one window's mouth samples per face, its voice activity (speech regions, media time) and its
        speakers' segments; return each face's speaking score in this window (0 when no voice is active; faces
        without enough mouth samples while the voice spoke are left out). Windows may overlap: samples, regions and
        segments seen again are not counted twice; a segment counts once it has ended within a window."""
        if window_t1 <= window_t0:
            raise ValueError(f"empty window {window_t0}..{window_t1}")
        for face, series in mouth_series.items():
            known = self._series[face]
            for t, value in series:
                if math.isfinite(t) and math.isfinite(value):
                    known[float(t)] = float(value)
        voiced = [*speech_regions, *((t0, t1) for t0, t1, _ in segments)]  # a speaker's segment is voice too
        self._speech = _merged([*self._speech, *_within(_merged(voiced), window_t0, window_t1)])
        self._seen_until = max(self._seen_until, window_t1)
        if self._silence_done is None:
            self._silence_done = window_t0
        rate = self._rate()

        scores = self._window_scores(window_t0, window_t1, list(mouth_series), rate)
        for t0, t1, speaker in sorted(segments, key=lambda s: (s[0], s[1])):
            key = (speaker, round(float(t0), 2))
            if t1 <= window_t1 + 1e-9 and key not in self._counted_segments:
                self._counted_segments.add(key)
                self._observe(speaker, self._turn_of(speaker, float(t0), float(t1)), [(float(t0), float(t1))], rate)
        self._count_silences(rate)
        self._forget(window_t1)
        return scores

    def _window_scores(self, t0: float, t1: float, faces: list[FaceId], rate: float) -> dict[FaceId, float]:
        voiced = _within(self._speech, t0, t1)
        if not voiced:
            return {face: 0.0 for face in faces}
        silent = [g for g in _gaps(self._speech, t0, t1) if g[1] - g[0] >= self.min_silence_s]
        scores = {}
        for face in faces:
            while_voiced = self._talking(face, voiced, rate)
            if while_voiced is None:
                continue
            while_silent = self._talking(face, silent, rate) if silent else None
            scores[face] = while_voiced * (1.0 - while_silent) if while_silent is not None else while_voiced
        return scores

    def _turn_of(self, speaker: SpeakerId, t0: float, t1: float) -> int:
        """The number of the turn a segment belongs to: a voice's turn goes on until another voice speaks, it
        pauses turn_gap_s or the turn has lasted max_turn_s (so a monologue still gives separate occasions)."""
        last = self._last_segment
        if last is not None and last[0] == speaker and t0 - last[2] < self.turn_gap_s and t1 - last[1] <= (
                self.max_turn_s):
            self._last_segment = (speaker, last[1], t1)
        else:
            self._turn += 1
            self._last_segment = (speaker, t0, t1)
        return self._turn

    def _observe(self, speaker: object, turn: int, spans: list[tuple[float, float]], rate: float) -> None:
        for face in self._series:
            p = self._talking(face, spans, rate)
            if p is not None:
                self._observations.setdefault(face, deque(maxlen=self._memory)).append((speaker, turn, p))

    def _count_silences(self, rate: float) -> None:
        """Silences (no voice at all) of at least min_silence_s, in pieces of at most 3 s, each counted once: a
        silence when a voice began after it, a long one also piece by piece while it lasts."""
        if self._silence_done is None:
            return
        for a, b in _gaps(self._speech, self._silence_done, self._seen_until):
            closed = b < self._seen_until  # a voice began at b
            at = a
            while b - at >= 3.0:
                self._observe(_NOBODY, 0, [(at, at + 3.0)], rate)
                at += 3.0
            if not closed:
                self._silence_done = at
                return
            if b - at >= self.min_silence_s:
                self._observe(_NOBODY, 0, [(at, b)], rate)
        self._silence_done = self._seen_until

    def _forget(self, now: float) -> None:
        horizon = now - self.history_s
        for face in list(self._series):
            kept = {t: o for t, o in self._series[face].items() if t >= horizon}
            if kept:
                self._series[face] = kept
            else:
                del self._series[face]
        self._speech = [(a, b) for a, b in self._speech if b >= horizon]
        self._counted_segments = {k for k in self._counted_segments if k[1] >= horizon - 60.0}
        # a face gone from view for history_s takes its evidence along: a voice may then be tied to the face it has
        # now (the same person back under a new id), and memory stays bounded by the faces in view
        for face in list(self._observations):
            if face not in self._series:
                del self._observations[face]

    # -- binding -----------------------------------------------------------------------------------------------

    def evidence(self) -> dict[SpeakerId, dict[FaceId, VoiceFaceEvidence]]:
        """For each voice and each face measured during its segments: how the face's mouth moved then and
        elsewhere."""
        out: dict[SpeakerId, dict[FaceId, VoiceFaceEvidence]] = {}
        for face, observations in self._observations.items():
            for speaker in {s for s, _, _ in observations if s is not _NOBODY}:
                mine = [p for s, _, p in observations if s == speaker]
                turns = len({turn for s, turn, _ in observations if s == speaker})
                other = [p for s, _, p in observations if s != speaker]
                out.setdefault(speaker, {})[face] = VoiceFaceEvidence(
                    float(np.mean(mine)), len(mine), turns, float(np.mean(other)) if other else 0.0, len(other))
        return out

    def binding(self) -> dict[SpeakerId, FaceId]:
        """voice → face, for the voices whose face is clear (see the module's description); the others are left
        out."""
        candidates = []
        for speaker, faces in self.evidence().items():
            for face, e in faces.items():
                next_best = max([other.score for f, other in faces.items() if f != face], default=0.0)
                enough = e.segments >= self.min_segments and e.turns >= self.min_turns
                if (enough and e.hit >= self.min_hit and e.score >= self.min_margin
                        and e.score - max(next_best, 0.0) >= self.min_lead):
                    candidates.append((e.score, speaker, face))
        bound: dict[SpeakerId, FaceId] = {}
        taken: set[FaceId] = set()
        for _, speaker, face in sorted(candidates, key=lambda c: -c[0]):
            if speaker not in bound and face not in taken:
                bound[speaker] = face
                taken.add(face)
        return bound

    def speaking_face(self, t: float, segments: Sequence[tuple[float, float, SpeakerId]]) -> FaceId | None:
        """The face bound to the voice that speaks at media time t (None when no voice does, or when it is
        unbound); with several voices at once, the first bound one."""
        bound = self.binding()
        for t0, t1, speaker in segments:
            if t0 <= t <= t1 and speaker in bound:
                return bound[speaker]
        return None
