"""What the pipeline asks of speech recognition: a `Transcriber` takes a stream's audio as it arrives and returns,
pass by pass, the words it commits (each once, in time order), its current unconfirmed guess and how far it has
heard and settled (`AsrUpdate`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from media import Word
from speech.language import SpokenLanguage


@dataclass
class AsrUpdate:
    committed: list[Word]  # newly committed by this pass; each word is emitted exactly once, in time order
    pending: list[Word]  # the current unconfirmed hypothesis after everything committed
    processed_until: float  # media time up to which audio has been transcribed
    compute_s: float = 0.0  # wall-clock seconds the pass took
    final_until: float | None = None  # media time before which the transcript will not change any more
    language: SpokenLanguage | None = None  # the stream's language after this pass (None: not followed)


class Transcriber(Protocol):
    """One stream's speech recognition. Streaming (`whole_file` false, speech.IncrementalASR): the pipeline inserts
    audio as it arrives and runs `process()` once `pending_audio_s` reaches `step_s` (which may change after a pass:
    a language on a slower model takes longer steps), then `finish()` at the end of the media. Whole file
    (`whole_file` true, speech.WholeFileASR): the audio was read up front; `process()` gives one more segment until
    `done`."""

    whole_file: bool
    done: bool
    step_s: float

    @property
    def pending_audio_s(self) -> float: ...

    def insert_audio(self, samples: np.ndarray, t: float) -> None: ...

    def process(self) -> AsrUpdate: ...

    def finish(self) -> AsrUpdate: ...
