"""Where a frame becomes a verdict: one stream's pipeline from a source to protocol messages.

    source ──ingest──▶ AudioRing ─────────────┐
       │                 └─▶ IncrementalASR ──┤ (words; a file under `analyze --fast`: WholeFileASR)
       └──▶ FrameQueue ──▶ VisualAnalyzer ────┤ (per-frame faces + scene)
                                              ▼
                    WindowSchedule → Window → scorers (text | audio | visual) → fuse → rolling EMA → WindowMessage

A window's audio and visual are scored as soon as its media and frames are in; its text once its words are (live:
after at most a short grace; a file replayed as fast as possible: once they are final), so the scoring runs while
speech recognition still works on the window.

`Engine` (engine/engine.py) holds the models (loaded once per process, shared by every stream: the scorers behind
models.scoring.Scorers, and speech recognition behind speech.Transcriber) and the workers that run all inference off
the event loop (engine/workers.py). The event loop only moves data and messages. `StreamPipeline.run()` drives one
stream and hands each message to `emit`; the server fans them out to websocket clients, `vidsent analyze` collects
them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import cast

from engine.config import (
    EMPTY_AUDIO_AFTER_S,
    FRAME_BATCH,
    MEDIA_SCORES_AHEAD,
    REPLAY_WINDOW_BATCH,
    PipelineConfig,
)
from engine.engine import Engine
from engine.people import PERSON_AUDIO_BEFORE_S, MouthTrack, PeopleTrack, WindowVoices, voice_audio
from engine.summary import OverallScores, rolling_json
from engine.tracks import FrameTrack, SpeechTrack
from engine.voices import VoiceTrack
from media import SAMPLE_RATE, AudioChunk, VideoFrame
from models.audio_features import MIN_SCORED_S
from models.base import ModalityScore
from models.fusion import FusedScore, RollingSentiment
from models.scoring import MEDIA_MODALITIES
from protocol import (
    EndMessage,
    EndSummary,
    ErrorMessage,
    FusedVerdict,
    Message,
    Modalities,
    PersonVerdict,
    SourceDescription,
    SpeakerShare,
    StatusMessage,
    StreamLanguage,
    WindowMessage,
)
from speech import AsrUpdate, Transcriber
from speech.language import SpokenLanguage, language_name
from stream.buffers import AudioRing
from stream.sources import MediaSource, SourceError, SourceEvent, SourceInfo
from stream.windows import Window, WindowSchedule

log = logging.getLogger(__name__)


class StreamPipeline:
    """One stream from its source to its messages. Four tasks share its state on the event loop and wait on one
    condition: ingest moves the source's items into the audio ring, the transcriber's queue and the frame queue;
    the speech task runs Whisper passes (`SpeechTrack`), the frame task the visual analyzer (`FrameTrack`), both
    on the engine's workers; the window task cuts each window once its media, frames and words are in (each track
    says when its part is), has it scored, fuses it and emits it (a fifth scores audio and visual ahead of the
    words). `run()` drives it all and returns the `end` message; `stop()` ends it at any time."""

    def __init__(self, stream_id: str, source: MediaSource, engine: Engine, config: PipelineConfig | None = None,
                 emit: Callable[[Message], None] = lambda m: None):
        self.stream_id = stream_id
        self.source = source
        self.engine = engine
        self.config = config or PipelineConfig()
        self.emit = emit
        self.info: SourceInfo | None = None
        self.realtime = source.realtime
        self._source_fps = source.sample_fps  # the rate it samples at where no mouths are read
        source.sample_fps = max(source.sample_fps, engine.source_fps(self.config))
        cfg = self.config
        self.ring = AudioRing(capacity_s=max(60.0, 4 * cfg.window_s))
        # frames kept as long as the ring: a replay as fast as possible analyses frames up to half a ring ahead
        self.frames = FrameTrack(cfg.frame_backlog, self.ring.capacity / self.ring.sample_rate, cfg.sample_fps,
                                 follow_mouths=False, source_fps=source.sample_fps)  # mouths: once voices are tracked
        self.speech = SpeechTrack(stream_id, keep_s=max(60.0, 4 * cfg.window_s))
        self.voices: VoiceTrack | None = None  # who is speaking, where the stream has sound and voices are tracked
        self.mouths: MouthTrack | None = None  # whose mouth moves, where voices are tracked and there is video
        self.people = PeopleTrack(engine.scorers.fuse, cfg.half_life_s, None)  # each person's own verdicts
        self.schedule = WindowSchedule(cfg.window_s, cfg.hop_s)
        self.rolling = RollingSentiment(cfg.half_life_s)
        self.overall = OverallScores()
        self.audio_end = 0.0
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
        return max(self.frames.video_end, 0.0)

    @property
    def asr_until(self) -> float:
        """Media time speech recognition has transcribed up to."""
        return self.speech.heard_until

    @property
    def asr_busy_s(self) -> float:
        """Compute seconds this stream's speech-recognition passes took (with asr_until: the real-time factor)."""
        return self.speech.busy_s

    @property
    def asr_final_until(self) -> float:
        """Media time before which the transcript will not change any more."""
        return self.speech.final_until

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(predicate), timeout)
                return True
            except TimeoutError:
                return predicate()

    def stop(self) -> None:
        self.end_reason = "stopped"
        self._stop.set()

    # -- the stream --------------------------------------------------------------------------------------------
    async def run(self) -> EndMessage:
        self.emit(StatusMessage(self.stream_id, "starting", detail="opening source"))
        try:
            self.info = await self._open_unless_stopped()
        except (SourceError, TimeoutError) as exc:
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
        self.emit(StatusMessage(self.stream_id, "running", source=cast(SourceDescription, self.info.to_json()),
                                detail=self._missing_tracks_detail()))
        if self.info.has_audio and self.engine.voice_embed is not None:
            self.voices = VoiceTrack(self.engine.voice_embed)
            if self.info.has_video and self.engine.read_mouth is not None:
                self.mouths = MouthTrack(self.engine.read_mouth)
                # the frames between key frames, where the source samples faster (mouth_fps above sample_fps)
                self.frames.follow_mouths = self.source.sample_fps > self.config.sample_fps
                self.people = PeopleTrack(self.engine.scorers.fuse, self.config.half_life_s, self.mouths)
        if self.mouths is None:  # no sound, or no voices followed: the frames between key frames would go unread
            self.source.sample_fps = max(self._source_fps, self.config.sample_fps)
        if self.info.has_audio:
            try:
                self.speech.asr = await self._open_asr()
            except asyncio.CancelledError:
                self.engine.leave(self)
                await self.source.close()
                raise
        self.engine.join(self)
        workers = [asyncio.create_task(self._ingest(), name=f"{self.stream_id}-ingest"),
                   asyncio.create_task(self._windows(), name=f"{self.stream_id}-windows"),
                   asyncio.create_task(self._status_loop(), name=f"{self.stream_id}-status"),
                   asyncio.create_task(self._score_media_ahead(), name=f"{self.stream_id}-media-scores")]
        if self.speech.asr is not None:
            workers.append(asyncio.create_task(self._transcribe(), name=f"{self.stream_id}-asr"))
        if self.info.has_video:
            workers.append(asyncio.create_task(self._analyze_frames(), name=f"{self.stream_id}-frames"))
        if self.voices is not None:
            workers.append(asyncio.create_task(self._find_voices(self.voices), name=f"{self.stream_id}-voices"))
        stopper = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait([workers[1], stopper], return_when=asyncio.FIRST_COMPLETED)
            for task in workers:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    # no local for it: the error's traceback holds this frame, and a local would close a cycle
                    raise task.exception()  # type: ignore[misc]  # not None: checked above (a call is not narrowed)
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
        assert self.info is not None  # called once the source is open
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
                    if self.speech.asr is not None:
                        self.speech.asr.insert_audio(item.samples, item.t)
                    self.audio_end = max(self.audio_end, item.t_end)
                elif isinstance(item, VideoFrame):
                    if not self.realtime:  # a file replayed as fast as possible waits instead of dropping frames
                        await self._wait_for(lambda: not self.frames.full())
                    self.frames.put(item)
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
        assert self.info is not None  # the ingest task starts once the source is open
        if not self.info.has_audio or self.audio_end > 0.0 or self.frames.video_end < 0.0:
            return
        if self.eof or self.frames.video_end >= EMPTY_AUDIO_AFTER_S:
            self.info = replace(self.info, has_audio=False)
            self.emit(StatusMessage(self.stream_id, self.state, media_time=round(self.watermark, 3),
                                    detail="the audio track is empty: audio and text are marked missing"))

    def _has_room(self) -> bool:
        ahead = self.watermark - self.schedule.next_span()[1]
        ring_s = self.ring.capacity / self.ring.sample_rate
        asr = self.speech.asr
        if asr is not None and asr.pending_audio_s < asr.step_s:
            # the ASR waits for more audio (and the windows for its words): reading on is the only way forward,
            # as long as the ring still holds the oldest window's audio
            voices_behind = self.audio_end - self.voices.until if self.voices is not None else 0.0
            return ahead < ring_s - self.config.window_s and voices_behind < ring_s / 2
        asr_backlog = asr.pending_audio_s if asr is not None else 0.0
        voices_behind = self.audio_end - self.voices.until if self.voices is not None else 0.0
        return ahead < ring_s / 2 and asr_backlog < 4 * self.config.asr_fast_step_s and voices_behind < ring_s / 2

    async def _open_asr(self) -> Transcriber:
        """The stream's transcriber: a file replayed as fast as possible with asr_whole_file is transcribed whole
        (its audio decoded once more, up front); anything else, or a file whose audio that decode fails on, in
        streaming passes over the audio as it arrives."""
        path = self.source.path
        if (not self.realtime and self.config.asr_whole_file and path is not None
                and self.engine.whole_file_transcriber is not None):
            try:
                return await self.engine.in_asr_thread(self, self.engine.whole_file_transcriber, path,
                                                       self.config.languages)
            except Exception as exc:  # noqa: BLE001 - the streaming passes read the audio the source decodes
                log.warning("%s: transcribing in passes, the whole-file decode failed: %s: %s",
                            self.stream_id, type(exc).__name__, exc)
        return self.engine.new_asr(self.config.asr_step_s if self.realtime else self.config.asr_fast_step_s,
                                   self.realtime, self.config.languages)

    async def _transcribe(self) -> None:
        asr = self.speech.asr
        assert asr is not None
        if asr.whole_file:
            while not asr.done:  # a segment at a time, in fair turn with other streams' passes
                self._take_asr_update(await self._asr_pass(asr.process))
                await self._notify()
            return
        while True:
            await self._wait_for(lambda: self.eof or asr.pending_audio_s >= asr.step_s)
            if self.eof and asr.pending_audio_s < asr.step_s:  # full steps first: the same passes every replay
                update = await self._asr_pass(asr.finish)
                self._take_asr_update(update, final=True)
                await self._notify()
                return
            update = await self._asr_pass(asr.process)
            self._take_asr_update(update)
            await self._notify()

    async def _asr_pass(self, step: Callable[[], AsrUpdate]) -> AsrUpdate:
        """One ASR pass in the shared ASR thread; its compute time (not the wait for the thread) is counted."""
        def timed():
            started = time.perf_counter()
            try:
                return step()
            finally:
                self.speech.busy_s += time.perf_counter() - started

        return await self.engine.in_asr_thread(self, timed)

    def _take_asr_update(self, update: AsrUpdate, final: bool = False) -> None:
        changed = self.speech.follow_language(update)
        if changed is not None:
            self.emit(StatusMessage(self.stream_id, self.state, self.lag_s, self.dropped_frames,
                                    round(self.watermark, 3), detail=language_detail(changed),
                                    language=cast(StreamLanguage, changed.to_json())))
        speaker_of = self.voices.speaker_of if self.voices is not None else None
        for message in self.speech.take(update, self.audio_end, final, speaker_of):
            self.emit(message)

    async def _find_voices(self, voices: VoiceTrack) -> None:
        """Who is speaking: each VOICE_STEP_S of new audio (its samples read here, on the loop) looked at in the
        engine's voice thread."""
        while True:
            await self._wait_for(lambda: voices.due(self.audio_end, self.eof))
            until, final = self.audio_end, self.eof
            start = max(voices.look_from(until), self.ring.start_t)  # a voice thread far behind skips what is gone
            await self.engine.in_voice_thread(voices.step, self.ring.read(start, until), start, until, final)
            await self._notify()
            if final:
                return

    def _voices_ready(self, t1: float) -> bool:
        """A file replayed as fast as possible waits for its voices up to a window's end (a repeatable replay); live,
        a window goes with the voices known by then."""
        return self.voices is None or self.realtime or self.voices.until >= t1 - 1e-6 or (
            self.eof and self.voices.until >= self.audio_end - 1e-6)

    async def _analyze_frames(self) -> None:
        """Key frames through the visual analyzer (in batches with other streams'), then the mouths of their faces
        and of the frames between them (in the voice thread)."""
        frames = self.frames
        while True:
            await self._wait_for(lambda: self.eof or len(frames.waiting) > 0 or len(frames.mouth_frames) > 0)
            batch = frames.take(FRAME_BATCH)
            analyses = []
            if batch:
                analyses = await self.engine.analyze_frames(self, [frame.image for frame in batch])
                frames.analysed(batch, analyses)
                for frame, analysis in zip(batch, analyses):
                    if getattr(analysis, "faces", None):
                        self.people.take_thumbnails(frame.t, frame.image, analysis.faces)
            between = frames.take_mouth_frames()
            if self.realtime:  # live, a window does not wait for the mouths (a replay does: it repeats)
                frames.done()
                await self._notify()
            if self.mouths is not None and (batch or between):
                keys = [(f.t, f.image, getattr(a, "faces", None) or []) for f, a in zip(batch, analyses)]
                ordered = sorted([*keys, *((f.t, f.image, None) for f in between)], key=lambda item: item[0])
                await self.engine.in_voice_thread(self.mouths.read, ordered)
            frames.done()
            if not batch and not between and self.eof:
                return
            await self._notify()

    def _frames_ready(self, t1: float) -> bool:
        return self.info is None or not self.info.has_video or self.frames.ready(t1, self.eof)

    def _asr_ready(self, t1: float) -> bool:
        return self.info is None or not self.info.has_audio or self.speech.ready(t1, self.realtime)

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
            assert self.info is not None  # the task starts once the source is open
            flags = (self.info.has_audio, self.info.has_video)
            for index, t0, t1 in self._waiting_for_words():
                window = self._window(index, t0, t1)
                task = asyncio.create_task(self.engine.score_window(self, window, *flags, MEDIA_MODALITIES))
                self.media_scores[(index, t0, t1)] = (task, *flags)

    def _window(self, index: int, t0: float, t1: float) -> Window:
        words, pending = self.speech.words_between(t0, t1)
        return Window(index=index, t_start=t0, t_end=t1, audio=self.ring.read(t0, t1),
                      frames=self.frames.results.between(t0, t1), words=words, pending_words=pending)

    async def _scores_of(self, window: Window) -> dict[str, ModalityScore]:
        """Every modality's score of a window: its text alone where its audio and visual were scored ahead (with
        the tracks it still has), else all three in one request."""
        assert self.info is not None  # windows are cut once the source is open
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
            await self._wait_for(lambda: self._voices_ready(t1))
            # At real-time pace a window waits only briefly for speech recognition and uses the unconfirmed
            # words for its tail; a file replayed as fast as possible waits for every word.
            await self._wait_for(lambda: self._asr_ready(t1), self.config.asr_grace_s if self.realtime else None)
            spans = [(index, t0, t1)] + ([] if self.realtime else self._ready_spans_after(REPLAY_WINDOW_BATCH - 1))
            await self._emit_windows(spans)
            for _ in spans:
                self.schedule.advance()
            await self._notify()
        # the end of the media: the last words, the last frames, then a closing window over what is left
        await self._wait_for(lambda: self._asr_ready(self.audio_end) and self._frames_ready(float("inf"))
                             and self._voices_ready(float("inf")))
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
        voices = [self._voices_in(window) for window in windows]
        all_scores, own_scores = await asyncio.gather(
            asyncio.gather(*(self._scores_of(window) for window in windows)),
            asyncio.gather(*(self._own_scores(window, heard) for window, heard in zip(windows, voices))))
        for window, scores, behind, heard, own in zip(windows, all_scores, words_behind, voices, own_scores):
            if behind is not None and "text" in scores and not scores["text"].available:
                scores = {**scores, "text": ModalityScore.missing(
                    f"words not in yet (speech recognition {behind:.1f} s behind)")}
            language, language_p = window.language, self.speech.probability(window.language)
            spoken = self.speech.language
            if spoken is not None and spoken.outside is not None and not window.transcript and "text" in scores:
                # no words because the speech is in a language outside the allowed ones: say which, and why
                language, language_p = spoken.outside
                scores = {**scores, "text": ModalityScore.missing(spoken.outside_reason or "")}
            fused = self.engine.scorers.fuse(scores)
            self.rolling.update(fused.score, window.t_end, fused.certainty)
            self.overall.add(scores)
            self.emit(WindowMessage(
                stream=self.stream_id, index=window.index, t_start=round(window.t_start, 3),
                t_end=round(window.t_end, 3),
                modalities=cast(Modalities, {m: s.to_json() for m, s in scores.items()}),
                fused=cast(FusedVerdict, fused.to_json()),
                rolling=rolling_json(self.rolling),
                transcript=window.transcript,
                latency_s=self._latency(window.t_end),
                language=language,
                language_p=language_p,
                speakers=self._speakers_in(window),
                people=self._people_in(window, scores, heard, own),
            ))
            # what observers queued after this window (an alert it raised) goes out before the next window
            await asyncio.sleep(0)

    def _speakers_in(self, window: Window) -> list[SpeakerShare] | None:
        """Who spoke in the window and how long, as the voices know it now; None where voices are not tracked."""
        if self.voices is None:
            return None
        found = self.voices.speakers_in(window.t_start, window.t_end)
        return [{"speaker": k, "seconds": round(v, 2)} for k, v in sorted(found.items())]

    def _voices_in(self, window: Window) -> WindowVoices | None:
        """The voices of a window as they are known now: each one's seconds, their stretches (with the speech of
        the seconds before, for a voice with too little of it in the window), each word's speaker."""
        if self.voices is None:
            return None
        t0, t1 = window.t_start, window.t_end
        return WindowVoices(self.voices.speakers_in(t0, t1), self.voices.segments_in(t0 - PERSON_AUDIO_BEFORE_S, t1),
                            [self.voices.speaker_of(w.start, w.end) for w in window.words + window.pending_words])

    async def _own_scores(self, window: Window, heard: WindowVoices | None) -> dict[int, dict[str, ModalityScore]]:
        """The text of each voice's own words and the sound of its own speech, for a window where several voices
        spoke (a window with one voice lends its own scores to its speaker: engine/people.py)."""
        speaking = [k for k, s in (heard.seconds if heard is not None else {}).items() if s > 0]
        if heard is None or len(speaking) < 2:
            return {}
        committed = len(window.words)
        parts, asked = [], []
        for voice in speaking:
            said = [i for i, k in enumerate(heard.word_speakers) if k == voice]
            audio = voice_audio(self.ring.read, heard.segments, voice, window.t_start, window.t_end)
            parts.append(Window(index=window.index, t_start=window.t_start, t_end=window.t_end, audio=audio,
                                frames=[], words=[window.words[i] for i in said if i < committed],
                                pending_words=[window.pending_words[i - committed] for i in said if i >= committed]))
            asked.append(("text", "audio") if len(audio) >= MIN_SCORED_S * SAMPLE_RATE else ("text",))
        scored = await asyncio.gather(*(self.engine.score_window(self, part, True, False, modalities)
                                        for part, modalities in zip(parts, asked)))
        for part, scores in zip(parts, scored):
            scores.setdefault("audio", ModalityScore.missing(
                f"too little of their speech to score ({len(part.audio) / SAMPLE_RATE:.1f} s < "
                f"{MIN_SCORED_S:.0f} s)"))
        return dict(zip(speaking, scored))

    def _people_in(self, window: Window, scores: dict[str, ModalityScore], heard: WindowVoices | None,
                   own: dict[int, dict[str, ModalityScore]]) -> list[PersonVerdict] | None:
        """Each person seen or heard in the window with their own verdicts (engine/people.py); None where the
        stream has neither video nor tracked voices."""
        assert self.info is not None  # windows are cut once the source is open
        if not self.info.has_video and heard is None:
            return None
        settled = self.voices.settled_until if self.voices is not None else window.t_end
        return self.people.window_people(window.t_start, window.t_end, window.frames, scores, heard, settled, own)

    def _words_behind(self, window: Window) -> float | None:
        """How far speech recognition is behind the end of a live window that goes out without any words (after
        its grace), or None: its text is then missing because its words are late, not because nobody spoke."""
        if not self.realtime or window.transcript or self._asr_ready(window.t_end):
            return None
        return window.t_end - self.speech.heard_until

    def _latency(self, t1: float) -> float | None:
        """Wall seconds since the window's last media arrived (only meaningful at real-time pace)."""
        for watermark, wall in self._arrivals:
            if watermark >= t1 - 1e-6:
                return round(time.monotonic() - wall, 3)
        return None

    @property
    def dropped_frames(self) -> int:
        """Sampled frames dropped by policy: waiting for the visual scorer, or at the source itself."""
        return self.frames.dropped + self.source.dropped_frames

    @property
    def lag_s(self) -> float:
        """Media seconds received but not yet covered by a sent window, beyond one hop."""
        return round(max(0.0, self.watermark - self.schedule.next_span()[2]), 3)

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.status_every_s)
            language = self.speech.language
            self.emit(StatusMessage(self.stream_id, self.state, self.lag_s, self.dropped_frames,
                                    round(self.watermark, 3),
                                    language=None if language is None else cast(StreamLanguage, language.to_json())))

    def _summary(self) -> EndSummary:
        modalities = self.overall.modalities()
        fused: FusedScore = self.engine.scorers.fuse(modalities)
        return cast(EndSummary, {
            "reason": self.end_reason,
            "source": self.info.to_json() if self.info else None,
            "duration": round(self._media_end(), 3),
            "windows": self.overall.windows,
            "score": None if fused.score is None else round(fused.score, 4),
            "label": fused.label,
            "graded": fused.graded,
            "fused": fused.to_json(),
            "rolling": rolling_json(self.rolling),
            "modalities": {m: s.to_json() for m, s in modalities.items()},
            "dropped_frames": self.dropped_frames,
            "transcript": self.speech.transcript,
            "people": self.people.summary(self.frames.people.summary()),
            "languages": self.speech.language_shares,
            "speakers": self.voices.speakers() if self.voices is not None else [],
        })


def language_detail(state: SpokenLanguage) -> str:
    """A status line's words for a change of a stream's language."""
    if state.outside is not None:
        return f"{state.outside_reason}: not transcribed"
    was = f", was {language_name(state.previous)}" if state.previous else ""
    p = f" (p={state.p:.2f})" if state.p is not None else ""
    return f"language changed to {language_name(state.language)}{p} from {state.since:.1f} s{was}"
