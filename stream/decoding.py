"""Decoding with PyAV, one small batch at a time in a worker thread: audio resampled to 16 kHz mono chunks on media
time, video frames sampled at the pipeline's rate and scaled down, damaged media survived where it can be, and
containers closed only when no decode runs in them."""

from __future__ import annotations

import asyncio
import errno
import threading
import traceback
import weakref
from collections.abc import Generator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from media import SAMPLE_RATE, AudioChunk, VideoFrame
from stream.base import FrameRate, SourceError, SourceInfo

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


def _frame_size(width: int, height: int) -> tuple[int, int]:
    scale = min(1.0, MAX_FRAME_SIDE / max(width, height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def frame_image(frame: av.VideoFrame, size: tuple[int, int] | None = None) -> np.ndarray:
    """A decoded frame as the pipeline looks at it: RGB, scaled to `size` (default: its longer side at most
    MAX_FRAME_SIDE) and turned upright."""
    width, height = size or _frame_size(frame.width, frame.height)
    image: np.ndarray = frame.to_ndarray(format="rgb24", width=width, height=height)
    # A phone stores its picture as the sensor saw it and says in the display matrix how to turn it upright;
    # FFmpeg's decoder leaves that to the player, and the face detector only finds upright faces.
    quarter_turns = round(frame.rotation / 90) % 4  # frame.rotation: degrees counter-clockwise
    if quarter_turns:
        image = np.ascontiguousarray(np.rot90(image, quarter_turns))
    return image


class MonoResampler:
    """Audio frames → 16 kHz mono float32 frames: av.AudioResampler's filter graph (abuffer → aformat → abuffersink,
    the same samples out), on one thread. FFmpeg gives a filter graph a thread per core by default, which these
    filters never use: 16 idle threads per stream on a 16-core server."""

    def __init__(self) -> None:
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
        assert self._graph is not None  # built for the first frame; without one a flush returned above
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
        return out  # type: ignore[return-value]  # an audio graph's sink gives AudioFrames; av types pull() for both

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
        assert self._pending_t is not None  # set with the first pending samples
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
        assert self._t is not None  # push sets it before the first frame; flush returns before it is set
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
    """Decoded video frames → RGB VideoFrames at `rate` frames a second of media time, scaled to at most
    MAX_FRAME_SIDE.

    The scaled size follows the source's size, which a live source may change mid-stream (browsers adapt their
    resolution to bandwidth and CPU)."""

    def __init__(self, rate: float | FrameRate):
        self.rate = rate if isinstance(rate, FrameRate) else FrameRate(rate)
        self._next_t = 0.0
        self._sizes: dict[tuple[int, int], tuple[int, int]] = {}

    def sample(self, frame: av.VideoFrame, t: float) -> VideoFrame | None:
        if t + 1e-6 < self._next_t:
            return None
        period = 1.0 / self.rate.fps
        self._next_t = max(self._next_t + period, t + period / 2)
        source_size = (frame.width, frame.height)
        if source_size not in self._sizes:
            self._sizes[source_size] = _frame_size(*source_size)
        return VideoFrame(t, frame_image(frame, self._sizes[source_size]))


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


class Decoder:
    """Demuxes and decodes one opened container into AudioChunk / VideoFrame items (blocking).

    What FFmpeg holds for it (the demuxer; each track's decoder with its frame threads and frame buffers; the audio
    resampler's graph) is freed by `close`, or when the last reference to the decoder goes, never left to Python's
    cyclic garbage collector: PyAV frees a track's decoder only with the last reference to its Stream, so a closed
    decoder drops its streams and its items generator, and that generator refers to the decoder weakly.
    """

    def __init__(self, container: av.container.InputContainer, rate: float | FrameRate, time_offset: float = 0.0):
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
        self._frames = FrameSampler(rate)
        # a generator of a bound method would hold the decoder in a reference cycle with it
        self._items: Generator[AudioChunk | VideoFrame, None, None] | None = Decoder._iterate(weakref.proxy(self))
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
        assert self._audio is not None  # dropped only when the decoder is released, after its last item
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
        assert self._audio is not None  # dropped only when the decoder is released, after its last item
        yield from self._audio.flush()

    def read_batch(self, max_media_s: float = 0.25, max_items: int = 64) -> list[AudioChunk | VideoFrame] | None:
        """Decode the next few items (about max_media_s of media); None at the end of the media (or once closed)."""
        with self._lock:
            if self._closed:
                return None
            batch: list[AudioChunk | VideoFrame] = []
            start_t = None
            assert self._items is not None  # dropped only with _closed set
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
        assert items is not None  # released once: _closed guards it
        items.close()  # a generator: its locals go now
        try:
            self.container.close()
        except Exception:  # closing a broken network container can fail; nothing is left to release
            pass
        self.audio_stream = self.video_stream = None
        self._audio = None  # its resampler's filter graph


async def close_decoder(decoder: Decoder) -> None:
    """Close a decoder off the event loop (a batch may still be decoding in a worker thread)."""
    await asyncio.to_thread(decoder.close)


def open_container(url: str, options: dict | None = None, timeout=None) -> av.container.InputContainer:
    return av.open(url, mode="r", options=options or {}, timeout=timeout)


def describe_source(decoder: Decoder, kind: str, name: str, live: bool) -> SourceInfo:
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
