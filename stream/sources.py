"""Media sources: a file replayed as a stream, or a live RTSP URL. Each yields timestamped 16 kHz mono audio chunks
and sampled RGB video frames, knowing nothing about models or websockets.

Decoding is blocking (PyAV), so it runs in a worker thread one small batch at a time: the consumer pulls, which gives
backpressure for files, and every open and read of a network source is guarded by timeouts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import av

from media import AudioChunk
from stream.base import MediaSource, SourceError, SourceEvent, SourceInfo, redact_url
from stream.decoding import (
    TEXT_FORMATS,
    VIDEO_DECODER_THREADS,
    AudioConverter,
    Decoder,
    FrameSampler,
    MonoResampler,
    close_decoder,
    describe_source,
    open_container,
    sample_video,
)
from stream.rtsp import RtspSource

# the names media sources are used by, from wherever they are defined
__all__ = ["VIDEO_DECODER_THREADS", "AudioConverter", "Decoder", "FileSource", "FrameSampler", "MediaSource",
           "MonoResampler", "RtspSource", "SourceError", "SourceEvent", "SourceInfo", "close_decoder", "open_source",
           "redact_url", "sample_video"]


class FileSource(MediaSource):
    """A media file replayed at real-time pace (realtime=True, the server's default) or as fast as decoding goes."""

    kind = "file"

    def __init__(self, path: str | Path, *, realtime: bool = True, sample_fps: float = 2.0, name: str | None = None,
                 loops: int = 1):
        """name: how messages call the file (the server passes the client's own relative spec, so no message shows
        where its media folder is); loops: play the file this many times over with continuous media time (a demo
        or a soak)."""
        self.path: Path = Path(path)
        self.name = name or str(path)
        self.realtime = realtime
        self.sample_fps = sample_fps
        self.loops = max(1, int(loops))
        self._decoder: Decoder | None = None
        self.info: SourceInfo | None = None

    def _open_blocking(self, time_offset: float = 0.0) -> Decoder:
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
            container = open_container(str(path))
        except PermissionError as exc:
            # os.access answers for the real user, not the rights the open really has (a root without the
            # capability to override file modes, ACLs, security modules)
            raise SourceError("unreadable", f"{name} cannot be read ({exc.strerror or exc})") from exc
        except av.error.FFmpegError as exc:
            raise SourceError("not_media",
                              f"{name} is not a readable audio/video file ({exc.strerror or exc})") from exc
        except OSError as exc:
            raise SourceError("unreadable", f"{name} cannot be read ({exc.strerror or exc})") from exc
        if container.format.name in TEXT_FORMATS:
            container.close()
            raise SourceError("not_media", f"{name} is a text file, not audio or video")
        try:
            return Decoder(container, self.frame_rate, time_offset=time_offset)
        except SourceError:
            container.close()
            raise

    async def open(self) -> SourceInfo:
        self._decoder = await asyncio.to_thread(self._open_blocking)
        self.info = describe_source(self._decoder, "file", self.path.name, live=False)
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
