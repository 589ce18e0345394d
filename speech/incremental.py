"""Incremental speech recognition: faster-whisper on a short rolling buffer, committed by local agreement.

Each pass transcribes the uncommitted audio (a few seconds, 10 s at most) in ONE bounded Whisper call: one encoder
run on a window shortened to the audio plus padding (20 s by default instead of 30 s), one greedy decode at
temperature 0 with a token budget, one alignment for word times. Silero VAD decides which audio holds speech, so
silence and instrumental music are never sent to Whisper. A word is committed when two consecutive passes agree
on it (LocalAgreement-2), or at once when a pause of pause_s follows it, so the words just before a pause are
neither held back nor dropped. The buffer is cut after the committed words (in a silence when there is one; live
passes keep the last 3 s of committed speech before the cut as context), so no pass re-transcribes a growing
buffer.

Committed text is not fed back as Whisper's prompt by default: measured on endgame_nagg_nell.flac, tiny.en with
the prompt skipped a repeated line ("Do you hear me? Yes.") whose text was already in the prompt.

`vidsent analyze --fast` has the whole file at hand and uses WholeFileASR instead: faster-whisper's own transcribe()
over the file, which reads no audio twice.

Only media time goes in and out; this module knows nothing of websockets, windows or sentiment."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from media import SAMPLE_RATE, Word
from speech.agreement import agreed_prefix_length, repeated_tail_length
from speech.language import LanguageTracker
from speech.transcriber import AsrUpdate
from speech.vad import Speech, detect_speech, quietest_sample
from speech.whisper_pass import TAIL_SPEECH_S, Decoded, WhisperPass
from speech.words import NON_LEXICAL, in_time_order, normalise_word

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PassPacing:
    """How often a live pass runs and on how much audio, for one Whisper model: new audio per pass, the encoder
    window, and the committed speech kept before the new words."""

    step_s: float
    encoder_window_s: float
    left_context_s: float


@dataclass
class _Queue:
    pieces: deque = field(default_factory=deque)  # (t, samples) as inserted
    samples: int = 0


class IncrementalASR:
    """Streaming transcription of one audio stream with stable word commits.

    insert_audio() is cheap and may be called from the event loop while process() runs in a worker thread;
    process() and finish() are serialised. Committed words are final and come out exactly once.
    """

    whole_file = False
    done = False  # a stream's passes go on as long as audio comes; finish() closes it

    def __init__(
        self,
        model,
        step_s: float = 1.0,
        language: str = "en",
        beam_size: int = 1,
        pause_s: float = 0.6,
        max_buffer_s: float | None = None,
        max_gap_fill_s: float = 2.0,
        vad_threshold: float = 0.5,
        prompt_chars: int = 200,
        use_prompt: bool = False,
        encoder_window_s: float | None = None,
        catch_up: bool = True,
        agree_after_s: float = 1.0,
        left_context_s: float | None = None,
        languages: LanguageTracker | None = None,
        model_for: Callable[[str], Any] | None = None,
        pacing_for: Callable[[str], PassPacing | None] | None = None,
    ) -> None:
        if step_s <= 0:
            raise ValueError(f"step_s must be positive, got {step_s}")
        # Steps of up to 10 s (live, and files replayed in 5-10 s passes): a 10 s buffer and a 20 s encoder
        # window. Longer steps (`analyze --fast`: 20 s) need the buffer to hold a step and what is left over, and
        # a full 30 s window: fewer passes, each a Whisper window as faster-whisper's own transcribe() runs it.
        if max_buffer_s is None:
            max_buffer_s = 10.0 if step_s <= 10 else min(25.0, step_s + 5.0)
        if encoder_window_s is None:
            encoder_window_s = 20.0 if step_s <= 10 else 30.0
        if max_buffer_s < 4 * pause_s or max_buffer_s > 25:
            raise ValueError(f"max_buffer_s must lie between {4 * pause_s:.1f} and 25 s, got {max_buffer_s}")
        # Live, a pass that fell behind takes up to twice the step to catch up. A file replayed as fast as possible
        # (catch_up=False) takes exactly one step per pass: the same passes, so the same transcript, every run.
        self.catch_up = catch_up
        # A word is settled when this pass and one whose audio ended at least agree_after_s earlier hear it alike.
        # Two passes on nearly the same audio (half a second apart) tend to agree on the same mishearing.
        self.agree_after_s = agree_after_s
        # Live passes (short steps) keep this much committed speech at the buffer's start, so Whisper hears each
        # new word after the words before it: without it tiny.en heard "We were all going" in two_cities as
        # "We're all going" in one pass out of two (3 s: WER 3.4 -> 0 %, endgame 16 -> 8 % against base offline,
        # for about 20 % more compute per pass). Passes of 5 s and more hold enough speech of their own.
        if left_context_s is None:
            left_context_s = 3.0 if step_s <= 2 else 0.0
        if left_context_s < 0:
            raise ValueError(f"left_context_s must not be negative, got {left_context_s}")
        self.pause_s = pause_s
        self.max_buffer_s = max_buffer_s
        self.soft_buffer_s = 0.6 * max_buffer_s
        self.max_gap_fill_s = max_gap_fill_s
        self.vad_threshold = vad_threshold
        self.prompt_chars = prompt_chars
        self.use_prompt = use_prompt
        # Language: fixed (`language`), or followed by a LanguageTracker, each language's passes on the model that
        # model_for(language) gives (tiny.en for English, the multilingual base for the rest), paced as
        # pacing_for(language) says (None: as the arguments above say).
        self.languages = languages
        self._model_for = model_for or (lambda _language: model)
        self._pacing_for = pacing_for or (lambda _language: None)
        self._given_pacing = PassPacing(step_s, encoder_window_s, left_context_s)
        self._beam_size = beam_size
        self._whispers: dict[str, WhisperPass] = {}
        self._use_language(language)

        self._queue_lock = threading.Lock()
        self._queue = _Queue()
        self._next_t: float | None = None  # media time just after the last inserted sample

        self._pass_lock = threading.Lock()
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_t0: float | None = None
        self._committed: list[Word] = []
        self._committed_until = float("-inf")
        self._pending: list[Word] = []
        self._earlier: deque[tuple[float, list[Word]]] = deque(maxlen=8)  # (audio end, pending) of recent passes

    def _use_language(self, language: str) -> None:
        """Transcribe from now on in `language`, on its model and at its pace."""
        pacing = self._pacing_for(language) or self._given_pacing
        self.language = language
        self.step_s, self.left_context_s = pacing.step_s, pacing.left_context_s
        if language not in self._whispers:
            self._whispers[language] = WhisperPass(self._model_for(language), language=language,
                                                   beam_size=self._beam_size,
                                                   encoder_window_s=pacing.encoder_window_s)
        self._whisper = self._whispers[language]

    def _follow_language(self, speech: Speech, final: bool, paused: bool) -> str | None:
        """Show the tracker this pass's speech, let it identify the language when due and switch the passes to
        it; returns why this pass must not transcribe (language not known yet, or speech outside the allowed set)."""
        tracker = self.languages
        assert tracker is not None and self._buffer_t0 is not None
        tracker.hear(self._buffer, self._buffer_t0, speech.regions)
        # before a pause (or the end) the speech so far is all there will be for a while: decide on it rather than
        # let the cut after the pause drop it untranscribed
        tracker.check(force=(final or paused) and not tracker.decided)
        state = tracker.state
        if state.language is not None and state.language != self.language:
            log.info("language %s -> %s (p=%.2f) at %.1f s", self.language, state.language, state.p or 0, state.since)
            self._use_language(state.language)
            self._earlier.clear()  # hypotheses in the other language agree with nothing that follows
        if state.outside is not None:
            return state.outside_reason
        if tracker.wait_for_speech(final or paused):
            return "language not identified yet"
        return None

    # ---- called from the event loop -------------------------------------------------------------------------
    def insert_audio(self, samples: np.ndarray, t: float) -> None:
        """Queue contiguous 16 kHz mono float audio whose first sample is at media time t."""
        samples = np.asarray(samples)
        if samples.ndim != 1:
            raise ValueError(f"audio must be mono (1-D), got shape {samples.shape}")
        if not np.issubdtype(samples.dtype, np.floating):
            raise ValueError(f"audio must be float in [-1, 1], got dtype {samples.dtype}")
        if not np.isfinite(t):
            raise ValueError(f"media time must be finite, got {t}")
        if samples.size == 0:
            return
        samples = np.nan_to_num(samples.astype(np.float32, copy=True), nan=0.0, posinf=0.0, neginf=0.0)
        with self._queue_lock:
            self._queue.pieces.append((float(t), samples))
            self._queue.samples += samples.size
            self._next_t = float(t) + samples.size / SAMPLE_RATE

    @property
    def pending_audio_s(self) -> float:
        with self._queue_lock:
            return self._queue.samples / SAMPLE_RATE

    @property
    def buffered_s(self) -> float:
        """Seconds of audio held in the rolling buffer (bounded by max_buffer_s plus one step)."""
        return len(self._buffer) / SAMPLE_RATE

    # ---- called from one worker thread ------------------------------------------------------------------------
    def process(self) -> AsrUpdate:
        """One pass over the buffered audio plus what arrived since the last pass."""
        started = time.perf_counter()
        with self._pass_lock:
            committed: list[Word] = []
            self._take_queued(self._take_limit_s(), committed)
            if len(self._buffer):
                committed += self._pass(final=False)
            return self._update(committed, started)

    def finish(self) -> AsrUpdate:
        """End of stream: transcribe everything still queued or buffered and commit all of it."""
        started = time.perf_counter()
        with self._pass_lock:
            committed: list[Word] = []
            while self._queued_s() > 0:
                self._take_queued(self._take_limit_s(), committed)
                if self._queued_s() > 0:
                    committed += self._pass(final=False)
            if len(self._buffer):
                committed += self._pass(final=True)
            self._reset_buffer()
            return self._update(committed, started)

    # ---- internals ------------------------------------------------------------------------------------------
    def _update(self, committed: list[Word], started: float) -> AsrUpdate:
        return AsrUpdate(
            committed=committed,
            pending=list(self._pending),
            language=self.languages.state if self.languages is not None else None,
            processed_until=self._buffer_end() if self._buffer_t0 is not None else (self._next_t or 0.0),
            compute_s=time.perf_counter() - started,
            # audio before the buffer is never heard again: its words are committed or gone
            final_until=self._buffer_t0 if self._buffer_t0 is not None else (self._next_t or 0.0),
        )

    def _queued_s(self) -> float:
        with self._queue_lock:
            return self._queue.samples / SAMPLE_RATE

    def _take_limit_s(self) -> float:
        # Catch up at up to twice the step when behind (live), but never grow the buffer past its cap.
        room = self.max_buffer_s - len(self._buffer) / SAMPLE_RATE
        return max(min(2 * max(self.step_s, 1.0) if self.catch_up else self.step_s, room), 0.5)

    def _buffer_end(self) -> float:
        assert self._buffer_t0 is not None
        return self._buffer_t0 + len(self._buffer) / SAMPLE_RATE

    def _reset_buffer(self) -> None:
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_t0 = None
        self._pending = []
        self._earlier.clear()

    def _take_queued(self, limit_s: float, committed: list[Word]) -> None:
        """Move up to limit_s of queued audio into the buffer, bridging small gaps with silence."""
        limit = int(limit_s * SAMPLE_RATE)
        taken: list[tuple[float, np.ndarray]] = []
        with self._queue_lock:
            while self._queue.pieces and limit > 0:
                t, samples = self._queue.pieces.popleft()
                if samples.size > limit:
                    self._queue.pieces.appendleft((t + limit / SAMPLE_RATE, samples[limit:]))
                    samples = samples[:limit]
                self._queue.samples -= samples.size
                limit -= samples.size
                taken.append((t, samples))
        for t, samples in taken:
            if self._buffer_t0 is None:
                self._buffer_t0 = t
                self._buffer = samples
                continue
            gap = t - self._buffer_end()
            if gap < -1.0 / SAMPLE_RATE:  # overlaps what we have: keep only the new part
                samples = samples[int(round(-gap * SAMPLE_RATE)) :]
                if samples.size == 0:
                    continue
                gap = 0.0
            if gap > self.max_gap_fill_s:  # a discontinuity: finish what we have, start afresh
                log.info("audio gap of %.1f s at %.2f: flushing the buffer", gap, t)
                committed += self._pass(final=True)
                self._buffer_t0, self._buffer, self._pending = t, samples, []
                continue
            silence = np.zeros(max(0, int(round(gap * SAMPLE_RATE))), dtype=np.float32)
            self._buffer = np.concatenate([self._buffer, silence, samples])

    def _prompt(self) -> str:
        """Committed text that precedes the buffer (what is inside the buffer is about to be heard again)."""
        if not self.use_prompt or self._buffer_t0 is None:
            return ""
        before = [w for w in self._committed[-60:] if w.end <= self._buffer_t0 + 0.05]
        return "".join(w.text for w in before)[-self.prompt_chars :]

    def _pass(self, final: bool) -> list[Word]:
        """Transcribe the buffer, commit what is settled, cut the buffer after it; returns the new commits."""
        t0, end = self._buffer_t0, self._buffer_end()
        assert t0 is not None
        speech = detect_speech(self._buffer, t0, min_silence_s=0.15, threshold=self.vad_threshold)
        paused = speech.any and speech.trailing_silence >= self.pause_s
        hypothesis: list[Word] = []
        rejected: str | None = None
        held = self._follow_language(speech, final, paused) if self.languages is not None and speech.any else None
        if held:
            rejected = held
        elif speech.any:
            # Start just before the first speech and stop shortly after the last: Whisper is asked only about
            # audio that holds speech, so silence cannot turn into words.
            start = max(t0, speech.regions[0][0] - 0.3)
            stop = min(end, speech.regions[-1][1] + 0.4) if paused or final else end
            audio = self._buffer[int(round((start - t0) * SAMPLE_RATE)) : int(round((stop - t0) * SAMPLE_RATE))]
            if final and stop - speech.regions[-1][1] < 0.5:
                # The stream stopped mid-word or right after one: Whisper often drops a last word it hears with
                # no silence after it.
                audio = np.concatenate([audio, np.zeros(int(0.5 * SAMPLE_RATE), dtype=np.float32)])
            decoded = self._whisper(audio, start, self._prompt())
            if final or paused:
                # this pass commits all it hears and drops the buffer: speech after where Whisper stopped would be lost
                self._hear_the_rest(decoded, audio, start, speech)
            decoded.words = [
                Word(w.start, min(w.end, stop), w.text, w.probability, w.language)
                for w in decoded.words
                if w.start < stop
            ]
            rejected = decoded.rejected
            hypothesis = self._new_words(self._lexical(decoded.words, speech))
            if rejected:
                log.debug("pass at %.2f rejected: %s", end, rejected)

        previous = self._pending
        if final or paused:
            to_commit = hypothesis
            if rejected and not hypothesis:
                to_commit = [w for w in previous if speech.overlaps(w.start, w.end, 0.1)]
        else:
            # Agreement of two passes, or a pause inside the buffer: the speech before it is finished, so what
            # this pass heard of it is as good as it will get.
            settled = agreed_prefix_length(self._reference(end), hypothesis)
            if (pause := speech.last_pause(self.pause_s)) is not None:
                before = pause + 0.2
                settled = max(settled, sum(1 for _ in itertools.takewhile(lambda w: w.end <= before, hypothesis)))
            to_commit = hypothesis[:settled]
        new = self._commit(to_commit)
        self._pending = [] if (final or paused) else hypothesis[len(to_commit) :]
        self._remember(end, to_commit, final or paused)
        # Where uncommitted speech may begin: the earlier of what this pass and the previous one put after the
        # committed words (one pass alone sometimes skips a word, and must not get it cut away).
        following = [w.start for w in (self._pending[:1] + previous[len(to_commit) : len(to_commit) + 1])]
        return new + self._cut_buffer(speech, paused, min(following, default=end))

    def _reference(self, end: float) -> list[Word]:
        """The pending words of the latest pass whose audio ended at least agree_after_s before `end`."""
        for until, pending in reversed(self._earlier):
            if until <= end - self.agree_after_s + 0.05:
                return pending
        return []

    def _remember(self, end: float, committed: list[Word], flushed: bool) -> None:
        """Keep this pass's pending words for the passes that follow."""
        if flushed:
            self._earlier.clear()
            return
        self._forget_committed(committed)
        self._earlier.append((end, list(self._pending)))

    def _forget_committed(self, committed: list[Word]) -> None:
        """Earlier passes lose the words just committed, or are forgotten when they heard those words differently
        (they could agree with nothing that follows)."""
        said = [normalise_word(w.text) for w in committed]
        kept = [(until, pending[len(said) :]) for until, pending in self._earlier
                if [normalise_word(w.text) for w in pending[: len(said)]] == said]
        self._earlier.clear()
        self._earlier.extend(kept)

    def _hear_the_rest(self, decoded: Decoded, audio: np.ndarray, start: float, speech: Speech,
                       passes: int = 2) -> None:
        """Whisper's one decode sometimes ends early, at a segment end, with seconds of speech still to come (seen on
        vna_original_2: "... I was loudly" and then end of text, though "exclaiming why at the end of the film"
        followed). Decode again from the last word heard while the VAD still finds at least TAIL_SPEECH_S of
        speech after it; the extra words are appended to `decoded`."""
        for _ in range(passes):
            if decoded.rejected:
                return
            heard_until = decoded.words[-1].end if decoded.words else start
            left = sum(max(0.0, b - max(a, heard_until)) for a, b in speech.regions)
            if left < TAIL_SPEECH_S:
                return
            at = int(round((heard_until - start) * SAMPLE_RATE))
            rest = self._whisper(audio[at:], heard_until)
            more = [w for w in rest.words if w.start >= heard_until - 0.05]
            if rest.rejected or not more:
                return
            decoded.words = decoded.words + more

    @staticmethod
    def _lexical(words: list[Word], speech: Speech) -> list[Word]:
        """Drop non-lexical tokens ("[Music]", "♪") and words that lie wholly in silence."""
        return [
            w
            for w in words
            if normalise_word(w.text) and not NON_LEXICAL.match(w.text) and speech.overlaps(w.start, w.end, 0.1)
        ]

    def _new_words(self, words: list[Word]) -> list[Word]:
        """The hypothesis minus words the buffer still holds but that are already committed."""
        assert self._buffer_t0 is not None
        inside = [w for w in self._committed if w.end > self._buffer_t0 + 0.05]
        if inside and [normalise_word(w.text) for w in words[: len(inside)]] == [
            normalise_word(w.text) for w in inside
        ]:
            return words[len(inside) :]
        # The pass heard the committed part differently: fall back on time, then on a repeated tail.
        kept = [w for w in words if 0.5 * (w.start + w.end) > self._committed_until]
        if kept and kept[0].start < self._committed_until + 1.0:
            del kept[: repeated_tail_length(self._committed, kept)]
        return kept

    def _commit(self, words: list[Word]) -> list[Word]:
        out = in_time_order(words, self._committed_until)
        if out:
            self._committed += out
            self._committed = self._committed[-200:]
            self._committed_until = out[-1].end
        return out

    def _cut_point(self, speech: Speech, paused: bool, next_start: float) -> float:
        """Where the buffer may start from now on: after committed speech, before any uncommitted speech."""
        assert self._buffer_t0 is not None
        t0, end = self._buffer_t0, self._buffer_end()
        if not speech.any or paused:
            return end - 0.3  # keep a little, in case speech is starting right at the end
        committed_until = self._committed_until
        if committed_until <= t0:
            return t0
        # Best: a silence between the committed words and the next ones, so no word is clipped.
        gaps = [(a[1], b[0]) for a, b in zip(speech.regions, speech.regions[1:])]
        for gap_start, gap_end in reversed(gaps):
            if committed_until >= gap_start - 0.2 and next_start >= gap_start - 0.1:
                return max(t0, 0.5 * (gap_start + gap_end), gap_end - 0.25)
        # No clean silence: once the buffer grows long, cut anyway at the quietest boundary between committed
        # words (a pause too short for the VAD). Aligned word times are off by a tenth of a second or two, so the
        # cut goes to the energy minimum near a boundary rather than to the boundary itself.
        if end - t0 > self.soft_buffer_s:
            return self._quietest_boundary(min(committed_until, next_start))
        return t0

    def _quietest_boundary(self, last_boundary: float) -> float:
        assert self._buffer_t0 is not None
        t0 = self._buffer_t0
        inside = [w for w in self._committed if w.start >= t0 - 0.05]
        boundaries = [0.5 * (a.end + b.start) for a, b in zip(inside, inside[1:])] + [last_boundary]
        best: tuple[float, float] | None = None
        for b in boundaries:
            if b - t0 < 1.0 or b > last_boundary:
                continue
            point, energy = self._quietest_point(b - 0.12, b + 0.12)
            if best is None or energy <= best[1]:
                best = (point, energy)
        return best[0] if best else t0

    def _quietest_point(self, lo: float, hi: float) -> tuple[float, float]:
        """The centre of the quietest 20 ms in [lo, hi] (media time) and its energy."""
        assert self._buffer_t0 is not None
        t0 = self._buffer_t0
        frame = int(0.02 * SAMPLE_RATE)
        sample, energy = quietest_sample(self._buffer, int((lo - t0) * SAMPLE_RATE),
                                         int((hi - t0) * SAMPLE_RATE) + frame)
        if energy == float("inf"):
            return max(t0, lo), energy
        return t0 + sample / SAMPLE_RATE, energy

    def _cut_buffer(self, speech: Speech, paused: bool, next_start: float) -> list[Word]:
        """Drop audio before the cut point; returns words committed by force at the hard cap."""
        assert self._buffer_t0 is not None
        t0, end = self._buffer_t0, self._buffer_end()
        cut = self._cut_point(speech, paused, next_start)
        if self.left_context_s and speech.any and not paused:
            cut = max(t0, min(cut, self._committed_until - self.left_context_s))
        forced: list[Word] = []
        if end - cut > self.max_buffer_s:
            # Passes keep disagreeing (or keep being rejected): commit the older half so the buffer stays bounded.
            limit = end - self.max_buffer_s / 2
            older = list(itertools.takewhile(lambda w: w.end <= limit, self._pending))
            self._pending = self._pending[len(older) :]
            forced = self._commit(older)
            self._forget_committed(older)
            cut = max(cut, limit)
        if cut > t0:
            drop = min(len(self._buffer), int(round((cut - t0) * SAMPLE_RATE)))
            self._buffer = self._buffer[drop:]
            self._buffer_t0 = t0 + drop / SAMPLE_RATE
        return forced
