"""Who is speaking in one stream: its speech cut into stretches as the audio comes in, each stretch embedded by the
process's voice encoder (models/voices.py, loaded once) and given a stable speaker id by online clustering
(speech/speakers.py). The pipeline runs `VoiceTrack.step` off the event loop each time VOICE_STEP_S of new audio is
in, and asks the track the speaker of each committed word and who spoke inside a window."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from media import SAMPLE_RATE
from speech.speakers import CLOSED_AFTER_S, SpeakerTracker, SpeechChunker, streaming_speech

VOICE_STEP_S = 1.0  # new audio between two steps: a speaker id follows speech within about 2 s (the chunker's pace)
VAD_CONTEXT_S = 2.0  # audio before the chunked point the VAD sees again, so a region that began there is whole
# how far back a step looks at most: the chunker cuts an open region every CHUNK_S + TAIL_S (2 s), so nothing
# older is still waiting; without speech its chunked point stays behind, and the VAD must not go over ever more audio
LOOK_BACK_S = 3.0
MIN_EMBED_S = 0.3  # the chunker never gives less; the encoder needs at least 0.25 s
KEEP_S = 120.0  # stretches older than this are dropped from the lookup (the speakers stay): bounded memory


class VoiceTrack:
    """One stream's voices: the chunker, the tracker, how far the audio has been looked at, the compute it took."""

    def __init__(self, embed: Callable[[np.ndarray], np.ndarray],
                 find_speech: Callable[[np.ndarray, float], list[tuple[float, float]]] | None = None) -> None:
        self.embed = embed
        # (audio, its start) → speech regions: the stream's own VAD, its state carried along the stream
        self.find_speech = find_speech or streaming_speech()
        self.chunker = SpeechChunker()
        self.tracker = SpeakerTracker()
        self.until = 0.0  # audio up to here has been through the VAD and the chunker
        self._settled = 0.0
        self.busy_s = 0.0
        self._lock = threading.Lock()  # the tracker changes in the voice thread while the loop asks it

    def due(self, audio_end: float, eof: bool) -> bool:
        """Whether a step has new audio to look at: VOICE_STEP_S of it, or the rest at the end of the stream."""
        return audio_end - self.until >= VOICE_STEP_S or (eof and audio_end > self.until)

    def look_from(self, until: float) -> float:
        """Where the next step's audio starts: a little before the last chunked point, and never more than
        LOOK_BACK_S + VAD_CONTEXT_S before the audio already looked at."""
        chunked = min(self.chunker.done_until, until)
        return max(0.0, max(chunked, self.until - LOOK_BACK_S) - VAD_CONTEXT_S)

    def step(self, audio: np.ndarray, start: float, until: float, final: bool = False
             ) -> list[tuple[float, float, int | None]]:
        """Look at `audio` (media time `start` to `until`, from look_from): the VAD's speech regions, the new
        stretches embedded and tracked. `final`: the audio ends at `until`, so a region still open there is closed.
        Returns the stretches added, each with the speaker it got as it came (None while pending). Blocking: run it
        off the event loop."""
        started = time.perf_counter()
        added: list[tuple[float, float, int | None]] = []
        if len(audio):
            regions = self.find_speech(audio, start)
            for a, b in self.chunker.push(regions, until + (CLOSED_AFTER_S if final else 0.0)):
                samples = audio[max(0, int(round((a - start) * SAMPLE_RATE))):int(round((b - start) * SAMPLE_RATE))]
                if len(samples) < MIN_EMBED_S * SAMPLE_RATE:
                    continue
                vector = self.embed(samples)
                with self._lock:
                    added.append((a, b, self.tracker.add(a, b, vector)))
        with self._lock:
            self.tracker.forget_before(until - KEEP_S)
            # published once this step's stretches are in the tracker: before, they would read as silence
            self._settled = max(self._settled, min(self.chunker.settled_until, until))
        self.until = max(self.until, until)
        self.busy_s += time.perf_counter() - started
        return added

    def speaker_of(self, start: float, end: float) -> int | None:
        """The speaker whose stretches cover most of [start, end] (a word), None when no speaker covers it yet."""
        with self._lock:
            return self.tracker.speaker_of(start, end)

    def speakers_in(self, t0: float, t1: float) -> dict[int, float]:
        """Seconds of speech of each speaker inside [t0, t1]."""
        with self._lock:
            return self.tracker.speakers_in(t0, t1)

    def segments_in(self, t0: float, t1: float) -> list[tuple[float, float, int]]:
        """(start, end, speaker) of the attributed stretches overlapping [t0, t1)."""
        with self._lock:
            return self.tracker.segments_in(t0, t1)

    @property
    def settled_until(self) -> float:
        """Speech before this media time has been cut into stretches and tracked: a later step adds none before it."""
        with self._lock:
            return self._settled

    def speakers(self) -> list[dict]:
        """Every speaker found so far, in order of appearance: {speaker, seconds} of the speech that built its voice."""
        with self._lock:
            found = sorted(self.tracker.speakers.values(), key=lambda s: s.id)
            return [{"speaker": s.id, "seconds": round(s.seconds, 2)} for s in found]


def follow_recording(track: VoiceTrack, audio: np.ndarray) -> list[tuple[float, float, int | None]]:
    """A whole recording (from media time 0) through the track as the pipeline feeds a stream's audio to it
    (StreamPipeline._find_voices: VOICE_STEP_S of new audio a step, each looking back from look_from, the last one
    final): for measurements and tests. Returns each stretch with the speaker it got as it came; the track's tracker
    holds the final ones."""
    end = len(audio) / SAMPLE_RATE
    stretches: list[tuple[float, float, int | None]] = []
    until = 0.0
    while track.due(end, eof=True):
        until = min(end, until + VOICE_STEP_S)
        start = track.look_from(until)
        stretches += track.step(audio[int(round(start * SAMPLE_RATE)):int(round(until * SAMPLE_RATE))], start, until,
                                final=until >= end)
    return stretches
