"""Where the speech is: Silero VAD's speech regions of a buffer (through faster-whisper), and the quietest moment
between two points, where a buffer or a file is cut."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from media import SAMPLE_RATE


@dataclass
class Speech:
    regions: list[tuple[float, float]]  # media-time speech intervals found by the VAD, in order
    buffer_end: float

    @property
    def any(self) -> bool:
        return bool(self.regions)

    @property
    def trailing_silence(self) -> float:
        return self.buffer_end - self.regions[-1][1] if self.regions else float("inf")

    def last_pause(self, at_least: float) -> float | None:
        """Start of the last silence of at_least seconds between two stretches of speech, if any."""
        for a, b in zip(reversed(self.regions[:-1]), reversed(self.regions[1:])):
            if b[0] - a[1] >= at_least:
                return a[1]
        return None

    def overlaps(self, start: float, end: float, margin: float) -> bool:
        return any(start < b + margin and end > a - margin for a, b in self.regions)


def quietest_sample(audio: np.ndarray, a: int, b: int) -> tuple[int, float]:
    """The centre (a sample index) of the quietest 20 ms of audio[a:b], on a 5 ms grid, and its energy; (a, inf)
    when the span is shorter than 20 ms."""
    frame, hop = int(0.02 * SAMPLE_RATE), int(0.005 * SAMPLE_RATE)
    a, b = max(0, a), min(len(audio), b)
    if b - a < frame:
        return a, float("inf")
    x = audio[a:b].astype(np.float64) ** 2
    energy = np.convolve(x, np.ones(frame), mode="valid")[::hop]
    i = int(np.argmin(energy))
    return a + i * hop + frame // 2, float(energy[i])


def detect_speech(audio: np.ndarray, t0: float, min_silence_s: float, threshold: float) -> Speech:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(
        threshold=threshold,
        min_silence_duration_ms=int(min_silence_s * 1000),
        speech_pad_ms=0,
        min_speech_duration_ms=120,
    )
    regions = [
        (t0 + r["start"] / SAMPLE_RATE, t0 + r["end"] / SAMPLE_RATE)
        for r in get_speech_timestamps(audio, options, sampling_rate=SAMPLE_RATE)
    ]
    return Speech(regions, t0 + len(audio) / SAMPLE_RATE)
