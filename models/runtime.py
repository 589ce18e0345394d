"""Where and how the models run: the device (`--device auto|cpu|cuda`), how a process splits its CPUs between
speech recognition and scoring (`ThreadPlan`), and the scorers' one side thread for the two halves of a batch."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import TypeVar

T = TypeVar("T")
U = TypeVar("U")


class DeviceUnavailable(RuntimeError):
    """The device asked for is not there (--device cuda where torch sees no GPU)."""


@cache
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
