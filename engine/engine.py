"""The models of one process, loaded once and shared by every stream, and the workers that run them off the
event loop (engine/workers.py): Whisper passes in fair turn across streams, and one scoring thread that scores the
windows and frames of all streams in batches."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from engine.workers import (
    FairScheduler,
    ScoreBatcher,
    lower_thread_priority,
    native_thread_ids,
)
from models.base import MODALITIES
from models.runtime import configure_runtime, runtime_plan
from models.scoring import Scorers, build_scorers
from speech import PassPacing, Transcriber
from speech.language import LanguageChoice
from stream.windows import Window


class Engine:
    """The models of one process, loaded once and shared by all streams, and the workers that run them
    (workers.py): a fair scheduler of Whisper passes across streams and one scoring thread that batches the
    windows and frames of all streams.

    A plain container: `scorers` (a models.scoring.Scorers: the in-process ScorerSet, or engine.ray_scorers'
    client), `transcriber` ((step_s, realtime, languages) → a speech.Transcriber that transcribes in streaming
    passes) and `whole_file_transcriber` ((path, languages) → a speech.Transcriber over a whole file, for files
    replayed as fast as possible with PipelineConfig.asr_whole_file; None: never). Without them it builds the real
    ones from the options; tests pass fakes and run pipelines without any model."""

    def __init__(self, *, asr: str = "tiny.en", device: str = "auto", heads_dir: str | Path | None = None,
                 fusion: str = "weighted", scorers: Scorers | None = None,
                 transcriber: Callable[[float, bool, LanguageChoice], Transcriber] | None = None,
                 batch_wait_s: float = 0.005, text_evidence: bool = True,
                 whole_file_transcriber: Callable[[Path, LanguageChoice], Transcriber] | None = None,
                 voice_embed: Callable[[np.ndarray], np.ndarray] | None = None, speakers: bool = True,
                 read_mouth: Callable | None = None):

        self._scorer_runtime_threads: set[int] = set()
        if scorers is None or transcriber is None:
            self.device = configure_runtime(device)
            if transcriber is None:  # first, so that Whisper's own threads are not counted as the scorers'
                whisper = WhisperTranscribers(asr, self.device)
                transcriber, whole_file_transcriber = whisper.streaming, whisper.whole_file
            if voice_embed is None and speakers:
                from models.voices import load_voice_encoder

                voice_embed = load_voice_encoder(self.device).embed
            if read_mouth is None and speakers:
                from models.mouth import mouth_reader

                read_mouth = mouth_reader().read
            if scorers is None:
                before = native_thread_ids()
                scorers = build_scorers(self.device, Path(heads_dir) if heads_dir else None, fusion, text_evidence)
                self._scorer_runtime_threads = native_thread_ids() - before
        else:
            self.device = device
        self.plan = runtime_plan()
        self.scorers = scorers
        self.transcriber = transcriber
        self.whole_file_transcriber = whole_file_transcriber
        # who is speaking (engine/voices.py): every stream's voice steps, one at a time, in a thread of their own
        self.voice_embed = voice_embed
        # whose mouth moves (engine/people.py): (image, box) → models.mouth.MouthReading, read in the voice thread
        self.read_mouth = read_mouth if voice_embed else None
        self.voice_worker = ThreadPoolExecutor(1, thread_name_prefix="vidsent-voices") if voice_embed else None
        self.asr_workers = FairScheduler(self.plan.asr_workers, "vidsent-asr")
        self.batcher = ScoreBatcher(scorers, max_wait_s=batch_wait_s, max_windows=self.plan.batch_windows,
                                    max_images=self.plan.batch_images, frames_together=self.device == "cuda")

    def source_fps(self, config) -> float:
        """The frame rate a stream's source samples at: the visual scorer's (PipelineConfig.sample_fps), or
        mouth_fps where mouths are read (the frames between key frames go to the mouth reader alone)."""
        if self.read_mouth is not None and config.mouth_fps > config.sample_fps:
            return float(config.mouth_fps)
        return float(config.sample_fps)

    def new_asr(self, step_s: float, realtime: bool = True, language: LanguageChoice | None = None) -> Transcriber:
        return self.transcriber(step_s, realtime, language or LanguageChoice())

    def join(self, stream: Hashable) -> None:
        """A stream starts using the workers (the batcher then waits a few ms for its requests)."""
        self.batcher.join(stream)

    def leave(self, stream: Hashable) -> None:
        self.batcher.leave(stream)
        self.asr_workers.forget(stream)

    async def in_asr_thread(self, stream: Hashable, fn, *args):
        """fn(*args) on an ASR worker, in fair turn with the other streams' passes."""
        return await self.asr_workers.run(stream, fn, *args)

    async def in_voice_thread(self, fn, *args):
        """fn(*args) in the voice thread (Engine.voice_embed's work: off the event loop, one stream at a time)."""
        assert self.voice_worker is not None  # asked only by streams that track voices
        return await asyncio.get_running_loop().run_in_executor(self.voice_worker, fn, *args)

    async def score_window(self, stream: Hashable, window: Window, has_audio: bool, has_video: bool,
                           modalities: tuple[str, ...] = MODALITIES, scored: dict | None = None):
        """The scores of one window (of `modalities`, with the earlier ones of `scored`), scored in a batch with
        the other streams' waiting windows."""
        return await self.batcher.score(stream, window, has_audio, has_video, modalities, scored)

    async def analyze_frames(self, stream: Hashable, images: list) -> list:
        """The frame analyzer's result per image, in a batch with the other streams' waiting frames."""
        return await self.batcher.analyze(stream, images)

    def lower_scoring_priority(self, nice: int = 10) -> bool:
        """Run the scoring below Whisper: the batcher's thread and the threads the scorers' runtimes started for
        themselves (CTranslate2 runs the audio encoder on a worker thread of its own, started with the models),
        `nice` steps below the caller. False where a thread's priority cannot be set (not Linux)."""
        lowered = self.batcher.lower_priority(nice)
        alive = native_thread_ids()
        for native_id in self._scorer_runtime_threads & alive:
            lowered = lower_thread_priority(nice, native_id) and lowered
        return lowered

    def close(self) -> None:
        self.asr_workers.close()
        self.batcher.close()
        if self.voice_worker is not None:
            self.voice_worker.shutdown(wait=False, cancel_futures=True)


BASE_LIVE_PACING = PassPacing(step_s=1.0, encoder_window_s=15.0, left_context_s=3.0)


class WhisperTranscribers:
    """The streaming and whole-file transcribers over the process's Whisper models: `size` (tiny.en unless --asr
    says base) for English, the multilingual base for every other language and for identifying them (both loaded once,
    with the English one, as every stream identifies its language). Each stream gets its own LanguageTracker for
    the languages it may be in."""

    def __init__(self, size: str, device: str) -> None:
        from models.whisper import load_whisper

        self.size, self.device = size, device
        self.english = load_whisper(size, device)
        self.multilingual()

    def multilingual(self):
        from models.whisper import load_whisper

        return load_whisper("base", self.device)

    def model_for(self, language: str):
        return self.english if language == "en" else self.multilingual()

    def live_pacing(self, language: str) -> PassPacing | None:
        """Whisper base costs about three times tiny.en a pass: at tiny.en's pace (0.75 s steps, a 20 s encoder
        window) its passes took 1.0 s per media second on this 2-core CPU and fell behind (Italian: word p95 4.7 s
        live). Passes 1 s apart on a 15 s window take 0.7-0.8 s per media second, and each pass settles words on
        the one before it (agreement needs passes 1 s apart), so words wait one step less: word p95 3.2 s instead
        of 4.2 s in the same simulation, WER unchanged (issue #31's notes have the sweep)."""
        size = self.size if language == "en" else "base"
        return BASE_LIVE_PACING if size == "base" else None

    def tracker(self, choice: LanguageChoice):
        from speech.language import LanguageTracker, whisper_identifier

        return LanguageTracker(choice, whisper_identifier(self.multilingual()))

    def streaming(self, step_s: float, realtime: bool, language: LanguageChoice) -> Transcriber:
        from speech import IncrementalASR

        first = language.fixed or "en"
        # a pass's pace is tuned per model for live steps only; files replayed fast take the steps they are given
        return IncrementalASR(self.model_for(first), step_s=step_s, catch_up=realtime, language=first,
                              languages=self.tracker(language), model_for=self.model_for,
                              pacing_for=self.live_pacing if realtime else None)

    def whole_file(self, path: Path, language: LanguageChoice) -> Transcriber:
        from speech import WholeFileASR

        first = language.fixed or "en"
        return WholeFileASR(self.model_for(first), path, language=first, languages=self.tracker(language),
                            model_for=self.model_for)
