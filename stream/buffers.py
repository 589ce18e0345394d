"""Bounded per-stream buffers: memory does not grow with the length of a stream.

- AudioRing keeps the last `capacity_s` seconds of audio on media time. Audio is never dropped by policy: the
  pipeline reads every window out of it as soon as the window's media has arrived, and a file source is not read
  further while unread audio would be overwritten.
- FrameQueue holds sampled frames waiting for the visual scorer. When the scorer falls behind, the OLDEST waiting
  frames are dropped (the newest is always kept, as with aiortc's MediaRelay(buffered=False)), and counted.
- TimedResults keeps per-frame results for the last few seconds so overlapping windows reuse them.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import numpy as np

from media import SAMPLE_RATE, AudioChunk, VideoFrame

T = TypeVar("T")


class AudioRing:
    def __init__(self, capacity_s: float = 60.0, sample_rate: int = SAMPLE_RATE):
        self.sample_rate = sample_rate
        self.capacity = int(capacity_s * sample_rate)
        self._data = np.zeros(self.capacity, dtype=np.float32)
        self._end = 0  # absolute index (in samples since media time 0) one past the newest sample
        self._origin: int | None = None  # absolute index of the first sample ever written

    @property
    def end_t(self) -> float:
        return self._end / self.sample_rate

    @property
    def start_t(self) -> float:
        """Media time of the oldest sample still held."""
        if self._origin is None:
            return 0.0
        return max(self._origin, self._end - self.capacity) / self.sample_rate

    def append(self, chunk: AudioChunk) -> None:
        start = int(round(chunk.t * self.sample_rate))
        samples = chunk.samples
        if self._origin is None:
            self._origin = start
            self._end = start
        if start < self._end:  # overlap with what we have: keep the earlier samples
            samples = samples[self._end - start:]
            start = self._end
        if start > self._end:  # a gap in the media: fill with silence so the timeline stays contiguous
            self._write(np.zeros(start - self._end, dtype=np.float32))
        self._write(samples)

    def _write(self, samples: np.ndarray) -> None:
        if len(samples) > self.capacity:
            samples = samples[-self.capacity:]
            self._end += len(samples) - self.capacity
        pos = self._end % self.capacity
        first = min(len(samples), self.capacity - pos)
        self._data[pos:pos + first] = samples[:first]
        self._data[:len(samples) - first] = samples[first:]
        self._end += len(samples)

    def read(self, t0: float, t1: float) -> np.ndarray:
        """A copy of the audio in [t0, t1) clipped to what was received; raises if it was already overwritten."""
        if self._origin is None:
            return np.zeros(0, dtype=np.float32)
        i0 = max(int(round(t0 * self.sample_rate)), self._origin)
        i1 = min(int(round(t1 * self.sample_rate)), self._end)
        if i1 <= i0:
            return np.zeros(0, dtype=np.float32)
        if i0 < self._end - self.capacity:
            raise OverflowError(f"audio at {t0:.2f} s was overwritten: "
                                f"the ring holds {self.capacity / self.sample_rate:.0f} s")
        idx = np.arange(i0, i1) % self.capacity
        return self._data[idx]


class FrameQueue:
    """Sampled frames waiting to be analysed; drop-oldest when full."""

    def __init__(self, max_waiting: int = 8):
        self._frames: deque[VideoFrame] = deque()
        self.max_waiting = max_waiting
        self.dropped = 0

    def put(self, frame: VideoFrame) -> None:
        self._frames.append(frame)
        while len(self._frames) > self.max_waiting:
            self._frames.popleft()
            self.dropped += 1

    def take(self, n: int) -> list[VideoFrame]:
        """The oldest n waiting frames (in media-time order)."""
        out: list[VideoFrame] = []
        while self._frames and len(out) < n:
            out.append(self._frames.popleft())
        return out

    def oldest_t(self) -> float | None:
        return self._frames[0].t if self._frames else None

    def __len__(self) -> int:
        return len(self._frames)


class TimedResults(Generic[T]):
    """(media time, result) pairs for the last `keep_s` seconds, in time order."""

    def __init__(self, keep_s: float):
        self.keep_s = keep_s
        self._items: deque[tuple[float, T]] = deque()
        self.latest_t = -1.0  # media time up to which results are complete (analysed or dropped)

    def add(self, t: float, result: T) -> None:
        self._items.append((t, result))
        self.latest_t = max(self.latest_t, t)
        while self._items and self._items[0][0] < self.latest_t - self.keep_s:
            self._items.popleft()

    def between(self, t0: float, t1: float) -> list[T]:
        return [r for t, r in self._items if t0 <= t < t1]

    def __len__(self) -> int:
        return len(self._items)
