"""One bounded Whisper call: an encoder run over the audio and a little padding, one greedy decode with a token
budget, one alignment for word times; and the options of faster-whisper's own transcribe() as WholeFileASR runs it."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from media import SAMPLE_RATE, Word
from speech.words import APPEND_PUNCTUATION, PREPEND_PUNCTUATION

TAIL_SPEECH_S = 0.8  # speech left after a final pass's last word that is decoded again rather than dropped


@dataclass
class Decoded:
    words: list[Word]  # media time
    rejected: str | None = None  # why the whole pass was thrown away, if it was


class WhisperPass:
    """One bounded Whisper call on up to 30 s of audio: encode once, decode greedily once, align once.

    faster-whisper's own transcribe() seeks on after an unfinished last segment and decodes the leftover tail in
    a second window; on a streaming buffer that tail is a fraction of a word and is where tiny.en invents text and
    loops. This pass never seeks.
    """

    def __init__(
        self,
        model,
        language: str = "en",
        beam_size: int = 1,
        compression_ratio_threshold: float = 2.4,
        no_speech_threshold: float = 0.6,
        log_prob_threshold: float = -0.8,
        encoder_window_s: float = 30.0,
    ) -> None:
        from faster_whisper.tokenizer import Tokenizer

        self.model = model
        multilingual = bool(model.model.is_multilingual)
        self.language = language if multilingual else "en"
        self.tokenizer = Tokenizer(
            model.hf_tokenizer, multilingual, task="transcribe", language=language if multilingual else "en"
        )
        self.beam_size = beam_size
        if not 10.0 <= encoder_window_s <= 30.0:
            raise ValueError(f"encoder_window_s must lie between 10 and 30 s, got {encoder_window_s}")
        self.encoder_window_s = encoder_window_s
        self.compression_ratio_threshold = compression_ratio_threshold
        self.no_speech_threshold = no_speech_threshold
        self.log_prob_threshold = log_prob_threshold
        self._suppress = self._suppressed_tokens()
        self._max_length = int(getattr(model, "max_length", 448))

    def _encoder_frames(self, content_frames: int) -> int:
        """Mel frames the encoder sees: the audio plus at least 3 s of padding, rounded up to 5 s, and never
        fewer than encoder_window_s (30 s is Whisper's own, always-padded window). Without padding tiny.en loops;
        a 10-20 s window writes nearly the same text as 30 s at a half to a third of the cost (the idea of
        whisper.cpp's audio_ctx)."""
        full = self.model.feature_extractor.nb_max_frames
        frames_per_s = full / 30
        step = int(5 * frames_per_s)
        wanted = -(-(content_frames + int(3 * frames_per_s)) // step) * step
        return int(min(full, max(int(self.encoder_window_s * frames_per_s), wanted)))

    def _suppressed_tokens(self) -> list[int]:
        from faster_whisper.transcribe import get_suppressed_tokens

        return list(get_suppressed_tokens(self.tokenizer, [-1]))

    def __call__(self, audio: np.ndarray, t0: float, prompt: str = "") -> Decoded:
        from faster_whisper.audio import pad_or_trim

        model, tok = self.model, self.tokenizer
        duration = len(audio) / SAMPLE_RATE
        features = model.feature_extractor(audio)
        content_frames = max(1, features.shape[-1] - 1)
        encoder_output = model.encode(pad_or_trim(features[:, :content_frames], self._encoder_frames(content_frames)))

        prompt_tokens = tok.encode(" " + prompt.strip())[-(self._max_length // 2 - 1) :] if prompt.strip() else []
        prompt_ids = model.get_prompt(tok, prompt_tokens, without_timestamps=False)
        # About 3 words a second at most, a few tokens each, plus timestamps: a loop cannot run away.
        max_new_tokens = min(int(12 + 10 * duration), self._max_length - len(prompt_ids) - 1)
        result = model.model.generate(
            encoder_output,
            [prompt_ids],
            beam_size=self.beam_size,
            max_length=len(prompt_ids) + max_new_tokens,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
            max_initial_timestamp_index=50,
        )[0]
        tokens = result.sequences_ids[0]
        text_tokens = [t for t in tokens if t < tok.eot]
        text = tok.decode(text_tokens).strip()
        if not text:
            return Decoded([])
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        ratio = len(text.encode()) / len(zlib.compress(text.encode()))
        if ratio > self.compression_ratio_threshold:
            return Decoded([], f"repetitive (compression ratio {ratio:.2f})")
        # Whisper's own rule (no_speech > 0.6 and logprob < -1) lets through the "Thank you." that tiny.en writes
        # on music at no_speech 0.9, logprob -0.9; speech measured here stays under no_speech 0.6.
        if result.no_speech_prob > self.no_speech_threshold and (
            avg_logprob < self.log_prob_threshold or result.no_speech_prob > 0.8
        ):
            return Decoded([], f"no speech (p={result.no_speech_prob:.2f}, logprob {avg_logprob:.2f})")
        if len(tokens) >= max_new_tokens - 1:
            return Decoded([], "token budget exhausted")

        segment: dict[str, Any] = {"seek": 0, "start": 0.0, "end": duration, "tokens": text_tokens}
        model.add_word_timestamps(
            [[segment]], tok, encoder_output, content_frames, PREPEND_PUNCTUATION, APPEND_PUNCTUATION, 0.0
        )
        words = [
            Word(t0 + float(w["start"]), t0 + float(w["end"]), w["word"], float(w["probability"]), self.language)
            for w in segment.get("words", [])
        ]
        return Decoded(words)


def transcribe_options(language: str = "en", beam_size: int = 1) -> dict:
    """faster-whisper's transcribe() as WholeFileASR runs it (and benchmarks/run.py times it alone): its VAD filter
    and its defaults otherwise, with word timestamps."""
    return {"language": language, "beam_size": beam_size, "vad_filter": True, "word_timestamps": True}
