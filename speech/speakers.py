"""Who is speaking: stable speaker ids for a stream's speech, by online clustering of voice embeddings.

Model-free: it takes the embeddings (unit vectors, models/voices.py) as numpy arrays, so it runs and is tested
without torch. Two parts, both incremental, as a live pipeline runs them:

`SpeechChunker` cuts the VAD's speech regions into the stretches that get embedded: each new stretch of speech as
soon as it is settled, never across a pause (a pause is where turns change), at most CHUNK_S + TAIL_S long while the
speaker goes on, so a speaker id follows speech within about 2 s. A region that closes is cut into equal pieces of
CHUNK_S to 2 x CHUNK_S; a region still open gives a CHUNK_S piece each time more than CHUNK_S + TAIL_S of it is
unchunked, which leaves at least TAIL_S for its end: a region's last piece is never a sliver.

`SpeakerTracker` gives each stretch (start, end, embedding), fed in time order, a speaker id or None:
- ids are 0, 1, 2, … in order of appearance and never reused; the number of speakers is not known in advance;
- a stretch of at least LONG_S joins the known speaker whose centroid (the duration-weighted mean of its
  stretches' embeddings) is most alike if the cosine reaches that speaker's own threshold: how alike its stretches
  are to each other's centroid, less DROP, between JOIN and JOIN_MAX (a steady voice is held to a stricter match
  than one that moves a lot); the centroid then takes it in;
- a long stretch alike to no known speaker waits (pending, its id None): a new speaker is made only when two
  pending stretches agree with each other (cosine ≥ PAIR) and their mean is still unlike every known speaker: one
  odd stretch of a known voice (a shout, a laugh, a cough) does not split a speaker, and a stretch of music or noise
  that the VAD let through makes none. A long stretch that is clearly nearer a pending stretch than any speaker
  (PREFER) pairs with it instead of joining. Pending stretches that a known speaker's centroid comes to match later
  are given to it; they wait at most PENDING_S of media time;
- a short stretch (under LONG_S) is too little evidence to make or move a speaker: it gets the nearest known
  speaker only when that one is clearly closer (cosine ≥ SHORT_JOIN and MARGIN ahead of the second), else None;
- every REFINE_EVERY long stretches the recent ones go to the centroid now nearest, and two speakers whose centroids
  have come together (MERGE) become one: the older id stays, the younger is retired (`merged`).

An id given live may change later (a pending stretch confirmed, a stretch refined, a speaker merged):
`speaker_of(t0, t1)` always tells the latest, giving a committed word (or any span) the speaker whose stretches
cover most of it.

The thresholds were chosen on benchmarks/speakers.py's data (RAVDESS turn-taking conversations of actors 1-18, the
speech recordings, the music videos), not on the tests' fixtures; the comments at each say what they were measured
against. Held out (actors 19-24) the tracker attributes 91 % of the speech of calm and neutral conversations to the
right person, 74 % when every turn may be acted in another emotion (anger to sadness moves a d-vector as far as a
change of speaker does): see the benchmark's docstring.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from media import SAMPLE_RATE

# ------------------------------------------------------------------------------------------------ segmentation
CHUNK_S = 1.5  # one embedded stretch while the speaker goes on: about one 1.6 s partial of the voice encoder
TAIL_S = 0.5  # an open region keeps at least this much unchunked, so that its last piece is not a sliver
CLOSED_AFTER_S = 0.3  # a region is closed once this much audio after its end is known (the VAD saw the pause)
MIN_CHUNK_S = 0.3  # less speech than this is not embedded at all
# the VAD settings the stretches come from (the tracker's thresholds were measured with them)
VAD_MIN_SILENCE_S = 0.15  # the pause that ends a speech region
VAD_THRESHOLD = 0.5


def streaming_speech(keep_s: float = 30.0):
    """A stream's VAD as the voices are tracked on it (speech.vad.StreamingSpeech with these settings), holding the
    last keep_s of its probabilities."""
    from speech.vad import StreamingSpeech

    return StreamingSpeech(VAD_THRESHOLD, VAD_MIN_SILENCE_S, keep_s)


def speech_regions(audio: np.ndarray, t0: float = 0.0) -> list[tuple[float, float]]:
    """The VAD's speech regions of a whole recording starting at media time t0, with the settings the voices are
    tracked on: what a stream's VAD finds over it (streaming_speech)."""
    return streaming_speech(keep_s=len(audio) / SAMPLE_RATE + 1.0)(audio, t0)


class SpeechChunker:
    """Cuts VAD speech regions, as they become known, into stretches to embed (see the module's docstring).

    push(regions, until): `regions` are the VAD's speech regions (media time, in order) over the audio known up to
    `until`; regions (or their parts) that were already chunked are skipped, so the caller may pass the VAD's
    regions of a sliding buffer each time. Returns the new stretches, in order."""

    def __init__(self, chunk_s: float = CHUNK_S, tail_s: float = TAIL_S, closed_after_s: float = CLOSED_AFTER_S,
                 min_chunk_s: float = MIN_CHUNK_S) -> None:
        self.chunk_s, self.tail_s = chunk_s, tail_s
        self.closed_after_s, self.min_chunk_s = closed_after_s, min_chunk_s
        self.done_until = 0.0  # speech before this media time has been chunked (or skipped)
        self.settled_until = 0.0  # no later push adds a stretch before this media time

    def push(self, regions: Iterable[tuple[float, float]], until: float) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        self.settled_until = max(self.settled_until, until - self.closed_after_s)
        for a, b in regions:
            if b <= self.done_until:
                continue
            a = max(a, self.done_until)
            if until - b >= self.closed_after_s:  # closed: equal pieces of chunk_s to 2 x chunk_s
                length = b - a
                if length >= self.min_chunk_s:
                    k = max(1, int(length // self.chunk_s))
                    step = length / k
                    out.extend((a + i * step, a + (i + 1) * step if i < k - 1 else b) for i in range(k))
                self.done_until = b
                continue
            # open: the speaker may go on
            while min(b, until) - a >= self.chunk_s + self.tail_s:
                out.append((a, a + self.chunk_s))
                a += self.chunk_s
            self.done_until = a
            self.settled_until = max(min(self.settled_until, a), 0.0)
            break  # nothing after an open region is settled
        return out


# ---------------------------------------------------------------------------------------------------- tracking
# Cosines are of session-compensated d-vectors (models/voices.py: centred, so two unrelated voices are about 0 and
# two 1.5-2 s stretches of one RAVDESS actor across emotions about 0.1-0.7, median 0.39; two actors of one sex
# -0.2-0.3).
# Every threshold below was chosen together, by a grid over them, on benchmarks/speakers.py's conversations built
# from RAVDESS actors 1-18 (actors 1-9 and 10-18 apart, each with a compensation fitted on the other half, 20 turns,
# 5 seeds, all emotions and calm only), endgame_nagg_nell (2 voices), two_cities and the vna clips (1 voice each)
# and the music videos; the benchmark then reports them on the held-out actors 19-24.
LONG_S = 1.0  # a stretch this long can make, confirm and move a speaker
JOIN = 0.3  # the least cosine of a long stretch to a speaker's centroid to join it (see DROP, JOIN_MAX) …
DROP = 0.2  # … a speaker's own long stretches' mean cosine to its centroid, less this, …
JOIN_MAX = 0.45  # … but at most this: a steady voice holds a new calm voice at 0.45 (endgame's second voice is
# 0.3-0.45 to the first), one that moves a lot (acted anger to sadness) takes stretches from 0.3. With one fixed
# JOIN of 0.25-0.3 the emotional conversations gained 5-8 points but endgame's two voices became one.
PAIR = 0.35  # cosine of two pending stretches to make a new speaker of them (0.3: more false speakers on music with
# vocals; 0.4-0.5: 1-4 points less attributed)
PREFER = 0.1  # a long stretch this much closer to a pending stretch than to the nearest speaker pairs with it
SHORT_JOIN = 0.3  # a short stretch gets the nearest speaker only from this cosine …
MARGIN = 0.1  # … and this much ahead of the second nearest
PENDING_S = 60.0  # a pending stretch waits this long (media time) for a partner or a matching speaker
MAX_PENDING = 16
REFINE_EVERY = 4  # every this many long stretches, the recent ones are given again to their nearest centroid …
MERGE = 0.6  # … and two speakers whose centroids are this alike become one (the older id stays): the centroids of
# 4 stretches of one held-out actor are 0.57-0.87 alike, of two actors of one sex 0.10-0.42 (5th-95th percentile)
MERGE_MIN = 3  # (each with at least this many long stretches)
HISTORY = 400  # long stretches kept for that (about 10 minutes of speech)
MEMBERS_KEPT = 50  # the recent long stretches of a speaker that its spread (DROP) is measured on


@dataclass
class VoiceSegment:
    start: float
    end: float
    speaker: int | None  # None: not attributed (short and unclear, or pending a second stretch like it)
    similarity: float  # cosine to the centroid of the speaker it got (or of the nearest one), 0 when none existed
    embedding: np.ndarray = field(repr=False)

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Speaker:
    id: int
    first_seen: float
    seconds: float = 0.0  # speech attributed to it (the stretches that fed its centroid)
    segments: int = 0
    _sum: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64), repr=False)

    _members: list[VoiceSegment] = field(default_factory=list, repr=False)
    _threshold: float | None = field(default=None, repr=False)

    def take(self, segment: VoiceSegment) -> None:
        weight = max(segment.seconds, 1e-3)
        vec = segment.embedding.astype(np.float64) * weight
        self._sum = vec if self._sum.size == 0 else self._sum + vec
        self.seconds += segment.seconds
        self.segments += 1
        self._members = (self._members + [segment])[-MEMBERS_KEPT:]
        self._threshold = None

    @property
    def centroid(self) -> np.ndarray:
        return _unit(self._sum)

    def threshold(self, join: float, join_max: float, drop: float) -> float:
        """The cosine a long stretch needs to join this speaker: how alike its own long stretches are to the
        centroid of the others (the mean over its members), less `drop`, kept within [join, join_max]. A steady
        voice (a reader, a calm talker) is held to a stricter match than one that moves a lot (acted emotions), so
        a second calm voice is not swallowed by the first; from its first two stretches on."""
        if self._threshold is None:
            if len(self._members) < 2 or drop <= 0:
                self._threshold = join
            else:
                emb = np.stack([m.embedding for m in self._members])
                w = np.array([max(m.seconds, 1e-3) for m in self._members])
                total = (emb * w[:, None]).sum(axis=0)
                loo = total[None] - emb * w[:, None]
                sims = np.sum(emb * loo, axis=1) / np.maximum(np.linalg.norm(loo, axis=1), 1e-12)
                self._threshold = float(np.clip(sims.mean() - drop, join, join_max))
        return self._threshold


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


class SpeakerTracker:
    """Online speaker clustering of a stream's voice stretches (see the module's docstring)."""

    def __init__(self, join: float = JOIN, pair: float = PAIR, short_join: float = SHORT_JOIN,
                 margin: float = MARGIN, long_s: float = LONG_S, pending_s: float = PENDING_S,
                 max_pending: int = MAX_PENDING, refine_every: int = REFINE_EVERY, merge: float = MERGE,
                 merge_min: int = MERGE_MIN, history: int = HISTORY, join_max: float = JOIN_MAX,
                 drop: float = DROP, prefer: float = PREFER) -> None:
        self.join_max, self.drop, self.prefer = join_max, drop, prefer
        self.join, self.pair, self.short_join, self.margin = join, pair, short_join, margin
        self.long_s, self.pending_s, self.max_pending = long_s, pending_s, max_pending
        self.refine_every, self.merge, self.merge_min, self.history = refine_every, merge, merge_min, history
        self._long: list[VoiceSegment] = []  # the recent long stretches
        self.merged: dict[int, int] = {}  # retired id → the id it was merged into
        self._next_id = 0
        self.speakers: dict[int, Speaker] = {}
        self.segments: list[VoiceSegment] = []  # in time order
        self._starts: list[float] = []
        self._pending: list[VoiceSegment] = []

    # -------------------------------------------------------------------------------------------------- feeding
    def add(self, start: float, end: float, embedding: np.ndarray) -> int | None:
        """The speaker id of the stretch [start, end) of speech whose voice embedding is `embedding`, or None.
        Stretches come in time order. A None may later turn into an id (a pending stretch confirmed by a second
        one): `speaker_of` and `segments` always tell the latest."""
        if end <= start:
            raise ValueError(f"a voice stretch must end after it starts: {start}..{end}")
        if self.segments and start < self.segments[-1].start:
            raise ValueError("voice stretches must come in time order")
        vec = _unit(np.asarray(embedding, dtype=np.float64).ravel())
        if not np.all(np.isfinite(vec)):
            raise ValueError("a voice embedding must be finite")
        segment = VoiceSegment(start, end, None, 0.0, vec)
        self.segments.append(segment)
        self._starts.append(start)
        self._expire(start)
        ranked = self._ranked(vec)
        if ranked:
            segment.similarity = ranked[0][1]
        if segment.seconds < self.long_s:
            if ranked and ranked[0][1] >= self.short_join and (
                    len(ranked) == 1 or ranked[0][1] - ranked[1][1] >= self.margin):
                segment.speaker = ranked[0][0]  # a short stretch never moves a centroid
            return segment.speaker
        self._long = (self._long + [segment])[-self.history:]
        partner, partner_sim = self._partner(segment)
        prefers_partner = partner is not None and partner_sim >= self.pair and (
            not ranked or partner_sim >= ranked[0][1] + self.prefer)
        if ranked and ranked[0][1] >= self._threshold(ranked[0][0]) and not prefers_partner:
            self._assign(segment, ranked[0][0], ranked[0][1])
            self._settle_pending()
        else:
            self._pending.append(segment)
            self._confirm_new(segment)
        live = segment.speaker
        if self.refine_every and len(self._long) % self.refine_every == 0:
            self._refine()
        return live

    def _refine(self) -> None:
        """The recent long stretches of each speaker go to the centroid now nearest (when it is alike enough), the
        centroids are rebuilt from them, and speakers whose centroids have come together are merged."""
        members = [s for s in self._long if s.speaker is not None]
        if not members or len(self.speakers) < 2:
            return
        for _ in range(2):
            ids = list(self.speakers)
            cents = np.stack([self.speakers[i].centroid for i in ids])
            sims = np.stack([s.embedding for s in members]) @ cents.T
            for s, row in zip(members, sims):
                j = int(np.argmax(row))
                if row[j] >= self._threshold(ids[j]):
                    s.speaker, s.similarity = ids[j], float(row[j])
            self._rebuild(members)
        while True:
            big = [i for i, sp in self.speakers.items() if sp.segments >= self.merge_min]
            pairs = [(float(self.speakers[a].centroid @ self.speakers[b].centroid), a, b)
                     for k, a in enumerate(big) for b in big[k + 1:]]
            best = max(pairs, default=None)
            if best is None or best[0] < self.merge:
                break
            keep, gone = min(best[1], best[2]), max(best[1], best[2])
            for s in self.segments:
                if s.speaker == gone:
                    s.speaker = keep
            self.merged[gone] = keep
            self._rebuild(members)

    def _rebuild(self, members: list[VoiceSegment]) -> None:
        """Centroids from the recent long stretches (a speaker none of them has keeps its centroid)."""
        fresh: dict[int, Speaker] = {}
        for s in members:
            if s.speaker is None or s.speaker not in self.speakers:
                continue
            if s.speaker not in fresh:
                fresh[s.speaker] = Speaker(s.speaker, self.speakers[s.speaker].first_seen)
            fresh[s.speaker].take(s)
        for sid in list(self.speakers):
            if sid in fresh:
                self.speakers[sid] = fresh[sid]
            elif sid in self.merged:
                del self.speakers[sid]

    def _threshold(self, speaker: int) -> float:
        return self.speakers[speaker].threshold(self.join, self.join_max, self.drop)

    def _ranked(self, vec: np.ndarray) -> list[tuple[int, float]]:
        sims = [(sid, float(vec @ s.centroid)) for sid, s in self.speakers.items()]
        return sorted(sims, key=lambda x: -x[1])

    def _assign(self, segment: VoiceSegment, speaker: int, similarity: float) -> None:
        segment.speaker, segment.similarity = speaker, similarity
        self.speakers[speaker].take(segment)
        if segment in self._pending:
            self._pending.remove(segment)

    def _confirm_new(self, segment: VoiceSegment) -> None:
        """A new speaker from `segment` and the pending stretch most like it, if they agree and their mean is
        unlike every known speaker; else `segment` waits."""
        best, best_sim = self._partner(segment)
        if best is None or best_sim < self.pair:
            return
        mean = _unit(segment.embedding * segment.seconds + best.embedding * best.seconds)
        ranked = self._ranked(mean)
        if ranked and ranked[0][1] >= self._threshold(ranked[0][0]) and ranked[0][1] >= best_sim - self.prefer:
            # two odd stretches of a known voice: they go to it together
            for s in (best, segment):
                self._assign(s, ranked[0][0], float(s.embedding @ self.speakers[ranked[0][0]].centroid))
            return
        sid = self._next_id
        self._next_id += 1
        self.speakers[sid] = Speaker(sid, first_seen=best.start)
        for s in (best, segment):
            self._assign(s, sid, float(s.embedding @ mean))
        self._settle_pending()

    def _partner(self, segment: VoiceSegment) -> tuple[VoiceSegment | None, float]:
        """The pending long stretch most like `segment`, and its cosine."""
        best: VoiceSegment | None = None
        best_sim = -1.0
        for other in self._pending:
            if other is not segment:
                sim = float(segment.embedding @ other.embedding)
                if sim > best_sim:
                    best, best_sim = other, sim
        return best, best_sim

    def _settle_pending(self) -> None:
        """Pending stretches that a speaker's centroid now matches are given to it."""
        changed = True
        while changed and self._pending:
            changed = False
            for segment in list(self._pending):
                ranked = self._ranked(segment.embedding)
                if ranked and ranked[0][1] >= self._threshold(ranked[0][0]):
                    self._assign(segment, ranked[0][0], ranked[0][1])
                    changed = True

    def _expire(self, now: float) -> None:
        self._pending = [s for s in self._pending if now - s.end <= self.pending_s][-self.max_pending:]

    # ------------------------------------------------------------------------------------------------- lookup
    def speaker_of(self, t0: float, t1: float) -> int | None:
        """The speaker whose stretches cover most of [t0, t1) (a committed word's span), or None when no
        attributed stretch overlaps it. A zero-length span is looked up at its point."""
        if t1 < t0:
            t0, t1 = t1, t0
        cover: dict[int, float] = {}
        i = bisect.bisect_right(self._starts, t1)
        while i > 0:
            i -= 1
            s = self.segments[i]
            if s.end < t0 - 30.0:  # stretches are at most a few seconds long: nothing earlier can overlap
                break
            if s.speaker is None:
                continue
            overlap = min(s.end, t1) - max(s.start, t0)
            if overlap > 0 or (t1 == t0 and s.start <= t0 < s.end):
                cover[s.speaker] = cover.get(s.speaker, 0.0) + max(overlap, 1e-9)
        return max(cover, key=lambda k: cover[k]) if cover else None

    def speakers_in(self, t0: float, t1: float) -> dict[int, float]:
        """Seconds of each speaker's attributed speech inside [t0, t1) (a window's speakers)."""
        out: dict[int, float] = {}
        for s in self.segments[max(0, bisect.bisect_left(self._starts, t0 - 30.0)):bisect.bisect_right(
                self._starts, t1)]:
            overlap = min(s.end, t1) - max(s.start, t0)
            if s.speaker is not None and overlap > 0:
                out[s.speaker] = out.get(s.speaker, 0.0) + overlap
        return out

    def segments_in(self, t0: float, t1: float) -> list[tuple[float, float, int]]:
        """(start, end, speaker) of each attributed stretch overlapping [t0, t1), whole, in time order."""
        return [(s.start, s.end, s.speaker) for s in self.segments[
            max(0, bisect.bisect_left(self._starts, t0 - 30.0)):bisect.bisect_right(self._starts, t1)]
            if s.speaker is not None and s.end > t0 and s.start < t1]

    def forget_before(self, t: float) -> None:
        """Drops the stretches that end before media time t from the lookup (the speakers stay)."""
        keep = next((i for i, s in enumerate(self.segments) if s.end >= t), len(self.segments))
        del self.segments[:keep]
        del self._starts[:keep]


def attribute(spans: Sequence[tuple[float, float]], tracker: SpeakerTracker) -> list[int | None]:
    """speaker_of each (start, end) span, e.g. the words of a window."""
    return [tracker.speaker_of(a, b) for a, b in spans]
