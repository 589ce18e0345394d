"""Media sources: a file replayed as a stream, or a live RTSP URL. Each yields timestamped 16 kHz mono audio chunks
and sampled RGB video frames, knowing nothing about models or websockets.

Decoding is blocking (PyAV), so it runs in a worker thread one small batch at a time: the consumer pulls, which gives
backpressure for files, and every open and read of a network source is guarded by timeouts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import threading
import time
import traceback
import weakref
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import AsyncIterator, Generator
from urllib.parse import urlsplit

import av
import numpy as np

from protocol import CodedError
from stream.media import SAMPLE_RATE, AudioChunk, VideoFrame
from stream.rtsp_relay import RefusedRedirect, RtspRelay, camera_address, relayed_url

log = logging.getLogger(__name__)

# Frames are scaled down so their longer side is at most this many pixels: enough for face detection and the
# scene model, and it keeps the frame buffers small.
MAX_FRAME_SIDE = 640
AUDIO_BATCH_S = 0.1  # resampled audio is handed on in chunks of about this length
FILE_AUDIO_RESYNC_S = 0.5  # audio this far from its expected time (packets lost to damage): keep the gap a gap
MAX_UNDECODABLE_S = 10.0  # a track that decodes nothing for this much media is broken, not damaged in places
MAX_CONSECUTIVE_DECODE_ERRORS = 1000  # the same, for packets without time stamps
# Frame threads of a video decoder. FFmpeg's default is one per core plus one (16 at most): on a 16-core server that
# is 16 threads and about 70 MiB per 1080p stream, and as many frames of delay on a live one, to sample 2 frames a
# second. Two decode 1080p as fast as its default did on a shared 2-core CPU (7x real time; one thread: 4.4x).
VIDEO_DECODER_THREADS = 2
# FFmpeg renders any text file as video through these demuxers; a text file is never what a user meant to analyse.
TEXT_FORMATS = {"tty", "srt", "ass", "webvtt", "subviewer", "microdvd", "jacosub", "sami", "lrc"}


class SourceError(CodedError):
    """A source could not be opened or read. `code` is stable and goes into the protocol's `error` message."""


@dataclass(frozen=True)
class SourceInfo:
    kind: str  # "file", "rtsp" or "webrtc"
    name: str
    has_audio: bool
    has_video: bool
    duration: float | None  # seconds, None for live sources
    width: int | None = None
    height: int | None = None
    fps: float | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class SourceEvent:
    """Something the source wants subscribers told: reconnecting, reconnected."""

    state: str
    detail: str


def _frame_size(width: int, height: int) -> tuple[int, int]:
    scale = min(1.0, MAX_FRAME_SIDE / max(width, height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


class MonoResampler:
    """Audio frames → 16 kHz mono float32 frames: av.AudioResampler's filter graph (abuffer → aformat → abuffersink,
    the same samples out), on one thread. FFmpeg gives a filter graph a thread per core by default, which these
    filters never use: 16 idle threads per stream on a 16-core server."""

    def __init__(self):
        self._graph: av.filter.Graph | None = None
        self._input: tuple[str, str, int] | None = None  # the format, layout and rate the graph was built for

    def resample(self, frame: av.AudioFrame | None) -> list[av.AudioFrame]:
        """The frames one input frame completes; None flushes what the graph still holds (at the end)."""
        if frame is None and self._graph is None:
            return []
        if frame is not None:
            given = (frame.format.name, frame.layout.name, frame.sample_rate)
            if self._graph is None:
                self._graph, self._input = self._build(frame), given
            elif given != self._input:  # as av.AudioResampler: a graph is built for one input
                raise ValueError(f"the audio changed from {self._input} to {given} mid-stream")
        self._graph.push(frame)
        out = []
        while True:
            try:
                out.append(self._graph.pull())
            except EOFError:
                break
            except av.error.FFmpegError as exc:
                if exc.errno != errno.EAGAIN:
                    raise
                break
        return out

    @staticmethod
    def _build(frame: av.AudioFrame) -> av.filter.Graph:
        graph = av.filter.Graph()
        graph.threads = 1
        time_base = {"time_base": str(frame.time_base)} if frame.time_base is not None else {}
        source = graph.add("abuffer", sample_rate=str(frame.sample_rate), sample_fmt=frame.format.name,
                           channel_layout=frame.layout.name, **time_base)
        convert = graph.add("aformat", sample_rates=str(SAMPLE_RATE), sample_fmts="flt", channel_layouts="mono")
        sink = graph.add("abuffersink")
        source.link_to(convert)
        convert.link_to(sink)
        graph.configure()
        return graph


class AudioConverter:
    """Decoded audio frames of any rate and layout → 16 kHz mono float32 AudioChunks of about AUDIO_BATCH_S.

    Media time counts resampled samples from the first frame's time. With `resync_s`, a frame whose own time is
    that far from the count (a live source that lost packets) restarts the count at the frame's time, so a gap
    stays a gap (the AudioRing fills it with silence) instead of shifting everything after it.
    """

    def __init__(self, resync_s: float | None = None):
        self._resampler = MonoResampler()
        self.resync_s = resync_s
        self._t: float | None = None  # media time of the next resampled sample
        self._pending: list[np.ndarray] = []
        self._pending_t: float | None = None

    def _flush(self) -> list[AudioChunk]:
        if not self._pending:
            return []
        chunk = AudioChunk(self._pending_t, np.concatenate(self._pending))
        self._pending = []
        self._pending_t = None
        return [chunk]

    def push(self, frame: av.AudioFrame, t: float) -> list[AudioChunk]:
        """The chunks completed by one decoded frame shown at media time t."""
        out: list[AudioChunk] = []
        if self._t is None:
            self._t = t
        elif self.resync_s is not None and abs(t - self._t) > self.resync_s:
            out += self._flush()
            self._t = t
        return out + self._resample(frame)

    def flush(self) -> list[AudioChunk]:
        """What the resampler still holds, at the end of the media."""
        if self._t is None:
            return []
        return self._resample(None) + self._flush()

    def _resample(self, frame: av.AudioFrame | None) -> list[AudioChunk]:
        out: list[AudioChunk] = []
        for resampled in self._resampler.resample(frame):
            samples = resampled.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            if self._pending_t is None:
                self._pending_t = self._t
            self._pending.append(samples)
            self._t += len(samples) / SAMPLE_RATE
            if self._t - self._pending_t >= AUDIO_BATCH_S:
                out += self._flush()
        return out


class FrameSampler:
    """Decoded video frames → RGB VideoFrames at `sample_fps` of media time, scaled to at most MAX_FRAME_SIDE.

    The scaled size follows the source's size, which a live source may change mid-stream (browsers adapt their
    resolution to bandwidth and CPU)."""

    def __init__(self, sample_fps: float):
        self.sample_period = 1.0 / sample_fps
        self._next_t = 0.0
        self._sizes: dict[tuple[int, int], tuple[int, int]] = {}

    def sample(self, frame: av.VideoFrame, t: float) -> VideoFrame | None:
        if t + 1e-6 < self._next_t:
            return None
        self._next_t = max(self._next_t + self.sample_period, t + self.sample_period / 2)
        source_size = (frame.width, frame.height)
        if source_size not in self._sizes:
            self._sizes[source_size] = _frame_size(*source_size)
        width, height = self._sizes[source_size]
        image = frame.to_ndarray(format="rgb24", width=width, height=height)
        # A phone stores its picture as the sensor saw it and says in the display matrix how to turn it upright;
        # FFmpeg's decoder leaves that to the player, and the face detector only finds upright faces.
        quarter_turns = round(frame.rotation / 90) % 4  # frame.rotation: degrees counter-clockwise
        if quarter_turns:
            image = np.ascontiguousarray(np.rot90(image, quarter_turns))
        return VideoFrame(t, image)


def sample_video(path: str | Path, sample_fps: float, max_frames: int | None = None) -> list[VideoFrame]:
    """The frames the live pipeline samples from a file's video (FrameSampler on media time), decoded at once; none
    when it has no video. For measurements and scripts: a stream decodes through FileSource."""
    frames: list[VideoFrame] = []
    with av.open(str(path)) as container:
        if not container.streams.video:
            return frames
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        sampler, origin = FrameSampler(sample_fps), None
        for frame in container.decode(stream):
            if frame.pts is None or frame.time_base is None:
                continue
            t = float(frame.pts * frame.time_base)
            origin = t if origin is None else origin
            item = sampler.sample(frame, t - origin)
            if item is not None:
                frames.append(item)
                if max_frames is not None and len(frames) >= max_frames:
                    break
    return frames


class _Decoder:
    """Demuxes and decodes one opened container into AudioChunk / VideoFrame items (blocking).

    What FFmpeg holds for it (the demuxer; each track's decoder with its frame threads and frame buffers; the audio
    resampler's graph) is freed by `close`, or when the last reference to the decoder goes, never left to Python's
    cyclic garbage collector: PyAV frees a track's decoder only with the last reference to its Stream, so a closed
    decoder drops its streams and its items generator, and that generator refers to the decoder weakly.
    """

    def __init__(self, container: av.container.InputContainer, sample_fps: float, time_offset: float = 0.0):
        self.container = container
        self.audio_stream = container.streams.audio[0] if container.streams.audio else None
        self.video_stream = container.streams.video[0] if container.streams.video else None
        if self.audio_stream is None and self.video_stream is None:
            raise SourceError("no_media_streams", "the source has neither an audio nor a video track")
        if self.video_stream is not None:
            self.video_stream.thread_type = "AUTO"
            self.video_stream.codec_context.thread_count = VIDEO_DECODER_THREADS
        self.time_offset = time_offset
        self._origin: float | None = None
        self._audio: AudioConverter | None = AudioConverter(resync_s=FILE_AUDIO_RESYNC_S)
        self._frames = FrameSampler(sample_fps)
        # a generator of a bound method would hold the decoder in a reference cycle with it
        self._items: Generator[AudioChunk | VideoFrame, None, None] | None = _Decoder._iterate(weakref.proxy(self))
        self.last_t = time_offset
        self.decode_errors = 0
        self._lock = threading.Lock()  # one of read_batch (worker thread) or close at a time
        self._closed = False

    def _media_time(self, pts: int | None, time_base: tuple[int, int] | None) -> float | None:
        if pts is None or time_base is None:
            return None
        t = pts * time_base[0] / time_base[1]  # as float(pts * Fraction) rounds it, without making Fractions
        if self._origin is None:
            self._origin = t
        return t - self._origin + self.time_offset

    def _audio_items(self, frame: av.AudioFrame, time_base: tuple[int, int] | None) -> list[AudioChunk]:
        t = self._media_time(frame.pts, time_base)
        return self._audio.push(frame, max(t if t is not None else self.time_offset, self.time_offset))

    def _video_item(self, frame: av.VideoFrame, time_base: tuple[int, int] | None) -> VideoFrame | None:
        t = self._media_time(frame.pts, time_base)
        return None if t is None else self._frames.sample(frame, t)

    def _iterate(self) -> Generator[AudioChunk | VideoFrame, None, None]:
        streams = [s for s in (self.audio_stream, self.video_stream) if s is not None]
        # a track's time base, read once: PyAV makes a new Fraction at every read of a packet's or frame's, and
        # a decoded frame keeps its track's
        time_bases = {s.index: (s.time_base.numerator, s.time_base.denominator) if s.time_base else None
                      for s in streams}
        consecutive_errors = 0
        last_decoded: dict[int, float] = {}  # track index → time of its last packet that decoded (or its first)
        for packet in self.container.demux(*streams):
            time_base = time_bases.get(packet.stream_index)
            t = packet.pts * time_base[0] / time_base[1] if packet.pts is not None and time_base else None
            try:
                frames = packet.decode()
                consecutive_errors = 0
                if t is not None:
                    last_decoded[packet.stream_index] = t
            except av.error.FFmpegError as exc:
                # a corrupt packet: skip it, as players do, unless a track has been nothing but errors for a while
                self.decode_errors += 1
                consecutive_errors += 1
                since = t - last_decoded.setdefault(packet.stream_index, t) if t is not None else 0.0
                if since > MAX_UNDECODABLE_S or consecutive_errors > MAX_CONSECUTIVE_DECODE_ERRORS:
                    raise SourceError("corrupt_media", f"the media stopped decoding ({exc.strerror or exc})") from exc
                continue
            for frame in frames:
                if isinstance(frame, av.AudioFrame):
                    yield from self._audio_items(frame, time_base)
                elif isinstance(frame, av.VideoFrame):
                    item = self._video_item(frame, time_base)
                    if item is not None:
                        yield item
        yield from self._audio.flush()

    def read_batch(self, max_media_s: float = 0.25, max_items: int = 64) -> list[AudioChunk | VideoFrame] | None:
        """Decode the next few items (about max_media_s of media); None at the end of the media (or once closed)."""
        with self._lock:
            if self._closed:
                return None
            batch: list[AudioChunk | VideoFrame] = []
            start_t = None
            try:
                for item in self._items:
                    batch.append(item)
                    t = item.t_end if isinstance(item, AudioChunk) else item.t
                    self.last_t = max(self.last_t, t)
                    start_t = t if start_t is None else start_t
                    if len(batch) >= max_items or t - start_t >= max_media_s:
                        return batch
            except BaseException as exc:
                # the traceback keeps the ended generator's frame, whose locals (the tracks, the last packet) would
                # keep the FFmpeg decoders alive for as long as the error is kept (a task's exception, in a cycle)
                traceback.clear_frames(exc.__traceback__)
                raise
            return batch or None

    def close(self) -> None:
        """Blocking: waits for a read_batch in flight, since FFmpeg crashes on a container closed under a decode.
        From the event loop, call `await close_decoder(decoder)`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._release()

    def __del__(self) -> None:
        # A decoder nobody closed (its open was cancelled, its source dropped): PyAV's container and its streams
        # refer to each other, so they would wait for the cyclic garbage collector. Nothing else can hold it now.
        if not getattr(self, "_closed", True):
            self._closed = True
            self._release()

    def _release(self) -> None:
        """Free the demuxer, the decoders and their threads now. Closing the container frees only the demuxer:
        each track's decoder goes with the last reference to its Stream (ours, and the generator's locals)."""
        items, self._items = self._items, None
        items.close()  # a generator: its locals go now
        try:
            self.container.close()
        except Exception:  # closing a broken network container can fail; nothing is left to release
            pass
        self.audio_stream = self.video_stream = None
        self._audio = None  # its resampler's filter graph


async def close_decoder(decoder: _Decoder) -> None:
    """Close a decoder off the event loop (a batch may still be decoding in a worker thread)."""
    await asyncio.to_thread(decoder.close)


def _open_container(url: str, options: dict | None = None, timeout=None) -> av.container.InputContainer:
    return av.open(url, mode="r", options=options or {}, timeout=timeout)


class MediaSource:
    """Base: `await open()` → SourceInfo, then `async for item in source` (AudioChunk | VideoFrame | SourceEvent)."""

    kind = "source"
    realtime = True  # a live source, or a file replayed at real-time pace
    end_reason = "eof"  # why the items ended when they end without an error ("stopped": the peer hung up)
    dropped_frames = 0  # sampled frames the source itself dropped because the pipeline did not take them

    async def open(self) -> SourceInfo:
        raise NotImplementedError

    def __aiter__(self) -> AsyncIterator[AudioChunk | VideoFrame | SourceEvent]:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class FileSource(MediaSource):
    """A media file replayed at real-time pace (realtime=True, the server's default) or as fast as decoding goes."""

    kind = "file"

    def __init__(self, path: str | Path, *, realtime: bool = True, sample_fps: float = 2.0, name: str | None = None,
                 loops: int = 1):
        """name: how messages call the file (the server passes the client's own relative spec, so no message shows
        where its media folder is); loops: play the file this many times over with continuous media time (a demo
        or a soak)."""
        self.path = Path(path)
        self.name = name or str(path)
        self.realtime = realtime
        self.sample_fps = sample_fps
        self.loops = max(1, int(loops))
        self._decoder: _Decoder | None = None
        self.info: SourceInfo | None = None

    def _open_blocking(self, time_offset: float = 0.0) -> _Decoder:
        path, name = self.path, self.name
        try:
            if not path.exists():
                if len(urlsplit(name).scheme) > 1:  # a Windows drive letter is not a scheme
                    raise SourceError("bad_url", f"{redact_url(name)} is a URL, not a file: give a file path")
                raise SourceError("not_found", f"no such file: {name}")
            if path.is_dir():
                raise SourceError("not_a_file", f"{name} is a directory, not a media file")
            if not os.access(path, os.R_OK):
                raise SourceError("unreadable", f"{name} cannot be read (permission denied)")
            if path.stat().st_size == 0:
                raise SourceError("empty_file", f"{name} is empty (0 bytes)")
        except OSError as exc:  # a folder on the way that may not be entered
            raise SourceError("unreadable", f"{name} cannot be read ({exc.strerror or exc})") from exc
        try:
            container = _open_container(str(path))
        except PermissionError as exc:
            # os.access answers for the real user, not the rights the open really has (a root without the
            # capability to override file modes, ACLs, security modules)
            raise SourceError("unreadable", f"{name} cannot be read ({exc.strerror or exc})") from exc
        except av.error.FFmpegError as exc:
            raise SourceError("not_media", f"{name} is not a readable audio/video file ({exc.strerror or exc})") from exc
        except OSError as exc:
            raise SourceError("unreadable", f"{name} cannot be read ({exc.strerror or exc})") from exc
        if container.format.name in TEXT_FORMATS:
            container.close()
            raise SourceError("not_media", f"{name} is a text file, not audio or video")
        try:
            return _Decoder(container, self.sample_fps, time_offset=time_offset)
        except SourceError:
            container.close()
            raise

    async def open(self) -> SourceInfo:
        self._decoder = await asyncio.to_thread(self._open_blocking)
        self.info = _describe(self._decoder, "file", self.path.name, live=False)
        if self.info.duration is not None and self.loops > 1:
            self.info = dataclasses.replace(self.info, duration=self.info.duration * self.loops)
        return self.info

    async def __aiter__(self):
        if self._decoder is None:
            await self.open()
        decoder = self._decoder
        wall_start = time.monotonic()
        played = 1
        try:
            while True:
                try:
                    batch = await asyncio.to_thread(decoder.read_batch)
                except SourceError:
                    raise
                except av.error.FFmpegError as exc:
                    raise SourceError("corrupt_media", f"{self.name} stopped decoding: {exc}") from exc
                if batch is None:
                    if played >= self.loops:
                        return
                    played += 1
                    # the next pass starts where this one's media ended (the longer of its audio and video)
                    offset = decoder.last_t
                    await close_decoder(decoder)
                    decoder = self._decoder = await asyncio.to_thread(self._open_blocking, offset)
                    continue
                for item in batch:
                    if self.realtime:
                        ready_t = item.t_end if isinstance(item, AudioChunk) else item.t
                        delay = wall_start + ready_t - time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    yield item
        finally:
            await close_decoder(decoder)

    async def close(self) -> None:
        if self._decoder is not None:
            await close_decoder(self._decoder)


def _describe(decoder: _Decoder, kind: str, name: str, live: bool) -> SourceInfo:
    container = decoder.container
    video = decoder.video_stream
    duration = None
    if not live and container.duration:
        duration = container.duration / av.time_base
    fps = None
    if video is not None and video.average_rate:
        fps = float(Fraction(video.average_rate))
    return SourceInfo(
        kind=kind, name=name, has_audio=decoder.audio_stream is not None, has_video=video is not None,
        duration=duration, width=video.codec_context.width if video is not None else None,
        height=video.codec_context.height if video is not None else None, fps=fps,
    )


def redact_url(url: str) -> str:
    """The URL without credentials, for logs and messages."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        # everything after the last "@" of the netloc is host[:port], whatever the port looks like
        return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    return url


def _close_when_opened(opening: asyncio.Future) -> None:
    """Closes the decoder an abandoned open returned (off the loop: closing waits for FFmpeg)."""
    if not opening.cancelled() and opening.exception() is None:
        asyncio.get_running_loop().run_in_executor(None, opening.result().close)


class RtspSource(MediaSource):
    """A live RTSP stream read over TCP with PyAV. Every open and read has a timeout; a dropped connection is retried
    with exponential backoff until `give_up_s` passes without media, then the source ends with SourceError('source_lost').

    Media time continues across reconnects from where the last connection stopped, so windows stay contiguous.

    FFmpeg reaches the camera only through an RtspRelay on loopback (one per source, kept across reconnects), which
    connects to the URL's own host and port and refuses RTSP redirects: a camera that redirects ends the source with
    SourceError('not_allowed').
    """

    kind = "rtsp"
    realtime = True

    def __init__(self, url: str, *, sample_fps: float = 2.0, open_timeout_s: float = 5.0, read_timeout_s: float = 5.0,
                 give_up_s: float = 30.0, backoff_s: tuple[float, float] = (0.5, 8.0)):
        if urlsplit(url).scheme not in ("rtsp", "rtsps"):
            raise SourceError("bad_url", f"not an RTSP URL: {redact_url(url)}")
        try:
            self._camera = camera_address(url)
        except ValueError:
            raise SourceError("bad_url", f"no usable host and port in {redact_url(url)}") from None
        self.url = url
        self.sample_fps = sample_fps
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.give_up_s = give_up_s
        self.backoff_s = backoff_s
        self._decoder: _Decoder | None = None
        self._relay: RtspRelay | None = None
        self.info: SourceInfo | None = None

    def _redirect_error(self, refused: RefusedRedirect) -> SourceError:
        target = ""
        if refused.location:
            try:
                shown = redact_url(refused.location)
            except ValueError:
                shown = "not a URL"
            # printable ASCII only, cut after redaction (a cut could hide credentials from it)
            target = " (" + "".join(c for c in shown if " " <= c <= "~")[:200] + ")"
        return SourceError("not_allowed", f"{redact_url(self.url)} redirected to another address{target}; vidsent does "
                                          "not follow RTSP redirects: give the final URL")

    def _connect_blocking(self, relay: RtspRelay, time_offset: float) -> _Decoder:
        try:
            container = _open_container(relayed_url(self.url, relay.port), options={"rtsp_transport": "tcp"},
                                        timeout=(self.open_timeout_s, self.read_timeout_s))
        except (av.error.FFmpegError, OSError) as exc:
            if relay.refused is not None:
                raise self._redirect_error(relay.refused) from exc
            # the exception's text repeats the URL, credentials included: keep only its reason. FFmpeg only saw the
            # relay close; the relay knows why the camera could not be reached.
            reason = relay.upstream_failure() or getattr(exc, "strerror", None) or type(exc).__name__
            raise SourceError("unreachable", f"cannot open {redact_url(self.url)}: {reason}") from exc
        try:
            return _Decoder(container, self.sample_fps, time_offset=time_offset)
        except SourceError:
            container.close()
            raise

    async def _connect(self, time_offset: float) -> _Decoder:
        if self._relay is None:
            host, port, tls = self._camera
            relay = RtspRelay(host, port, tls=tls, connect_timeout_s=self.open_timeout_s)
            await relay.start()
            self._relay = relay
        relay = self._relay
        try:
            await asyncio.wait_for(relay.resolve(), self.open_timeout_s)
        except (OSError, asyncio.TimeoutError) as exc:
            reason = "its host name did not resolve in time" if isinstance(exc, asyncio.TimeoutError) else \
                f"its host name did not resolve ({getattr(exc, 'strerror', None) or type(exc).__name__})"
            raise SourceError("unreachable", f"cannot open {redact_url(self.url)}: {reason}") from exc
        # PyAV's own timeout interrupts a stuck open; the outer wait is a second guard in case it does not.
        loop = asyncio.get_running_loop()
        opening = loop.run_in_executor(None, self._connect_blocking, relay, time_offset)
        try:
            return await asyncio.wait_for(asyncio.shield(opening), timeout=self.open_timeout_s * 2 + 5)
        except (asyncio.CancelledError, asyncio.TimeoutError):
            # a stop (or the guard) came first: the open goes on in its thread, and what it opens is closed after it
            opening.add_done_callback(_close_when_opened)
            raise

    async def _close_relay(self) -> None:
        relay, self._relay = self._relay, None
        if relay is not None:
            await relay.close()

    async def open(self) -> SourceInfo:
        try:
            self._decoder = await self._connect(0.0)
        except BaseException:
            await self._close_relay()
            raise
        self.info = _describe(self._decoder, "rtsp", redact_url(self.url), live=True)
        return self.info

    async def __aiter__(self):
        if self._decoder is None:
            await self.open()
        decoder = self._decoder
        last_media = time.monotonic()
        attempt = 0
        try:
            while True:
                if decoder is None:
                    if time.monotonic() - last_media > self.give_up_s:
                        raise SourceError("source_lost", f"{redact_url(self.url)} gave no media for {self.give_up_s:.0f} s")
                    attempt += 1
                    delay = min(self.backoff_s[1], self.backoff_s[0] * 2 ** (attempt - 1))
                    yield SourceEvent("reconnecting", f"reconnecting in {delay:.1f} s")
                    await asyncio.sleep(delay)
                    try:
                        decoder = await self._connect(self._last_t)
                        self._decoder = decoder
                        yield SourceEvent("reconnected", f"reconnected after {attempt} attempt(s)")
                        attempt = 0
                    except (SourceError, asyncio.TimeoutError) as exc:
                        if isinstance(exc, SourceError) and exc.code == "not_allowed":
                            raise  # the camera now redirects: trying again would not change that
                        log.info("RTSP reconnect %d failed: %s", attempt, exc)
                    continue
                try:
                    batch = await asyncio.wait_for(asyncio.to_thread(decoder.read_batch),
                                                   timeout=self.read_timeout_s * 2 + 5)
                except (av.error.FFmpegError, OSError, asyncio.TimeoutError, SourceError) as exc:
                    log.info("RTSP read failed: %s", exc)
                    batch = None
                if batch is None:  # the server hung up or stopped sending
                    if self._relay is not None and self._relay.refused is not None:
                        raise self._redirect_error(self._relay.refused)
                    self._last_t = decoder.last_t
                    # a read may still hang in its worker thread until FFmpeg's own timeout: close after it, and
                    # do not wait for that to reconnect
                    asyncio.get_running_loop().run_in_executor(None, decoder.close)
                    decoder = self._decoder = None
                    continue
                last_media = time.monotonic()
                self._last_t = decoder.last_t
                for item in batch:
                    yield item
        finally:
            if decoder is not None:
                await close_decoder(decoder)
            await self._close_relay()

    _last_t = 0.0

    async def close(self) -> None:
        if self._decoder is not None:
            await close_decoder(self._decoder)
        await self._close_relay()


def open_source(spec: str, *, realtime: bool = True, sample_fps: float = 2.0, name: str | None = None,
                **rtsp_options) -> MediaSource:
    """A source for a file path or an rtsp:// URL (rtsp_options: RtspSource's timeouts and give-up time; name: how
    a file's messages call it)."""
    scheme = urlsplit(spec).scheme.lower()
    if scheme in ("rtsp", "rtsps"):
        return RtspSource(spec, sample_fps=sample_fps, **rtsp_options)
    if scheme and len(scheme) > 1:  # a Windows drive letter is not a scheme
        raise SourceError("bad_url", f"unsupported source scheme {scheme!r}: give a file path or an rtsp:// URL")
    return FileSource(spec, realtime=realtime, sample_fps=sample_fps, name=name)
