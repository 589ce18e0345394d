"""How one stream's pipeline runs: window and hop, frame sampling, speech-recognition pacing, and the batching and
back-pressure constants behind them."""

from __future__ import annotations

from dataclasses import dataclass

from speech.language import LanguageChoice
from stream.windows import WindowSchedule

FRAME_BATCH = 4
# windows of a file replayed as fast as possible that are scored in one batch when they are ready together
REPLAY_WINDOW_BATCH = 4
# windows after the next one whose audio and visual may be scored while they wait for their words
MEDIA_SCORES_AHEAD = 32
# this much video without a single audio sample: the audio track is empty (a file's track without packets)
EMPTY_AUDIO_AFTER_S = 10.0


@dataclass
class PipelineConfig:
    window_s: float = 4.0
    hop_s: float = 2.0
    sample_fps: float = 2.0  # frames sampled per second of media for the visual scorer
    # frames a second read for mouths with voices tracked (engine/people.py; 0 or <= sample_fps: only key frames;
    # benchmarks/active_speaker.py: 22/24 turns bound right at 8)
    mouth_fps: float = 8.0
    half_life_s: float = 6.0  # of the rolling EMA, in media seconds
    asr_step_s: float = 0.75  # new audio per ASR pass at real-time pace (words still settle on passes 1 s apart)
    asr_fast_step_s: float = 5.0  # new audio per ASR pass when a file is replayed as fast as possible
    # a file replayed as fast as possible is transcribed whole, as faster-whisper's transcribe() does (analyze --fast)
    asr_whole_file: bool = False
    asr_grace_s: float = 1.0  # how long a real-time window waits for ASR to reach its end
    frame_backlog: int = 8  # sampled frames that may wait for the visual scorer before the oldest are dropped
    status_every_s: float = 2.0
    language: str = "auto"  # the languages speech may be in: auto, a code (es) or codes (en,es); see speech.language

    @property
    def languages(self) -> LanguageChoice:
        return LanguageChoice.parse(self.language)

    def __post_init__(self):
        WindowSchedule(self.window_s, self.hop_s)  # validates window and hop
        if self.sample_fps <= 0:
            raise ValueError("sample fps must be positive")
        if self.mouth_fps < 0 or self.mouth_fps > 30:
            raise ValueError("mouth fps must lie in 0..30")
        self.language = str(self.languages)  # validates it, in its normal form


