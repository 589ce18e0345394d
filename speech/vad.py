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


VAD_CHUNK = 512  # samples per speech probability (Silero at 16 kHz: 32 ms)
VAD_CONTEXT = 64  # samples of the chunk before that Silero reads with each chunk


def speech_spans(probs: np.ndarray, threshold: float, min_silence_s: float, min_speech_s: float = 0.12,
                 neg_threshold: float | None = None) -> list[tuple[int, int]]:
    """(start, end) chunk indices of the speech in a run of Silero probabilities, by faster-whisper's rules
    (vad.get_speech_timestamps without padding or a longest speech): speech starts at a chunk at or above
    `threshold`, ends once the probability stayed below neg_threshold (threshold − 0.15) for min_silence_s, and
    counts when longer than min_speech_s; one still going at the end ends there."""
    neg = max(threshold - 0.15, 0.01) if neg_threshold is None else neg_threshold
    min_silence = min_silence_s * SAMPLE_RATE / VAD_CHUNK
    min_speech = min_speech_s * SAMPLE_RATE / VAD_CHUNK
    spans: list[tuple[int, int]] = []
    start: int | None = None
    silent_from: int | None = None
    for i, p in enumerate(np.asarray(probs, dtype=np.float32).tolist()):
        if p >= threshold:
            silent_from = None
            if start is None:
                start = i
                continue
        if start is not None and p < neg:
            if silent_from is None:
                silent_from = i
            if i - silent_from >= min_silence:
                if silent_from - start > min_speech:
                    spans.append((start, silent_from))
                start = silent_from = None
    if start is not None and len(probs) - start > min_speech:
        spans.append((start, len(probs)))
    return spans


class StreamingSpeech:
    """Silero VAD over a stream's audio as it comes (faster-whisper's model, loaded once): each chunk's speech
    probability computed once, with the model's state carried from chunk to chunk as over a whole file, so a stream
    hears what the whole recording would. Restarted on a few seconds at a time, Silero hears far more speech in music
    (a 5 s buffer: 21 % of a song's chunks at or above 0.5, against 0.1 % over the whole file).

    `self(audio, start)`: the speech regions (media time) within [start, start + len(audio) / 16 kHz), the part of
    `audio` beyond what came before taken in; audio may overlap what came before (it is not read twice) and a gap
    after it restarts the model's state. The last keep_s of probabilities are kept, and regions read from them."""

    def __init__(self, threshold: float, min_silence_s: float, keep_s: float = 30.0) -> None:
        self.threshold, self.min_silence_s = threshold, min_silence_s
        self.keep = int(keep_s * SAMPLE_RATE / VAD_CHUNK)
        self._restart(0.0)
        self.end_t: float | None = None  # media time up to which audio was taken in (probabilities and pending)

    def _restart(self, t: float) -> None:
        self.probs = np.zeros(0, np.float32)
        self.first_t = t  # media time of probs[0]
        self.end_t = t
        self._pending = np.zeros(0, np.float32)  # taken in, short of a whole chunk
        self._context = np.zeros(VAD_CONTEXT, np.float32)
        self._state = (np.zeros((1, 1, 128), np.float32), np.zeros((1, 1, 128), np.float32))

    def _take(self, samples: np.ndarray) -> None:
        from faster_whisper.vad import get_vad_model

        audio = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        whole = len(audio) // VAD_CHUNK * VAD_CHUNK
        self._pending = audio[whole:]
        if not whole:
            return
        chunks = audio[:whole].reshape(-1, VAD_CHUNK)
        contexts = np.concatenate([self._context[None], chunks[:-1, -VAD_CONTEXT:]])
        self._context = chunks[-1, -VAD_CONTEXT:].copy()
        out, h, c = get_vad_model().session.run(None, {"input": np.concatenate([contexts, chunks], axis=1),
                                                       "h": self._state[0], "c": self._state[1]})
        self._state = (h, c)
        self.probs = np.concatenate([self.probs, np.asarray(out, np.float32).reshape(-1)])
        if len(self.probs) > self.keep:
            drop = len(self.probs) - self.keep
            self.probs = self.probs[drop:]
            self.first_t += drop * VAD_CHUNK / SAMPLE_RATE

    def __call__(self, audio: np.ndarray, start: float) -> list[tuple[float, float]]:
        end = start + len(audio) / SAMPLE_RATE
        if self.end_t is None or start > self.end_t + 1e-3:
            self._restart(start)
        assert self.end_t is not None  # set by _restart
        if end > self.end_t:
            self._take(audio[max(0, int(round((self.end_t - start) * SAMPLE_RATE))):])
            self.end_t = end
        step = VAD_CHUNK / SAMPLE_RATE
        regions = [(self.first_t + a * step, self.first_t + b * step)
                   for a, b in speech_spans(self.probs, self.threshold, self.min_silence_s)]
        return [(max(a, start), min(b, end)) for a, b in regions if b > start and a < end]
