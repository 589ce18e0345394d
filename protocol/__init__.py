"""The vidsent websocket protocol, version 1: one JSON object per websocket text message.

Every server → client message has `type`, `v` (protocol version) and, when it concerns a stream, `stream`.
The README documents every field; `parse_message` turns received JSON into these typed dataclasses, and
`parse_request` validates what clients send.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal, NotRequired

try:  # pydantic (protocol_schema.py) reads TypedDicts only from typing_extensions before Python 3.12
    from typing_extensions import TypedDict
except ImportError:  # a client without it: the types below are only annotations at run time
    from typing import TypedDict

PROTOCOL_VERSION = 1
MAX_REQUEST_BYTES = 64 * 1024  # a larger request is answered bad_request, the connection kept
# a websocket message larger than this closes the connection (1009) before it is read: no request needs it
MAX_MESSAGE_BYTES = 1024 * 1024
MAX_SINCE_S = 1e9  # `since` beyond this (31 years of media) is no number of media seconds a history could hold
STREAM_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")  # ASCII only: no look-alike ids (full width, other scripts)


# The shapes inside the messages, as the README documents them: annotations only (the dataclasses below carry
# plain dicts and lists and check nothing at run time); protocol_schema.py turns them into the JSON Schema.
Label = Literal["negative", "neutral", "positive"]
Grade = Literal["Strong Negative", "Negative", "Slight Negative", "Positive"]


class InputQuality(TypedDict):
    """How good a modality's input was (added to v1): value in [0, 1] (1: nothing wrong the scorer can see), notes
    saying what lowered it, the features measured (README "Input quality"; in `end`: the mean value and the notes of
    a third of the windows or more, no features)."""

    value: float
    notes: list[str]
    features: dict[str, float]


class ModalityVerdict(TypedDict):
    """One modality's verdict on a window (in `end`: its mean over the stream). score: P(positive) in [0, 1], null
    when the modality is missing (available false; reason says why). details: the evidence (README "Evidence"; in
    `end`: {windows})."""

    score: float | None
    label: Label | None
    available: bool
    reason: str | None
    confidence: float
    details: NotRequired[dict[str, Any]]
    quality: NotRequired[InputQuality]  # added to v1; absent where the scorer does not assess its input


class Modalities(TypedDict, total=False):
    """Each modality's verdict, by name."""

    text: ModalityVerdict
    audio: ModalityVerdict
    visual: ModalityVerdict


class FusedVerdict(TypedDict):
    """The late fusion of the modalities present (`used`); the `missing` ones are left out, never guessed. score,
    label and graded are null when no modality is present."""

    score: float | None
    label: Label | None
    graded: Grade | None
    method: str
    used: list[str]
    missing: list[str]
    # Added in v1 without a version change (the server always sends them; older histories lack them):
    # how far to trust it (models.fusion.certainty_of): |2·score − 1| × (1 − disagreement), null with no modality
    certainty: NotRequired[float | None]
    disagreement: NotRequired[float | None]  # 0: the modalities agree, 1: two at opposite ends
    uncertain: NotRequired[bool]  # certainty < 0.2 or disagreement ≥ 0.5: show "uncertain", not a confident verdict
    doubts: NotRequired[list[str]]  # why it is uncertain (empty when it is not)


class RollingVerdict(TypedDict):
    """The fused score's exponential moving average over media time (null before any window had a score)."""

    score: float | None
    label: Label | None
    graded: Grade | None
    half_life_s: float
    certainty: NotRequired[float | None]  # the windows' certainty, averaged the same way (added, as fused's)
    uncertain: NotRequired[bool]  # the rolling score sits in the middle or its windows were uncertain


class TranscriptWord(TypedDict):
    """A committed word: media seconds, its probability and (added to v1) its speaker."""

    start: float
    end: float
    word: str
    p: float
    speaker: NotRequired[int | None]  # the stream's speaker id whose voice covers the word; null: not known yet


class SpeakerShare(TypedDict):
    """A voice and how many seconds of speech it had (in a window, or in the stream up to its end)."""

    speaker: int
    seconds: float


class SourceDescription(TypedDict):
    """What the source is. kind: file | rtsp | webrtc; duration null for live sources."""

    kind: str
    name: str
    has_audio: bool
    has_video: bool
    duration: float | None
    width: int | None
    height: int | None
    fps: float | None


class PersonVerdict(TypedDict):
    """One person in a window (added to v1): a tracked face (`person`), a voice (`speaker`), or a face with the voice
    bound to it. modalities: the text of their words, the voice of their speech and their face, each missing with its
    reason (did not speak, no face, ...); fused and rolling as the stream's, over their modalities alone."""

    id: str  # "person-N" (a face track, with its voice once bound) or "voice-N" (a voice bound to no face)
    person: int | None  # the face track (as in visual details' people); null: a voice with no face
    speaker: int | None  # the voice bound to them; null: no voice (yet)
    seconds: float  # seconds of their speech inside the window
    speaking: float | None  # how likely their face is the one talking in this window (mouth vs voice), 0..1
    modalities: Modalities
    fused: FusedVerdict
    rolling: RollingVerdict
    thumbnail: NotRequired[str]  # a small JPEG of their face (data: URL) on their first window, then every 30 s


class PersonPoint(TypedDict):
    """A person's window in their timeline: its end (media seconds), fused and rolling score (null: no evidence)."""

    t: float
    score: float | None
    rolling: float | None


class PersonSummary(TypedDict):
    """A person over the stream: a tracked face with its mean face valence (`score`), media seconds first and last
    seen; and (added to v1) their voice, the means of their modalities, their overall verdict and timeline."""

    person: int | None  # null: a voice bound to no face
    first_seen: float
    last_seen: float
    frames: int
    score: float | None  # mean face valence; null for a voice with no face
    top_emotion: str | None
    id: NotRequired[str]  # as in window people
    speaker: NotRequired[int | None]
    seconds: NotRequired[float]  # of their speech
    windows: NotRequired[int]  # windows they were in (seen or heard)
    modalities: NotRequired[Modalities]  # the mean of each of their modalities over their windows
    fused: NotRequired[FusedVerdict]  # their overall verdict: the fusion of those means
    label: NotRequired[Label | None]
    timeline: NotRequired[list[PersonPoint]]  # one point per window they were in (the latest 1800)


class OutsideLanguage(TypedDict):
    """Speech identified (with p >= 0.8) in a language outside the stream's allowed ones."""

    language: str
    p: float


class StreamLanguage(TypedDict):
    """A stream's language now: its ISO 639-1 code (null until identified), its probability in the latest
    identification, the media time it became current, the one before it, and `outside` while the speech is in a
    language outside the allowed ones (its text is then not transcribed)."""

    language: str | None
    p: float | None
    since: float
    previous: str | None
    outside: OutsideLanguage | None


class EndSummary(TypedDict):
    """A stream's end: why, its media duration and windows, the overall verdict (the fusion of the per-modality
    means), the last rolling verdict, the whole committed transcript and the tracked faces (the 50 seen most)."""

    reason: Literal["eof", "stopped", "source_lost", "error"]
    source: SourceDescription | None
    duration: float
    windows: int
    score: float | None
    label: Label | None
    graded: Grade | None
    fused: FusedVerdict
    rolling: RollingVerdict
    modalities: Modalities
    dropped_frames: int
    transcript: str
    people: list[PersonSummary]
    languages: NotRequired[dict[str, float]]  # each language's share of the speech (by word duration)
    speakers: NotRequired[list[SpeakerShare]]  # every voice found, in order of appearance (added to v1)


class StreamDescription(TypedDict):
    """A running stream. state: starting | running | reconnecting | ended."""

    stream: str
    source: str
    state: str
    subscribers: int


class IceServer(TypedDict):
    """A STUN/TURN server, as a browser's RTCIceServer."""

    urls: str | list[str]
    username: NotRequired[str]
    credential: NotRequired[str]


class MediaFile(TypedDict):
    """A file a client may `start`: its path relative to the server's media folder, and its size in bytes."""

    path: str
    size: int


class LabelThresholds(TypedDict):
    """A score is labelled positive from `positive` up, negative up to `negative`, else neutral."""

    positive: float
    negative: float


class GradeBand(TypedDict):
    """A score-based grade: from `min` up to the next band's `min`."""

    grade: Grade
    min: float


class Scale(TypedDict):
    """The server's label thresholds and grade bands (models.fusion.sentiment_scale), highest grade first."""

    labels: LabelThresholds
    grades: list[GradeBand]


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
    modalities: Modalities
    fused: FusedVerdict
    rolling: RollingVerdict
    transcript: str
    latency_s: float | None = None  # wall seconds from the window's media reaching the server to this message
    language: str | None = None  # ISO 639-1 code of the window's speech (what most of its words are in); null: none
    language_p: float | None = None  # that language's probability in the stream's latest identification
    speakers: list[SpeakerShare] | None = None  # who spoke inside the window and how long (added to v1)
    people: list[PersonVerdict] | None = None  # each person seen or heard in the window (added to v1)


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
    words: list[TranscriptWord] = field(default_factory=list)  # [{start, end, word, p}]
    language: str | None = None  # ISO 639-1 code of the language the words were transcribed in
    language_p: float | None = None
    speaker: int | None = None  # the speaker of most of the words (added to v1); null: not known


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
    source: SourceDescription | None = None  # stream.sources.SourceInfo, on the first `running` status
    language: StreamLanguage | None = None  # the stream's language, once its speech has been identified


@dataclass
class ErrorMessage(Message):
    """code: one of the error codes (README); stream: null for an error about a request."""

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
    summary: EndSummary


@dataclass
class HelloMessage(Message):
    """Sent on connect. ice_servers: the STUN/TURN servers a browser should use for `webrtc_offer`
    ([{urls, username?, credential?}], empty when the server has none configured). scale: the label thresholds and
    grade bands the server's scores are read by (null from a server that does not send them)."""

    type: ClassVar[str] = "hello"
    server: str
    streams: list[StreamDescription]
    ice_servers: list[IceServer] = field(default_factory=list)
    scale: Scale | None = None


@dataclass
class StreamsMessage(Message):
    """Reply to `list`: [{stream, source, state, subscribers}]."""

    type: ClassVar[str] = "streams"
    streams: list[StreamDescription]


@dataclass
class SubscribedMessage(Message):
    """The stream's messages follow (after `start`, `subscribe` or `webrtc_offer`)."""

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
    files: list[MediaFile]
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
    state: Literal["raised", "cleared"]
    signal: str
    value: float | None
    threshold: float
    t_start: float
    t_end: float
    detail: str = ""
    person: str | None = None  # the person (window people's id) of a rule scoped to each person (added to v1)


PERSON_ID = re.compile(r"(person|voice)-(\d{1,9})")  # window people's ids: a face track or a voice alone


def person_id_name(pid: object) -> str:
    """A person id as people read it: "person-3" → "person 3", "voice-0" → "voice 1" (voices count from 1, as the
    dashboard shows them); anything else "someone"."""
    match = PERSON_ID.fullmatch(pid) if isinstance(pid, str) else None
    if match is None:
        return "someone"
    return f"person {int(match[2])}" if match[1] == "person" else f"voice {int(match[2]) + 1}"


def voice_name(speaker: Any) -> str | None:
    """How a voice is named ("voice 1" for speaker id 0), None for anything that is not a speaker id."""
    return f"voice {speaker + 1}" if isinstance(speaker, int) and not isinstance(speaker, bool) else None


def person_name(person: Any) -> str:
    """How the dashboard, the commands and the alerts name one entry of window `people` or `end.summary.people`:
    "person 3" (a face), "person 3 · voice 1" (the face with its voice tied to it), "voice 1" (a voice alone). Read,
    never trusted: a field of the wrong type counts as absent."""
    if not isinstance(person, dict):
        return "someone"
    face, speaker = person.get("person"), person.get("speaker")
    face = face if isinstance(face, int) and not isinstance(face, bool) else None
    voice = voice_name(speaker)
    if face is not None:
        return f"person {face}" + (f" · {voice}" if voice else "")
    return voice or person_id_name(person.get("id"))


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


# The requests' shapes for the JSON Schema (parse_request checks them; tests/test_protocol_schema.py that the
# required fields here are those of REQUESTS). A stream id is STREAM_ID; `since` is 0 to MAX_SINCE_S.
class SubscribeRequest(TypedDict):
    """Receive a running stream's messages; with `since`, first its last `since` media seconds of windows, final
    transcripts and alerts from the history."""

    type: Literal["subscribe"]
    stream: str
    since: NotRequired[float | None]


class UnsubscribeRequest(TypedDict):
    type: Literal["unsubscribe"]
    stream: str


class StartRequest(TypedDict):
    """Start a stream of a file relative to the server's media folder, or of an allow-listed rtsp:// URL. realtime
    false replays a file as fast as possible."""

    type: Literal["start"]
    source: str
    stream: NotRequired[str | None]
    realtime: NotRequired[bool]
    language: NotRequired[str]  # auto (default), a language code (es) or codes (en,es)


class StopRequest(TypedDict):
    type: Literal["stop"]
    stream: str


class ListRequest(TypedDict):
    type: Literal["list"]


class ListMediaRequest(TypedDict):
    type: Literal["list_media"]


class WebRTCOfferRequest(TypedDict):
    """A browser's SDP offer with its ICE candidates gathered (no trickle)."""

    type: Literal["webrtc_offer"]
    sdp: str
    stream: NotRequired[str | None]


CLIENT_REQUESTS: tuple[type, ...] = (SubscribeRequest, UnsubscribeRequest, StartRequest, StopRequest, ListRequest,
                                     ListMediaRequest, WebRTCOfferRequest)


def quoted(text: object, limit: int = 80) -> str:
    """A client's own text, safe to echo in an error message or a log line: control, format and other characters
    that are not printable (a terminal escape, a right-to-left override, NUL) escaped, and cut after `limit`."""
    text = text if isinstance(text, str) else repr(text)
    cut = len(text) > limit
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text[:limit])
    return f"'{shown}'" + ("…" if cut else "")


def parse_request(raw: str | bytes) -> dict[str, Any]:
    """A client's request, validated: ProtocolError(bad_request) for anything else, whatever the input."""
    if isinstance(raw, bytes):
        raise ProtocolError("bad_request", "send JSON text messages, not binary")
    if len(raw) > MAX_REQUEST_BYTES:
        raise ProtocolError("bad_request", f"request larger than {MAX_REQUEST_BYTES} bytes")
    try:
        obj = json.loads(raw)
    except RecursionError:  # JSON nested thousands of levels deep
        raise ProtocolError("bad_request", "request is nested too deeply") from None
    except ValueError:
        raise ProtocolError("bad_request", "request is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_request", "a request is a JSON object with a 'type'")
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in REQUESTS:
        raise ProtocolError("bad_request",
                            f"unknown request type {quoted(kind)}; expected one of {', '.join(REQUESTS)}")
    for key in REQUESTS[kind]:
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise ProtocolError("bad_request", f"'{kind}' needs a non-empty string '{key}'")
    if "stream" in obj and obj["stream"] is not None:
        stream = obj["stream"]
        if not isinstance(stream, str) or not STREAM_ID.fullmatch(stream):
            raise ProtocolError("bad_request", "a stream id is 1-64 of the characters A-Z a-z 0-9 - _ .")
    if "language" in obj and (not isinstance(obj["language"], str) or not 0 < len(obj["language"]) <= 200):
        raise ProtocolError("bad_request", "'language' is auto, a language code (es) or codes (en,es)")
    if "realtime" in obj and not isinstance(obj["realtime"], bool):
        raise ProtocolError("bad_request", "'realtime' must be true or false")
    if "since" in obj and obj["since"] is not None:
        since = obj["since"]
        if isinstance(since, bool) or not isinstance(since, (int, float)) or not 0 <= since <= MAX_SINCE_S:
            raise ProtocolError("bad_request", f"'since' is a number of media seconds, from 0 to {MAX_SINCE_S:g}")
    return obj
