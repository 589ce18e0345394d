"""Where a frame becomes a verdict: one stream's pipeline from a source to protocol messages.

    source ──ingest──▶ AudioRing ─────────────┐
       │                 └─▶ IncrementalASR ──┤ (words; a file under `analyze --fast`: WholeFileASR)
       └──▶ FrameQueue ──▶ VisualAnalyzer ────┤ (per-frame faces + scene)
                                              ▼
                    WindowSchedule → Window → scorers (text | audio | visual) → fuse → rolling EMA → WindowMessage

A window's audio and visual are scored as soon as its media and frames are in; its text once its words are (live:
after at most a short grace; a file replayed as fast as possible: once they are final), so the scoring runs while
speech recognition still works on the window.

`Engine` holds the models (loaded once per process, shared by every stream: the scorers behind the interface of
models/scoring.py, and speech recognition) and the workers that run all inference off the event loop (workers.py):
Whisper passes in fair turn across streams, and one scoring thread that scores the windows and frames of all
streams in batches. The event loop only moves data and messages. `StreamPipeline.run()` drives one stream and
hands each message to `emit`; the server fans them out to
websocket clients, `vidsent analyze` collects them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Hashable

from models.base import MODALITIES, ModalityScore, label_for
from models.fusion import FusedScore, RollingSentiment, grade_for_score
from models.scoring import MEDIA_MODALITIES, ScorerSet, build_scorers
from models.tracking import PeopleTracker
from protocol import EndMessage, ErrorMessage, Message, StatusMessage, TranscriptMessage, WindowMessage
from stream.buffers import AudioRing, FrameQueue, TimedResults
from stream.media import AudioChunk, VideoFrame, Word
from stream.sources import FileSource, MediaSource, SourceError, SourceEvent, SourceInfo
from stream.windows import Window, WindowSchedule, WordStore, join_words, words_between
from workers import FairScheduler, ScoreBatcher, lower_thread_priority, native_thread_ids

log = logging.getLogger(__name__)

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
    half_life_s: float = 6.0  # of the rolling EMA, in media seconds
    asr_step_s: float = 0.75  # new audio per ASR pass at real-time pace (words still settle on passes 1 s apart)
    asr_fast_step_s: float = 5.0  # new audio per ASR pass when a file is replayed as fast as possible
    # a file replayed as fast as possible is transcribed whole, as faster-whisper's transcribe() does (analyze --fast)
    asr_whole_file: bool = False
    asr_grace_s: float = 1.0  # how long a real-time window waits for ASR to reach its end
    frame_backlog: int = 8  # sampled frames that may wait for the visual scorer before the oldest are dropped
    status_every_s: float = 2.0

    def __post_init__(self):
        WindowSchedule(self.window_s, self.hop_s)  # validates window and hop
        if self.sample_fps <= 0:
            raise ValueError("sample fps must be positive")


class Engine:
    """The models of one process, loaded once and shared by all streams, and the workers that run them
    (workers.py): a fair scheduler of Whisper passes across streams and one scoring thread that batches the
    windows and frames of all streams.

    A plain container: `scorers` (models.scoring.ScorerSet, or anything with its score/fuse/frames.analyze, such
    as models.ray_scorers' client) and `transcriber` ((step_s, realtime) → an IncrementalASR-like object with
    insert_audio/process/finish/pending_audio_s/step_s), and `whole_file_transcriber` (path → a WholeFileASR-like
    object, for files replayed as fast as possible with PipelineConfig.asr_whole_file; None: never). Without them
    it builds the real ones from the options; tests pass fakes and run pipelines without any model."""

    def __init__(self, *, asr: str = "tiny.en", device: str = "auto", heads_dir: str | Path | None = None,
                 fusion: str = "weighted", scorers: ScorerSet | None = None,
                 transcriber: Callable[[float, bool], Any] | None = None, batch_wait_s: float = 0.005,
                 text_evidence: bool = True, whole_file_transcriber: Callable[[Path], Any] | None = None):
        from models.assets import configure_runtime, runtime_plan

        self._scorer_runtime_threads: set[int] = set()
        if scorers is None or transcriber is None:
            self.device = configure_runtime(device)
            if transcriber is None:  # first, so that Whisper's own threads are not counted as the scorers'
                transcriber, whole_file_transcriber = _whisper_transcribers(asr, self.device)
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
        self.asr_workers = FairScheduler(self.plan.asr_workers, "vidsent-asr")
        self.batcher = ScoreBatcher(scorers, max_wait_s=batch_wait_s, max_windows=self.plan.batch_windows,
                                    max_images=self.plan.batch_images, frames_together=self.device == "cuda")

    def new_asr(self, step_s: float, realtime: bool = True):
        return self.transcriber(step_s, realtime)

    def join(self, stream: Hashable) -> None:
        """A stream starts using the workers (the batcher then waits a few ms for its requests)."""
        self.batcher.join(stream)

    def leave(self, stream: Hashable) -> None:
        self.batcher.leave(stream)
        self.asr_workers.forget(stream)

    async def in_asr_thread(self, stream: Hashable, fn, *args):
        """fn(*args) on an ASR worker, in fair turn with the other streams' passes."""
        return await self.asr_workers.run(stream, fn, *args)

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


def _whisper_transcribers(size: str, device: str) -> tuple[Callable[[float, bool], Any], Callable[[Path], Any]]:
    """The streaming and the whole-file transcriber, over the process's one Whisper model."""
    from models.whisper import load_whisper
    from stream.asr import IncrementalASR, WholeFileASR

    whisper = load_whisper(size, device)
    return (lambda step_s, realtime: IncrementalASR(whisper, step_s=step_s, catch_up=realtime),
            lambda path: WholeFileASR(whisper, path))


class _Overall:
    """Running means per modality and of the fused score (constant memory, for the end summary)."""

    def __init__(self):
        self.sums = {m: 0.0 for m in MODALITIES}
        self.counts = {m: 0 for m in MODALITIES}
        self.reasons: dict[str, str] = {}
        self.windows = 0

    def add(self, scores: dict[str, ModalityScore]) -> None:
        self.windows += 1
        for m, s in scores.items():
            if s.available and s.score is not None:
                self.sums[m] += s.score
                self.counts[m] += 1
            elif s.reason:
                self.reasons[m] = s.reason

    def modalities(self) -> dict[str, ModalityScore]:
        out = {}
        for m in MODALITIES:
            if self.counts[m]:
                out[m] = ModalityScore.of(self.sums[m] / self.counts[m],
                                          details={"windows": self.counts[m]})
            else:
                out[m] = ModalityScore.missing(self.reasons.get(m, "no windows"))
        return out


class StreamPipeline:
    def __init__(self, stream_id: str, source: MediaSource, engine: Engine, config: PipelineConfig | None = None,
                 emit: Callable[[Message], None] = lambda m: None):
        self.stream_id = stream_id
        self.source = source
        self.engine = engine
        self.config = config or PipelineConfig()
        self.emit = emit
        self.info: SourceInfo | None = None
        self.realtime = source.realtime
        cfg = self.config
        self.ring = AudioRing(capacity_s=max(60.0, 4 * cfg.window_s))
        self.frames_waiting = FrameQueue(cfg.frame_backlog)
        # as long as the ring: a replay as fast as possible analyses frames up to half a ring ahead of the windows
        self.frame_results: TimedResults = TimedResults(keep_s=self.ring.capacity / self.ring.sample_rate)
        self.words = WordStore(keep_s=max(60.0, 4 * cfg.window_s))
        self.pending_words: list[Word] = []
        self.transcript_log: deque[str] = deque(maxlen=2000)
        self.schedule = WindowSchedule(cfg.window_s, cfg.hop_s)
        self.rolling = RollingSentiment(cfg.half_life_s)
        self.overall = _Overall()
        self.people = PeopleTracker()  # person ids for the faces of the analysed frames, in media-time order
        self.asr = None
        self.audio_end = 0.0
        self.video_end = -1.0
        self.asr_until = 0.0  # media time the ASR has transcribed up to
        self.asr_final_until = 0.0  # media time before which the transcript will not change any more
        self.asr_busy_s = 0.0  # compute seconds of this stream's ASR passes (asr_busy_s / asr_until: real-time factor)
        self.frames_inflight_t: float | None = None
        # (index, start, end) of a window → its audio and visual scores, started before its words were in
        self.media_scores: dict[tuple[int, float, float], tuple[asyncio.Task, bool, bool]] = {}
        self.sending_from = 0  # index of the first window whose message is not being scored and sent yet
        self.eof = False
        self.end_reason = "eof"
        self.state = "starting"
        self._changed = asyncio.Condition()
        self._arrivals: deque[tuple[float, float]] = deque(maxlen=4096)  # (media watermark, wall time)
        self._stop = asyncio.Event()

    # -- shared state ------------------------------------------------------------------------------------------
    @property
    def watermark(self) -> float:
        """Media time up to which the source has delivered everything."""
        if self.info is not None and self.info.has_audio:
            return self.audio_end
        return max(self.video_end, 0.0)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(predicate), timeout)
                return True
            except asyncio.TimeoutError:
                return predicate()

    def stop(self) -> None:
        self.end_reason = "stopped"
        self._stop.set()

    # -- the stream --------------------------------------------------------------------------------------------
    async def run(self) -> EndMessage:
        self.emit(StatusMessage(self.stream_id, "starting", detail="opening source"))
        try:
            self.info = await self._open_unless_stopped()
        except (SourceError, asyncio.TimeoutError, TimeoutError) as exc:
            await self.source.close()  # whatever the open left behind (a peer connection, sockets)
            if isinstance(exc, SourceError):
                return self._finish_with_error(exc.code, exc.message)
            return self._finish_with_error("timeout", "the source did not answer in time")
        if self.info is None:  # stopped while the source was still opening
            await self.source.close()
            end = EndMessage(self.stream_id, self._summary())
            self.emit(end)
            return end
        self.state = "running"
        self.emit(StatusMessage(self.stream_id, "running", source=self.info.to_json(),
                                detail=self._missing_tracks_detail()))
        if self.info.has_audio:
            try:
                self.asr = await self._open_asr()
            except asyncio.CancelledError:
                self.engine.leave(self)
                await self.source.close()
                raise
        self.engine.join(self)
        workers = [asyncio.create_task(self._ingest(), name=f"{self.stream_id}-ingest"),
                   asyncio.create_task(self._windows(), name=f"{self.stream_id}-windows"),
                   asyncio.create_task(self._status_loop(), name=f"{self.stream_id}-status"),
                   asyncio.create_task(self._score_media_ahead(), name=f"{self.stream_id}-media-scores")]
        if self.asr is not None:
            workers.append(asyncio.create_task(self._transcribe(), name=f"{self.stream_id}-asr"))
        if self.info.has_video:
            workers.append(asyncio.create_task(self._analyze_frames(), name=f"{self.stream_id}-frames"))
        stopper = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait([workers[1], stopper], return_when=asyncio.FIRST_COMPLETED)
            for task in workers:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()
        except SourceError as exc:
            self.end_reason = "source_lost" if exc.code == "source_lost" else "error"
            self.emit(ErrorMessage(exc.code, exc.message, self.stream_id))
        except Exception as exc:  # noqa: BLE001 - report and end this stream; others carry on
            log.error("stream %s failed: %s: %s", self.stream_id, type(exc).__name__, exc)
            log.debug("stream %s failed", self.stream_id, exc_info=True)  # the traceback, with -v
            self.end_reason = "error"
            # the exception's text can hold internals (paths, URLs): clients get its kind, the log the rest
            self.emit(ErrorMessage("internal", f"the stream failed on an internal error ({type(exc).__name__}); "
                                               "the server's log has the details", self.stream_id))
        finally:
            early = [task for task, _, _ in self.media_scores.values()]
            for task in [*workers, stopper, *early]:
                task.cancel()
            await asyncio.gather(*workers, stopper, *early, return_exceptions=True)
            # an error's traceback holds this frame: without the tasks in it, the frame, the tasks and the error
            # make no cycle, and the stream's data goes when the stream does, not at the next cyclic collection
            workers.clear()
            early.clear()
            self.engine.leave(self)
            await self.source.close()
        end = EndMessage(self.stream_id, self._summary())
        self.emit(end)
        return end

    async def _open_unless_stopped(self) -> SourceInfo | None:
        """The source's open raced against stop(): a camera still connecting or a browser that never completes ICE
        must not keep a stream from ending (None when the stop came first)."""
        opening = asyncio.create_task(self.source.open(), name=f"{self.stream_id}-open")
        stopper = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait([opening, stopper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (opening, stopper):
                if not task.done():
                    task.cancel()
            await asyncio.gather(opening, stopper, return_exceptions=True)
        if opening.cancelled():
            return None
        return opening.result()

    def _media_end(self) -> float:
        """Where the media ended: the audio's end, or for video alone the file's duration (a still image lasts one
        frame) — not just the last sampled frame."""
        end = self.watermark
        if self.info is not None and self.info.duration and not self.info.has_audio:
            end = max(end, self.info.duration)
        return end

    def _missing_tracks_detail(self) -> str:
        missing = [name for name, has in (("audio", self.info.has_audio), ("video", self.info.has_video)) if not has]
        return f"no {' or '.join(missing)} track: those modalities are marked missing" if missing else ""

    def _finish_with_error(self, code: str, message: str) -> EndMessage:
        self.end_reason = "error"
        self.emit(ErrorMessage(code, message, self.stream_id))
        end = EndMessage(self.stream_id, self._summary())
        self.emit(end)
        return end

    async def _ingest(self) -> None:
        try:
            async for item in self.source:
                if isinstance(item, AudioChunk):
                    self.ring.append(item)
                    self.asr and self.asr.insert_audio(item.samples, item.t)
                    self.audio_end = max(self.audio_end, item.t_end)
                elif isinstance(item, VideoFrame):
                    if not self.realtime:  # a file replayed as fast as possible waits instead of dropping frames
                        await self._wait_for(lambda: len(self.frames_waiting) < self.frames_waiting.max_waiting)
                    self.frames_waiting.put(item)
                    self.video_end = max(self.video_end, item.t)
                    self._check_audio_track()
                elif isinstance(item, SourceEvent):
                    self.state = "reconnecting" if item.state == "reconnecting" else "running"
                    self.emit(StatusMessage(self.stream_id, self.state, self.lag_s, self.dropped_frames,
                                            round(self.watermark, 3), item.detail))
                self._arrivals.append((self.watermark, time.monotonic()))
                await self._notify()
                if not self.realtime:
                    # backpressure: read no further ahead than the windows, ASR and ring can absorb
                    await self._wait_for(self._has_room)
            if self.end_reason == "eof":
                self.end_reason = self.source.end_reason
        finally:
            self.eof = True
            self._check_audio_track()
            await self._notify()

    def _check_audio_track(self) -> None:
        """An audio track that delivers nothing while the video plays on counts as none: the windows then follow the
        video instead of waiting for audio that never comes, and audio and text are marked missing."""
        if not self.info.has_audio or self.audio_end > 0.0 or self.video_end < 0.0:
            return
        if self.eof or self.video_end >= EMPTY_AUDIO_AFTER_S:
            self.info = replace(self.info, has_audio=False)
            self.emit(StatusMessage(self.stream_id, self.state, media_time=round(self.watermark, 3),
                                    detail="the audio track is empty: audio and text are marked missing"))

    def _has_room(self) -> bool:
        ahead = self.watermark - self.schedule.next_span()[1]
        ring_s = self.ring.capacity / self.ring.sample_rate
        if self.asr is not None and self.asr.pending_audio_s < self.asr.step_s:
            # the ASR waits for more audio (and the windows for its words): reading on is the only way forward,
            # as long as the ring still holds the oldest window's audio
            return ahead < ring_s - self.config.window_s
        asr_backlog = self.asr.pending_audio_s if self.asr is not None else 0.0
        return ahead < ring_s / 2 and asr_backlog < 4 * self.config.asr_fast_step_s

    async def _open_asr(self):
        """The stream's transcriber: a file replayed as fast as possible with asr_whole_file is transcribed whole
        (its audio decoded once more, up front); anything else, or a file whose audio that decode fails on, in
        streaming passes over the audio as it arrives."""
        path = getattr(self.source, "path", None)
        if (not self.realtime and self.config.asr_whole_file and path is not None
                and self.engine.whole_file_transcriber is not None):
            try:
                return await self.engine.in_asr_thread(self, self.engine.whole_file_transcriber, path)
            except Exception as exc:  # noqa: BLE001 - the streaming passes read the audio the source decodes
                log.warning("%s: transcribing in passes, the whole-file decode failed: %s: %s",
                            self.stream_id, type(exc).__name__, exc)
        return self.engine.new_asr(self.config.asr_step_s if self.realtime else self.config.asr_fast_step_s,
                                   self.realtime)

    async def _transcribe(self) -> None:
        if getattr(self.asr, "whole_file", False):
            while not self.asr.done:  # a segment at a time, in fair turn with other streams' passes
                self._take_asr_update(await self._asr_pass(self.asr.process))
                await self._notify()
            return
        step = self.asr.step_s
        while True:
            await self._wait_for(lambda: self.eof or self.asr.pending_audio_s >= step)
            if self.eof and self.asr.pending_audio_s < step:  # full steps first: the same passes every replay
                update = await self._asr_pass(self.asr.finish)
                self._take_asr_update(update, final=True)
                await self._notify()
                return
            update = await self._asr_pass(self.asr.process)
            self._take_asr_update(update)
            await self._notify()

    async def _asr_pass(self, step: Callable[[], Any]):
        """One ASR pass in the shared ASR thread; its compute time (not the wait for the thread) is counted."""
        def timed():
            started = time.perf_counter()
            try:
                return step()
            finally:
                self.asr_busy_s += time.perf_counter() - started

        return await self.engine.in_asr_thread(self, timed)

    def _take_asr_update(self, update, final: bool = False) -> None:
        if update.committed:
            self.words.add(update.committed)
            text = join_words(update.committed)
            self.transcript_log.append(text)
            self.emit(TranscriptMessage(
                self.stream_id, round(update.committed[0].start, 3), round(update.committed[-1].end, 3), text, True,
                [{"start": round(w.start, 3), "end": round(w.end, 3), "word": w.text.strip(),
                  "p": round(w.probability, 3)} for w in update.committed]))
        if update.pending != self.pending_words and update.pending:
            self.emit(TranscriptMessage(self.stream_id, round(update.pending[0].start, 3),
                                        round(update.pending[-1].end, 3), join_words(update.pending), False))
        self.pending_words = list(update.pending)
        self.asr_until = self.audio_end if final else max(self.asr_until, update.processed_until)
        settled = update.processed_until if update.final_until is None else update.final_until
        self.asr_final_until = self.audio_end if final else max(self.asr_final_until, settled)

    async def _analyze_frames(self) -> None:
        while True:
            await self._wait_for(lambda: self.eof or len(self.frames_waiting) > 0)
            batch = self.frames_waiting.take(FRAME_BATCH)
            if not batch:
                if self.eof:
                    return
                continue
            self.frames_inflight_t = batch[0].t
            analyses = await self.engine.analyze_frames(self, [frame.image for frame in batch])
            for frame, analysis in zip(batch, analyses):
                self.people.observe(frame.t, analysis)
                self.frame_results.add(frame.t, analysis)
            self.frames_inflight_t = None
            await self._notify()

    def _frames_ready(self, t1: float) -> bool:
        if self.info is None or not self.info.has_video:
            return True
        if self.frames_inflight_t is not None and self.frames_inflight_t < t1:
            return False
        oldest = self.frames_waiting.oldest_t()
        if oldest is not None and oldest < t1:
            return False
        return self.eof or self.video_end >= t1 - 1.0 / self.config.sample_fps

    def _asr_ready(self, t1: float) -> bool:
        """Live, a window needs the audio up to its end transcribed (its tail may still be unconfirmed words); a
        file replayed as fast as possible waits until its words can no longer change, so a replay is repeatable."""
        if self.asr is None or not self.info.has_audio:
            return True
        return (self.asr_until if self.realtime else self.asr_final_until) >= t1 - 0.05

    def _media_in(self, t1: float) -> bool:
        return self.watermark >= t1 and self._frames_ready(t1)

    def _waiting_for_words(self) -> list[tuple[int, float, float]]:
        """The windows from the next one on whose media and frames are in but whose words are not, and whose audio
        and visual are not being scored yet."""
        spans = []
        for ahead in range(MEDIA_SCORES_AHEAD + 1):
            span = self.schedule.next_span(ahead)
            if not self._media_in(span[2]):
                break
            if span[0] >= self.sending_from and span not in self.media_scores and not self._asr_ready(span[2]):
                spans.append(span)
        return spans

    async def _score_media_ahead(self) -> None:
        """Scores the audio and visual of each window whose words are still to come, as soon as its media is in: its
        message then waits only for the scoring of its text (see _scores_of)."""
        while True:
            await self._wait_for(lambda: bool(self._waiting_for_words()))
            flags = (self.info.has_audio, self.info.has_video)
            for index, t0, t1 in self._waiting_for_words():
                window = self._window(index, t0, t1)
                task = asyncio.create_task(self.engine.score_window(self, window, *flags, MEDIA_MODALITIES))
                self.media_scores[(index, t0, t1)] = (task, *flags)

    def _window(self, index: int, t0: float, t1: float) -> Window:
        return Window(index=index, t_start=t0, t_end=t1, audio=self.ring.read(t0, t1),
                      frames=self.frame_results.between(t0, t1), words=self.words.between(t0, t1),
                      pending_words=words_between(self.pending_words, t0, t1))

    async def _scores_of(self, window: Window) -> dict[str, ModalityScore]:
        """Every modality's score of a window: its text alone where its audio and visual were scored ahead (with
        the tracks it still has), else all three in one request."""
        flags = (self.info.has_audio, self.info.has_video)
        early = self.media_scores.pop((window.index, window.t_start, window.t_end), None)
        if early is not None and tuple(early[1:]) == flags:
            scored = await early[0]
            return await self.engine.score_window(self, window, *flags, ("text",), scored)
        if early is not None:
            early[0].cancel()
        return await self.engine.score_window(self, window, *flags)

    async def _windows(self) -> None:
        while True:
            index, t0, t1 = self.schedule.next_span()
            await self._wait_for(lambda: self.eof or self.watermark >= t1)
            if self.watermark < t1:  # the media ended inside this window
                break
            await self._wait_for(lambda: self._frames_ready(t1) or self.eof)
            # At real-time pace a window waits only briefly for speech recognition and uses the unconfirmed
            # words for its tail; a file replayed as fast as possible waits for every word.
            await self._wait_for(lambda: self._asr_ready(t1), self.config.asr_grace_s if self.realtime else None)
            spans = [(index, t0, t1)] + ([] if self.realtime else self._ready_spans_after(REPLAY_WINDOW_BATCH - 1))
            await self._emit_windows(spans)
            for _ in spans:
                self.schedule.advance()
            await self._notify()
        # the end of the media: the last words, the last frames, then a closing window over what is left
        await self._wait_for(lambda: self._asr_ready(self.audio_end) and self._frames_ready(float("inf")))
        span = self.schedule.final_span(self._media_end())
        if span is not None:
            await self._emit_windows([span])
            self.schedule.advance()

    def _ready_spans_after(self, most: int) -> list[tuple[int, float, float]]:
        """Up to `most` windows after the next one whose media, frames and final words are all in already (a file
        replayed as fast as possible): they are scored in one batch with it."""
        spans = []
        for ahead in range(1, most + 1):
            index, t0, t1 = self.schedule.next_span(ahead)
            if not (self.watermark >= t1 and self._frames_ready(t1) and self._asr_ready(t1)):
                break
            spans.append((index, t0, t1))
        return spans

    async def _emit_windows(self, spans: list[tuple[int, float, float]]) -> None:
        """Score the windows of `spans` (together: the batcher takes them as one batch), then send them in order."""
        windows = [self._window(index, t0, t1) for index, t0, t1 in spans]
        words_behind = [self._words_behind(window) for window in windows]
        self.sending_from = spans[-1][0] + 1  # a live window may go before its words: none is scored ahead again
        all_scores = await asyncio.gather(*(self._scores_of(window) for window in windows))
        for window, scores, behind in zip(windows, all_scores, words_behind):
            if behind is not None and "text" in scores and not scores["text"].available:
                scores = {**scores, "text": ModalityScore.missing(
                    f"words not in yet (speech recognition {behind:.1f} s behind)")}
            fused = self.engine.scorers.fuse(scores)
            rolling = self.rolling.update(fused.score, window.t_end)
            self.overall.add(scores)
            self.emit(WindowMessage(
                stream=self.stream_id, index=window.index, t_start=round(window.t_start, 3),
                t_end=round(window.t_end, 3),
                modalities={m: s.to_json() for m, s in scores.items()},
                fused=fused.to_json(),
                rolling=self._rolling_json(rolling),
                transcript=window.transcript,
                latency_s=self._latency(window.t_end),
            ))
            # what observers queued after this window (an alert it raised) goes out before the next window
            await asyncio.sleep(0)

    def _words_behind(self, window: Window) -> float | None:
        """How far speech recognition is behind the end of a live window that goes out without any words (after
        its grace), or None: its text is then missing because its words are late, not because nobody spoke."""
        if not self.realtime or window.transcript or self._asr_ready(window.t_end):
            return None
        return window.t_end - self.asr_until

    def _rolling_json(self, score: float | None) -> dict:
        return {
            "score": None if score is None else round(score, 4),
            "label": None if score is None else label_for(score),
            "graded": None if score is None else grade_for_score(score),
            "half_life_s": self.config.half_life_s,
        }

    def _latency(self, t1: float) -> float | None:
        """Wall seconds since the window's last media arrived (only meaningful at real-time pace)."""
        for watermark, wall in self._arrivals:
            if watermark >= t1 - 1e-6:
                return round(time.monotonic() - wall, 3)
        return None

    @property
    def dropped_frames(self) -> int:
        """Sampled frames dropped by policy: waiting for the visual scorer, or at the source itself."""
        return self.frames_waiting.dropped + self.source.dropped_frames

    @property
    def lag_s(self) -> float:
        """Media seconds received but not yet covered by a sent window, beyond one hop."""
        return round(max(0.0, self.watermark - self.schedule.next_span()[2]), 3)

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.status_every_s)
            self.emit(StatusMessage(self.stream_id, self.state, self.lag_s, self.dropped_frames,
                                    round(self.watermark, 3)))

    def _summary(self) -> dict:
        modalities = self.overall.modalities()
        fused: FusedScore = self.engine.scorers.fuse(modalities)
        return {
            "reason": self.end_reason,
            "source": self.info.to_json() if self.info else None,
            "duration": round(self._media_end(), 3),
            "windows": self.overall.windows,
            "score": None if fused.score is None else round(fused.score, 4),
            "label": fused.label,
            "graded": fused.graded,
            "fused": fused.to_json(),
            "rolling": self._rolling_json(self.rolling.score),
            "modalities": {m: s.to_json() for m, s in modalities.items()},
            "dropped_frames": self.dropped_frames,
            "transcript": " ".join(self.transcript_log),
            "people": self.people.summary(),
        }


async def analyze_file(path: str | Path, engine: Engine, config: PipelineConfig) -> dict:
    """One file replayed as fast as possible through the live pipeline: its window timeline and overall verdict
    (what `vidsent analyze` writes, and what `vidsent evaluate` scores clips by):
    {file, duration, label, score, graded, rolling, modalities, transcript, people, windows, error?}."""
    windows: list[dict] = []
    errors: list[dict] = []

    def collect(message):
        if isinstance(message, WindowMessage):
            windows.append({k: v for k, v in message.to_json().items() if k not in ("type", "v", "stream", "latency_s")})
        elif isinstance(message, ErrorMessage):
            errors.append({"code": message.code, "message": message.message})

    source = FileSource(path, realtime=False, sample_fps=config.sample_fps)
    end: EndMessage = await StreamPipeline(Path(path).name, source, engine, config, emit=collect).run()
    summary = end.summary
    result = {
        "file": str(path),
        "duration": summary["duration"],
        "label": summary["label"],
        "score": summary["score"],
        "graded": summary["graded"],
        "rolling": summary["rolling"],
        "modalities": summary["modalities"],
        "transcript": summary["transcript"],
        "people": summary["people"],
        "windows": windows,
    }
    if errors:
        result["error"] = errors[0]
    return result
