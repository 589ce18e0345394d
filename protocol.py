"""The vidsent websocket protocol, version 1: one JSON object per websocket text message.

Every server → client message has `type`, `v` (protocol version) and, when it concerns a stream, `stream`.
The README documents every field; `parse_message` turns received JSON into these typed dataclasses, and
`parse_request` validates what clients send.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

PROTOCOL_VERSION = 1
MAX_REQUEST_BYTES = 64 * 1024


@dataclass
class Message:
    type: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "v": PROTOCOL_VERSION, **asdict(self)}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), allow_nan=False)


@dataclass
class WindowMessage(Message):
    """One window's verdict. modalities: {text|audio|visual: {score, label, available, reason, confidence[, details]}};
    fused: {score, label, graded, method, used, missing}; rolling: {score, label, graded, half_life_s}."""

    type: ClassVar[str] = "window"
    stream: str
    index: int
    t_start: float
    t_end: float
    modalities: dict[str, dict]
    fused: dict
    rolling: dict
    transcript: str
    latency_s: float | None = None  # wall seconds from the window's media reaching the server to this message


@dataclass
class TranscriptMessage(Message):
    """Committed speech (final=True, each word sent exactly once) or the current unconfirmed guess (final=False,
    replaced by the next one)."""

    type: ClassVar[str] = "transcript"
    stream: str
    t_start: float
    t_end: float
    text: str
    final: bool
    words: list[dict] = field(default_factory=list)  # [{start, end, word, p}]


@dataclass
class StatusMessage(Message):
    """state: starting | running | reconnecting | ending. lag_s: media seconds received but not yet covered by a
    sent window, beyond one hop. dropped_frames: sampled frames dropped so far because the visual scorer was behind."""

    type: ClassVar[str] = "status"
    stream: str
    state: str
    lag_s: float = 0.0
    dropped_frames: int = 0
    media_time: float = 0.0
    detail: str = ""
    source: dict | None = None  # SourceInfo on the first status: kind, has_audio, has_video, duration, ...


@dataclass
class ErrorMessage(Message):
    type: ClassVar[str] = "error"
    code: str
    message: str
    stream: str | None = None


@dataclass
class EndMessage(Message):
    """summary: {reason: eof|stopped|source_lost|error, duration, windows, score, label, graded, modalities,
    dropped_frames, transcript, people: [{person, first_seen, last_seen, frames, score, top_emotion}]}."""

    type: ClassVar[str] = "end"
    stream: str
    summary: dict


@dataclass
class HelloMessage(Message):
    """Sent on connect. ice_servers: the STUN/TURN servers a browser should use for `webrtc_offer`
    ([{urls, username?, credential?}], empty when the server has none configured)."""

    type: ClassVar[str] = "hello"
    server: str
    streams: list[dict]
    ice_servers: list[dict] = field(default_factory=list)


@dataclass
class StreamsMessage(Message):
    """Reply to `list`: [{stream, source, state, subscribers}]."""

    type: ClassVar[str] = "streams"
    streams: list[dict]


@dataclass
class SubscribedMessage(Message):
    type: ClassVar[str] = "subscribed"
    stream: str


@dataclass
class WebRTCAnswerMessage(Message):
    """Reply to `webrtc_offer`: the server's SDP answer (ICE candidates included: no trickle). The stream id is
    the one the browser's tracks become; `subscribed` and the stream's messages follow."""

    type: ClassVar[str] = "webrtc_answer"
    stream: str
    sdp: str
    sdp_type: str = "answer"


@dataclass
class MediaMessage(Message):
    """Reply to `list_media`: the files a client may `start`, as paths relative to the server's media folder
    ([{path, size}], at most MAX_MEDIA_LISTED of them, sorted), and whether RTSP hosts are allow-listed."""

    type: ClassVar[str] = "media"
    files: list[dict]
    truncated: bool = False
    rtsp_hosts: list[str] = field(default_factory=list)


@dataclass
class AlertMessage(Message):
    """An alert rule's episode on a stream: `raised` once when its condition has held for the rule's time, then
    `cleared` once when the value is back past the threshold by the rule's margin (or the stream ended: detail
    says so). t_start: media time the episode began; t_end: media time of this transition; value: the signal then
    (rolling, fused or one modality's score)."""

    type: ClassVar[str] = "alert"
    stream: str
    rule: str
    state: str  # raised | cleared
    signal: str
    value: float | None
    threshold: float
    t_start: float
    t_end: float
    detail: str = ""


SERVER_MESSAGES: dict[str, type[Message]] = {
    m.type: m for m in (WindowMessage, TranscriptMessage, StatusMessage, ErrorMessage, EndMessage, HelloMessage,
                        StreamsMessage, SubscribedMessage, WebRTCAnswerMessage, MediaMessage, AlertMessage)
}


class CodedError(Exception):
    """An error with a stable `code` (the protocol's error codes, see the README) and a message for people: the
    one shape of every error that reaches a client (ProtocolError, stream.sources.SourceError, the client's
    VidsentError)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class ProtocolError(CodedError, ValueError):
    """A request that does not follow the protocol (code bad_request), or a message a client cannot parse."""


def parse_message(data: str | bytes | dict) -> Message:
    """A server message as its typed dataclass (what clients use)."""
    obj = json.loads(data) if isinstance(data, (str, bytes)) else data
    if not isinstance(obj, dict) or obj.get("type") not in SERVER_MESSAGES:
        raise ProtocolError("bad_message", f"not a vidsent message: {str(obj)[:80]}")
    cls = SERVER_MESSAGES[obj["type"]]
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in obj.items() if k in names})


# Client → server requests.
REQUESTS = {
    "subscribe": {"stream"},  # receive a running stream's messages; optional: since (its last seconds first)
    "unsubscribe": {"stream"},
    "start": {"source"},  # optional: stream (id), realtime (bool, default true)
    "stop": {"stream"},
    "list": set(),
    "list_media": set(),  # the files of the media folder a client may start
    "webrtc_offer": {"sdp"},  # a browser's SDP offer (its camera/microphone); optional: stream (id)
}


def parse_request(raw: str | bytes) -> dict[str, Any]:
    if isinstance(raw, bytes):
        raise ProtocolError("bad_request", "send JSON text messages, not binary")
    if len(raw) > MAX_REQUEST_BYTES:
        raise ProtocolError("bad_request", f"request larger than {MAX_REQUEST_BYTES} bytes")
    try:
        obj = json.loads(raw)
    except ValueError:
        raise ProtocolError("bad_request", "request is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_request", "a request is a JSON object with a 'type'")
    kind = obj.get("type")
    if kind not in REQUESTS:
        raise ProtocolError("bad_request", f"unknown request type {kind!r}; expected one of {', '.join(REQUESTS)}")
    for key in REQUESTS[kind]:
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise ProtocolError("bad_request", f"'{kind}' needs a non-empty string '{key}'")
    if "stream" in obj and obj["stream"] is not None:
        stream = obj["stream"]
        if not isinstance(stream, str) or not (0 < len(stream) <= 64) or not all(c.isalnum() or c in "-_." for c in stream):
            raise ProtocolError("bad_request", "a stream id is 1-64 letters, digits, '-', '_' or '.'")
    if "realtime" in obj and not isinstance(obj["realtime"], bool):
        raise ProtocolError("bad_request", "'realtime' must be true or false")
    if "since" in obj and obj["since"] is not None:
        since = obj["since"]
        if isinstance(since, bool) or not isinstance(since, (int, float)) or not 0 <= since < float("inf"):
            raise ProtocolError("bad_request", "'since' is a number of media seconds, 0 or more")
    return obj
