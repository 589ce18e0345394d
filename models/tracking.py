"""Who is who across frames: a stable `person` id per face while it stays in view, and a per-person summary.

Frames reach the visual analyzer at only ~2 fps, so a face that moves may not overlap its last box at all. The
tracker therefore matches in two passes over the faces of each frame, greedily (best pair first):

1. IoU between a face and each live track's box, predicted forward at the track's recent velocity;
2. for what is left, the distance between centres in units of face size (a face that jumped up to about its own
   width), if the two boxes are of similar size.

A face that matches no live track may take up a track that went unseen for more than `forget_s` of media time but
less than `forget_s + rejoin_s` (a face that left the view or turned away, coming back where it was: a seat in a
meeting, a presenter stepping out of frame), when it appears within a face size of that track's last box and of a
similar size; otherwise it starts a new person. Appearance is not compared, only geometry: someone else taking the
same seat within rejoin_s is taken for the one who left. Boxes are taken
relative to the frame size, so a stream that changes resolution (WebRTC does under low bandwidth) keeps its people.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# How far a track's velocity is extrapolated: beyond this, a face that paused would be looked for in the wrong place.
_MAX_PREDICT_S = 1.0


@dataclass
class _Track:
    person: int
    box: np.ndarray  # x0, y0, x1, y1 relative to the frame (0..1)
    last_t: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # of the centre, frame sizes per second

    def predicted(self, t: float) -> np.ndarray:
        dt = min(max(t - self.last_t, 0.0), _MAX_PREDICT_S)
        shift = self.velocity * dt
        return self.box + np.concatenate([shift, shift])


def _centre(box: np.ndarray) -> np.ndarray:
    return (box[:2] + box[2:]) / 2


def _side(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], box[3] - box[1], 1e-6))


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (n, 4) against every box in b (m, 4)."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _greedy_pairs(cost: np.ndarray, allowed: np.ndarray) -> list[tuple[int, int]]:
    """(row, column) pairs, lowest cost first, each row and column used once, only where allowed."""
    rows, cols = np.nonzero(allowed)
    pairs, used_rows, used_cols = [], set(), set()
    for k in np.argsort(cost[rows, cols], kind="stable"):
        r, c = int(rows[k]), int(cols[k])
        if r not in used_rows and c not in used_cols:
            pairs.append((r, c))
            used_rows.add(r)
            used_cols.add(c)
    return pairs


class FaceTracker:
    """Person ids for the faces of frames given in media-time order (one tracker per stream).

    forget_s: media seconds a track survives unseen (a missed detection or a face turned away briefly).
    min_iou: overlap with a predicted track box that counts as the same face.
    max_shift: the centre-distance fallback, in face sizes (the larger side of the bigger box).
    max_size_ratio: the fallback only joins boxes whose sizes differ by less than this factor.
    rejoin_s: how long after it was forgotten a track may still be taken up by a face back in its place (0: never).
    """

    def __init__(self, forget_s: float = 3.0, min_iou: float = 0.3, max_shift: float = 1.0,
                 max_size_ratio: float = 1.6, rejoin_s: float = 30.0) -> None:
        if forget_s <= 0 or not 0 < min_iou <= 1 or max_shift <= 0 or max_size_ratio < 1 or rejoin_s < 0:
            raise ValueError("forget_s and max_shift must be positive, min_iou in (0, 1], max_size_ratio >= 1, "
                             "rejoin_s >= 0")
        self.forget_s = forget_s
        self.rejoin_s = rejoin_s
        self.away: list[_Track] = []  # forgotten tracks that a face back in their place may take up
        self.min_iou = min_iou
        self.max_shift = max_shift
        self.max_size_ratio = max_size_ratio
        self.tracks: list[_Track] = []
        self.next_person = 1

    def update(self, t: float, faces: Sequence[Any], image_size: tuple[int, int]) -> list[int]:
        """The person id of each face (also set as `face.person`). faces: objects with `box` (x0, y0, x1, y1 in
        pixels); image_size: (height, width) of the frame."""
        gone = [tr for tr in self.tracks if t - tr.last_t > self.forget_s]
        self.tracks = [tr for tr in self.tracks if t - tr.last_t <= self.forget_s]
        self.away = [tr for tr in self.away + gone if t - tr.last_t <= self.forget_s + self.rejoin_s]
        if not faces:
            return []
        h, w = image_size
        scale = np.array([w, h, w, h], dtype=np.float64) if h > 0 and w > 0 else np.ones(4)
        boxes = np.array([face.box for face in faces], dtype=np.float64).reshape(-1, 4) / scale
        owner: list[_Track | None] = [None] * len(faces)
        if self.tracks:
            for track_i, face_i in self._match(t, boxes):
                owner[face_i] = self.tracks[track_i]
        free = [j for j, owned in enumerate(owner) if owned is None]
        if free and self.away:
            for away_i, j in self._near(self.away, [boxes[j] for j in free]):
                back = self.away[away_i]
                back.velocity = np.zeros(2)
                owner[free[j]] = back
                self.tracks.append(back)
            self.away = [tr for tr in self.away if tr not in self.tracks]
        ids = []
        for face, box, track in zip(faces, boxes, owner):
            if track is None:
                track = _Track(self.next_person, box, t)
                self.next_person += 1
                self.tracks.append(track)
            else:
                dt = t - track.last_t
                if dt > 0:
                    moved = (_centre(box) - _centre(track.box)) / dt
                    track.velocity = 0.5 * track.velocity + 0.5 * moved
                track.box, track.last_t = box, t
            face.person = track.person
            ids.append(track.person)
        return ids

    def _match(self, t: float, boxes: np.ndarray) -> list[tuple[int, int]]:
        predicted = np.stack([tr.predicted(t) for tr in self.tracks])
        iou = _iou_matrix(predicted, boxes)
        pairs = _greedy_pairs(-iou, iou >= self.min_iou)
        matched_tracks, matched_faces = {r for r, _ in pairs}, {c for _, c in pairs}
        free_tracks = [i for i in range(len(self.tracks)) if i not in matched_tracks]
        free_faces = [j for j in range(len(boxes)) if j not in matched_faces]
        if not free_tracks or not free_faces:
            return pairs
        near = self._near_boxes([predicted[i] for i in free_tracks], [boxes[j] for j in free_faces])
        pairs += [(free_tracks[r], free_faces[c]) for r, c in near]
        return pairs

    def _near(self, tracks: list[_Track], boxes: list[np.ndarray]) -> list[tuple[int, int]]:
        return self._near_boxes([tr.box for tr in tracks], boxes)

    def _near_boxes(self, known: list[np.ndarray], boxes: list[np.ndarray]) -> list[tuple[int, int]]:
        """(known, box) pairs whose centres lie within max_shift face sizes and whose sizes differ by less than
        max_size_ratio, nearest first."""
        sides_t = np.array([_side(b) for b in known])
        sides_f = np.array([_side(b) for b in boxes])
        centres_t = np.stack([_centre(b) for b in known])
        centres_f = np.stack([_centre(b) for b in boxes])
        distance = np.linalg.norm(centres_t[:, None] - centres_f[None], axis=2)
        size = np.maximum(sides_t[:, None], sides_f[None])
        shift = distance / size
        ratio = size / np.minimum(sides_t[:, None], sides_f[None])
        return _greedy_pairs(shift, (shift <= self.max_shift) & (ratio <= self.max_size_ratio))


@dataclass
class _Person:
    person: int
    first_seen: float
    last_seen: float
    frames: int = 0
    weight: float = 0.0
    valence: float = 0.0  # weighted sum
    emotions: dict[str, float] = field(default_factory=dict)  # weighted sums of the expression probabilities


class PeopleTracker:
    """One stream's tracker and its per-person totals for the end summary, fed each frame analysis in media-time
    order. Memory is bounded: at most `keep` people are reported, the most seen; up to twice that many (and anyone
    still in view, so that a newcomer is not dropped the frame it appears) are held between prunings."""

    def __init__(self, tracker: FaceTracker | None = None, keep: int = 50) -> None:
        self.tracker = tracker or FaceTracker()
        self.keep = keep
        self.people: dict[int, _Person] = {}

    def observe(self, t: float, analysis: Any) -> None:
        """Track the faces of one frame analysis at media time t (a models.visual.FrameAnalysis; anything without
        `faces` is skipped): each face gets its `person`."""
        faces = getattr(analysis, "faces", None)
        if faces is None:
            return
        # imported here, not on top: the pipeline imports this module, and its fakes run without the visual models
        from models.visual import face_weight

        size = tuple(getattr(analysis, "image_size", (0, 0)))
        for face, person in zip(faces, self.tracker.update(t, faces, size)):
            entry = self.people.get(person)
            if entry is None:
                entry = self.people[person] = _Person(person, t, t)
            weight = max(face_weight(face, size) if size[0] else face.score, 1e-9)
            entry.last_seen = t
            entry.frames += 1
            entry.weight += weight
            entry.valence += weight * face.valence
            for name, p in face.emotions.items():
                entry.emotions[name] = entry.emotions.get(name, 0.0) + weight * p
        if len(self.people) > 2 * self.keep:
            self._prune()

    def _most_seen(self, people) -> list[_Person]:
        return sorted(people, key=lambda p: (p.frames, p.last_seen), reverse=True)[:self.keep]

    def _prune(self) -> None:
        """Keeps the `keep` most seen and everyone still in view (whose count is still growing)."""
        in_view = {track.person for track in self.tracker.tracks}
        kept = self._most_seen(p for p in self.people.values() if p.person not in in_view)
        self.people = {p.person: p for p in kept} | {n: p for n, p in self.people.items() if n in in_view}

    def summary(self) -> list[dict]:
        """Per person (the `keep` most seen, by id): first and last media time seen, frames seen in, the weighted
        mean face valence and the top emotion over those frames."""
        return [{"person": p.person, "first_seen": round(p.first_seen, 3), "last_seen": round(p.last_seen, 3),
                 "frames": p.frames, "score": round(p.valence / p.weight, 4),
                 "top_emotion": max(p.emotions, key=p.emotions.__getitem__) if p.emotions else None}
                for p in sorted(self._most_seen(self.people.values()), key=lambda p: p.person)]

    @property
    def people_seen(self) -> int:
        """Distinct person ids given so far (including any the summary no longer holds)."""
        return self.tracker.next_person - 1
