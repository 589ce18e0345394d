"""The timestamped media items that flow from sources into the buffers.

Media time (seconds from the start of the stream's media) is what windows and words are placed on; wall-clock
time only measures latency and lag. The two are never mixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class AudioChunk:
    t: float  # media time of the first sample
    samples: np.ndarray  # float32, mono, SAMPLE_RATE, in [-1, 1]

    @property
    def t_end(self) -> float:
        return self.t + len(self.samples) / SAMPLE_RATE


@dataclass(frozen=True)
class VideoFrame:
    t: float  # media time the frame is shown
    image: np.ndarray  # uint8 RGB, H x W x 3


@dataclass(frozen=True)
class Word:
    start: float  # media time
    end: float
    text: str  # as Whisper wrote it, with its leading space
    probability: float = 1.0
    language: str | None = None  # ISO 639-1 code of the language it was transcribed in
