"""Images for the visual models: reading a file, checking a frame, resizing, grey, letterboxing, and loading a
.tflite model quietly."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np


def load_image(path: str | Path) -> np.ndarray:
    """A still image (jpg, png, ...) as RGB uint8 HxWx3, decoded by FFmpeg through PyAV."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image at {path}")
    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            return frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, StopIteration, IndexError) as exc:
        raise ValueError(f"cannot decode {path} as an image: {exc}") from exc


def check_image(image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"expected an RGB uint8 image of shape (H, W, 3), got {desc}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"image too small: {image.shape}")
    return np.ascontiguousarray(image)


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an RGB (HxWx3) or grey (HxW) uint8 image with FFmpeg's swscale (area filter when shrinking)."""
    fmt = "gray" if image.ndim == 2 else "rgb24"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=fmt)
    shrinking = width < image.shape[1] or height < image.shape[0]
    out = frame.reformat(width=width, height=height, format=fmt, interpolation="AREA" if shrinking else "BILINEAR")
    return out.to_ndarray(format=fmt)


def to_grey(image: np.ndarray) -> np.ndarray:
    """RGB → grey with the BT.601 weights OpenCV uses (what fer's model was trained with), full range."""
    grey = image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, int, int]:
    """Fit the image into size x size keeping its aspect ratio, centred on black.

    Returns (canvas, scale, pad_x, pad_y)."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    canvas[pad_y:pad_y + new_h, pad_x:pad_x + new_w] = resize(image, new_w, new_h)
    return canvas, scale, pad_x, pad_y


@contextlib.contextmanager
def _native_stderr_to_devnull():
    """TensorFlow Lite's runtime prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." straight to file
    descriptor 2 (no log level or variable turns it off), in the middle of a user's `vidsent analyze` output: the
    descriptor points at /dev/null while a model loads (milliseconds, once per model)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def tflite_interpreter(path: Path, num_threads: int):
    # These models take a few ms; on a busy 2-core machine a second thread made them 2-3x slower, so 1 by default.
    from ai_edge_litert.interpreter import Interpreter

    with _native_stderr_to_devnull():
        interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        interpreter.allocate_tensors()
    return interpreter


def jpeg_data_uri(image: np.ndarray, side: int, quality: int = 82) -> str:
    """An RGB image scaled to fit side x side as a JPEG `data:` URL (the report's and the dashboard's faces)."""
    import base64
    import io

    from PIL import Image

    picture = Image.fromarray(image)
    picture.thumbnail((side, side))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
