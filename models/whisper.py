"""The one Whisper model of a process: loaded once, shared by incremental ASR and the audio scorer."""

from __future__ import annotations

import threading
from functools import lru_cache

from models.assets import resolve_device, whisper_dir

_load_lock = threading.Lock()


@lru_cache(maxsize=None)
def _load(size: str, device: str, compute_type: str, cpu_threads: int):
    from faster_whisper import WhisperModel

    return WhisperModel(str(whisper_dir(size)), device=device, compute_type=compute_type, cpu_threads=cpu_threads)


def load_whisper(size: str = "tiny.en", device: str = "auto", cpu_threads: int = 0):
    """A faster_whisper.WhisperModel for 'tiny.en' or 'base'; int8 on CPU, float16 on CUDA."""
    resolved = resolve_device(device)
    compute_type = "float16" if resolved == "cuda" else "int8"
    with _load_lock:
        return _load(size, resolved, compute_type, cpu_threads)
