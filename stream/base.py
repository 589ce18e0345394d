"""What every media source is and says: the `MediaSource` interface, what it reports on opening (`SourceInfo`),
its state changes (`SourceEvent`), its errors (`SourceError`, with the protocol's codes) and URLs without their
credentials."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from media import AudioChunk, VideoFrame
from protocol import CodedError


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


class FrameRate:
    """Frames sampled a second of media, shared by a source and the samplers of its tracks: a rate changed while the
    source plays (MediaSource.sample_fps) holds from the next frame on."""

    def __init__(self, fps: float):
        self.fps = float(fps)


class MediaSource:
    """Base: `await open()` → SourceInfo, then `async for item in source` (AudioChunk | VideoFrame | SourceEvent)."""

    kind = "source"
    realtime = True  # a live source, or a file replayed at real-time pace
    end_reason = "eof"  # why the items ended when they end without an error ("stopped": the peer hung up)
    dropped_frames = 0  # sampled frames the source itself dropped because the pipeline did not take them
    path: Path | None = None  # the file a source replays (its audio can then be transcribed whole), else None

    @property
    def frame_rate(self) -> FrameRate:
        """The rate its video is sampled at, which its samplers share (stream.decoding.FrameSampler)."""
        rate = self.__dict__.get("_frame_rate")
        if rate is None:
            rate = self.__dict__["_frame_rate"] = FrameRate(2.0)
        return rate

    @property
    def sample_fps(self) -> float:
        """Frames sampled a second of media (2 unless set): the pipeline raises it before the source opens where
        mouths may be read between the visual scorer's frames (engine.Engine.source_fps), and lowers it again once
        opened when they will not be; a change holds from the next frame."""
        return self.frame_rate.fps

    @sample_fps.setter
    def sample_fps(self, fps: float) -> None:
        self.frame_rate.fps = float(fps)

    async def open(self) -> SourceInfo:
        raise NotImplementedError

    def __aiter__(self) -> AsyncIterator[AudioChunk | VideoFrame | SourceEvent]:
        raise NotImplementedError

    async def close(self) -> None:
        pass


def redact_url(url: str) -> str:
    """The URL without credentials, for logs and messages."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        # everything after the last "@" of the netloc is host[:port], whatever the port looks like
        return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    return url
