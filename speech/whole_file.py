"""A file's speech transcribed whole, the way faster-whisper's own transcribe() does it (vidsent analyze --fast)."""

from __future__ import annotations

import time
from collections import deque

import numpy as np

from media import SAMPLE_RATE, Word
from speech.language import LanguageTracker, SpokenLanguage
from speech.transcriber import AsrUpdate
from speech.vad import detect_speech, quietest_sample
from speech.whisper_pass import transcribe_options
from speech.words import NON_LEXICAL, in_time_order, normalise_word


class WholeFileASR:
    """A file's speech transcribed the way faster-whisper's own transcribe() does it, for `analyze --fast`: the
    Silero VAD's speech packed into full 30 s Whisper windows, each decoded once, the next window starting where
    the last finished segment ended. No pass re-reads audio, so this costs what faster-whisper alone costs (the
    streaming passes of IncrementalASR re-read the unsettled tail of every pass and encode a window per pass).

    The whole file's audio is decoded up front (the constructor raises what PyAV raises on a file it cannot
    decode) and transcribed in pieces of at most piece_s, cut at the quietest moment before each piece's end, so
    one transcribe() never holds the spectrogram of an hour. process() returns the words of one more segment: the
    transcript before its end is final, as it is with faster-whisper, which never revisits a segment."""

    whole_file = True
    pending_audio_s = 0.0  # nothing waits in a queue: the audio came from the file, not from insert_audio

    def __init__(self, model, path, language: str = "en", beam_size: int = 1, piece_s: float = 600.0,
                 languages: LanguageTracker | None = None, model_for=None) -> None:
        from faster_whisper.audio import decode_audio

        self.model = model
        self.audio = decode_audio(str(path), sampling_rate=SAMPLE_RATE)
        self.duration = len(self.audio) / SAMPLE_RATE
        # one language per file, identified on its first minute of speech (the live passes follow switches)
        self.language_state: SpokenLanguage | None = None
        if languages is not None:
            self.language_state = identify_file_language(languages, self.audio)
            if self.language_state.language is not None:
                language = self.language_state.language
                self.model = model_for(language) if model_for is not None else model
        self.language = language
        self.options = transcribe_options(language, beam_size)
        self.step_s = piece_s
        self.done = self.language_state is not None and self.language_state.outside is not None
        self.pieces = self._pieces_of(piece_s)  # sample ranges, each transcribed by one transcribe()
        self._todo = deque(self.pieces)
        self._segments = None
        self._piece_t0 = 0.0
        self._committed_until = float("-inf")

    def _pieces_of(self, piece_s: float) -> list[tuple[int, int]]:
        """Sample ranges of at most piece_s each; a cut goes to the quietest 20 ms of the 30 s before it."""
        pieces, start, n = [], 0, len(self.audio)
        longest, search = int(piece_s * SAMPLE_RATE), int(min(30.0, piece_s / 4) * SAMPLE_RATE)
        while n - start > longest:
            cut, _ = quietest_sample(self.audio, start + longest - search, start + longest)
            pieces.append((start, cut))
            start = cut
        if n > start:
            pieces.append((start, n))
        return pieces

    def insert_audio(self, samples: np.ndarray, t: float) -> None:
        """The stream's own audio is not needed: the file's was decoded whole."""

    def _next_segment(self):
        while True:
            if self._segments is not None:
                segment = next(self._segments, None)
                if segment is not None:
                    return segment
                self._segments = None
            if not self._todo:
                return None
            a, b = self._todo.popleft()
            self._piece_t0 = a / SAMPLE_RATE
            self._segments, _ = self.model.transcribe(self.audio[a:b], **self.options)

    def process(self) -> AsrUpdate:
        """The words of the next segment (or, once all are out, an update that says the transcript is final)."""
        started = time.perf_counter()
        segment = None if self.done else self._next_segment()
        if segment is None:
            self.done = True
            self.audio = np.zeros(0, dtype=np.float32)
            return AsrUpdate([], [], self.duration, time.perf_counter() - started, final_until=float("inf"),
                             language=self.language_state)
        heard = [Word(self._piece_t0 + w.start, self._piece_t0 + w.end, w.word, float(w.probability), self.language)
                 for w in segment.words or [] if normalise_word(w.word) and not NON_LEXICAL.match(w.word)]
        words = in_time_order(heard, self._committed_until)
        if words:
            self._committed_until = words[-1].end
        until = float(min(self.duration, self._piece_t0 + segment.end))
        return AsrUpdate(words, [], until, time.perf_counter() - started, final_until=until,
                         language=self.language_state)

    def finish(self) -> AsrUpdate:
        """The words of every segment not yet returned, at once, final to the end."""
        started = time.perf_counter()
        words: list[Word] = []
        while not self.done:
            words += self.process().committed
        return AsrUpdate(words, [], self.duration, time.perf_counter() - started, final_until=float("inf"),
                         language=self.language_state)


def identify_file_language(tracker: LanguageTracker, audio: np.ndarray, search_s: float = 120.0) -> SpokenLanguage:
    """A file's language from the speech in its first search_s: the tracker hears it in 30 s pieces until it has
    decided (or the speech runs out, when it decides on what there was)."""
    piece = 30 * SAMPLE_RATE
    for start in range(0, min(len(audio), int(search_s * SAMPLE_RATE)), piece):
        chunk = audio[start:start + piece]
        speech = detect_speech(chunk, start / SAMPLE_RATE, min_silence_s=0.15, threshold=0.5)
        tracker.hear(chunk, start / SAMPLE_RATE, speech.regions)
        tracker.check()
        if tracker.decided and tracker.state.outside is None:
            return tracker.state
    tracker.check(force=True)
    return tracker.state
