"""The running streams and their fan-out: each client's bounded outbox (`Subscriber`), one stream's
subscribers and observers (`LiveStream`), and the registry that starts and stops streams (`StreamHub`). A slow
client is dropped, never waited for."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from engine import Engine, PipelineConfig, StreamPipeline
from monitor.alerts import AlertMonitor, AlertRule
from monitor.history import History
from protocol import EndMessage, ErrorMessage, Message, ProtocolError, StatusMessage, StreamDescription
from service.access import MAX_STREAMS, RateLimit, SourcePolicy
from stream.sources import MediaSource, SourceError, open_source, redact_url

CLIENT_QUEUE = 512  # messages a client may have unsent before it counts as too slow and is dropped
BACKLOG_STALL_S = 20.0  # a client that reads nothing of its replay for this long is dropped as too slow
SLOW_CLIENT_CLOSE = 1013  # "try again later"

log = logging.getLogger("vidsent.server")

class Subscriber:
    """One websocket client: a bounded outbox and a writer task, so a slow client never blocks a stream."""

    _ids = itertools.count(1)

    def __init__(self, ws: ServerConnection, requests_per_s: float = 20.0):
        self.id = next(self._ids)
        self.ws = ws
        self.outbox: asyncio.Queue[str] = asyncio.Queue(CLIENT_QUEUE)
        self.too_slow = False
        self.rate = RateLimit(requests_per_s)
        self.started: set[str] = set()  # ids of the streams this client started
        self.held: list[str] | None = None  # live messages kept back while a replay goes out first (`since`)
        self.backlog_task: asyncio.Task | None = None
        self.writer = asyncio.create_task(self._write())

    def offer(self, text: str) -> bool:
        if self.too_slow:
            return False
        if self.held is not None:
            if len(self.held) < CLIENT_QUEUE:
                self.held.append(text)
                return True
        else:
            try:
                self.outbox.put_nowait(text)
                return True
            except asyncio.QueueFull:
                pass
        self._drop_too_slow()
        return False

    def _drop_too_slow(self) -> None:
        self.too_slow = True
        log.warning("client %d is too slow (%d unsent messages): dropping it", self.id, CLIENT_QUEUE)
        asyncio.create_task(self.ws.close(SLOW_CLIENT_CLOSE, "client too slow: messages not read"))

    def send(self, message: Message) -> None:
        self.offer(message.dumps())

    def send_backlog_first(self, backlog: Coroutine[None, None, list[str]]) -> None:
        """Sends the texts `backlog` gives (a replay from the history) before any message offered from now on:
        those wait in `held` meanwhile. A replay longer than the outbox waits for the client to read it."""
        self.held = []
        self.backlog_task = asyncio.create_task(self._send_backlog(backlog))

    async def _send_backlog(self, backlog: Awaitable[list[str]]) -> None:
        try:
            texts = await backlog
        except Exception as exc:  # noqa: BLE001 - without its replay the client still gets the live messages
            log.warning("client %d: no replay from the history: %s: %s", self.id, type(exc).__name__, exc)
            texts = []
        try:
            for text in texts:
                await asyncio.wait_for(self.outbox.put(text), BACKLOG_STALL_S)
        except TimeoutError:
            self.held = None
            self._drop_too_slow()
            return
        held, self.held = self.held, None
        assert held is not None  # set by send_backlog_first, which the handler calls only while none is held
        for text in held:
            if not self.offer(text):
                break

    async def _write(self) -> None:
        try:
            while True:
                text = await self.outbox.get()
                await self.ws.send(text)
        except ConnectionClosed:
            pass

    async def close(self) -> None:
        tasks = [t for t in (self.writer, self.backlog_task) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class LiveStream:
    id: str
    source_name: str
    pipeline: StreamPipeline | None = None
    task: asyncio.Task | None = None
    subscribers: set[Subscriber] = field(default_factory=set)
    last_status: StatusMessage | None = None
    ended: EndMessage | None = None
    starter: Subscriber | None = None  # the client that started the stream (none for streams started in-process)
    # called with every message of the stream, on the event loop: they must not block (metrics, history, alerts)
    observers: list[Callable[[Message], None]] = field(default_factory=list)

    def publish(self, message: Message) -> None:
        if isinstance(message, StatusMessage):
            self.last_status = message
        for observe in self.observers:
            try:
                observe(message)
            except Exception as exc:  # noqa: BLE001 - a monitor's fault must not touch the stream
                log.error("observer %r failed on a %s message: %s: %s", observe, message.type, type(exc).__name__, exc)
        text = message.dumps()
        for sub in list(self.subscribers):
            if not sub.offer(text):
                self.subscribers.discard(sub)

    def describe(self) -> StreamDescription:
        return {"stream": self.id, "source": self.source_name,
                "state": "ended" if self.ended else (self.last_status.state if self.last_status else "starting"),
                "subscribers": len(self.subscribers)}


class StreamHub:
    def __init__(self, engine: Engine, config: PipelineConfig, policy: SourcePolicy, max_streams: int = MAX_STREAMS,
                 rtsp_options: dict | None = None, webrtc_options: dict | None = None, history: History | None = None,
                 alert_rules: list[AlertRule] | None = None):
        self.engine = engine
        self.rtsp_options = rtsp_options or {}
        # WebRTCSource options: ice_servers (list of RTCIceServer), give_up_s, connect_timeout_s
        self.webrtc_options = webrtc_options or {}
        self.config = config
        self.policy = policy
        self.max_streams = max_streams
        self.streams: dict[str, LiveStream] = {}
        # every stream's messages also go to these (after the stream's own observers): metrics, history
        self.observers: list[Callable[[Message], None]] = []
        # first, so that an alert an end clears goes out (and is stored) before that end
        self.alerts = AlertMonitor(alert_rules, publish=self.publish) if alert_rules else None
        if self.alerts is not None:
            self.observers.append(self.alerts.observe)
        self.history = history  # stores every stream's messages; closed when the server shuts down
        if history is not None:
            self.observers.append(history.observe)
        self.bound_port: int | None = None
        self._ids = itertools.count(1)

    def publish(self, stream_id: str, message: Message) -> None:
        """A message on a running stream, from outside its pipeline (alerts)."""
        live = self.streams.get(stream_id)
        if live is not None:
            live.publish(message)

    def check_room(self, stream_id: str | None) -> None:
        """Raises if a stream with this id runs already or the server is at --max-streams."""
        if stream_id is not None and stream_id in self.streams:
            raise SourceError("stream_exists", f"stream {stream_id!r} is already running: subscribe to it")
        if len(self.streams) >= self.max_streams:
            raise SourceError("too_many_streams", f"the server runs at most {self.max_streams} streams")

    def start(self, spec: str, stream_id: str | None = None, realtime: bool = True,
              source: MediaSource | None = None, language: str | None = None) -> LiveStream:
        """Start a stream from a client's source spec (checked against the policy), or from a ready source (then
        `spec` is only its name). language: the stream's own --language (auto, es, en,es), else the server's."""
        config = self.config
        if language is not None:
            try:
                config = replace(self.config, language=language)
            except ValueError as exc:
                raise ProtocolError("bad_request", str(exc)) from None
        self.check_room(stream_id)
        if source is None:
            source = open_source(self.policy.resolve(spec), realtime=realtime, sample_fps=self.config.sample_fps,
                                 name=spec, **self.rtsp_options)
        stream_id = stream_id or self._new_id()
        live = LiveStream(stream_id, redact_url(spec) if "://" in spec else Path(spec).name,
                          observers=list(self.observers))
        live.pipeline = StreamPipeline(stream_id, source, self.engine, config, emit=live.publish)
        self.streams[stream_id] = live
        live.task = asyncio.create_task(self._run(live), name=f"stream-{stream_id}")
        return live

    async def start_webrtc(self, sdp: str, stream_id: str | None = None) -> tuple[LiveStream, str]:
        """Answer a browser's SDP offer and start its tracks as a stream: (the stream, the SDP answer)."""
        from stream.webrtc import (
            WebRTCSource,  # aiortc loads only when a browser connects
        )

        self.check_room(stream_id)  # before any peer connection exists
        stream_id = stream_id or self._new_id()
        source, answer = await WebRTCSource.from_offer(sdp, name=f"browser:{stream_id}",
                                                       sample_fps=self.config.sample_fps, **self.webrtc_options)
        try:
            live = self.start(f"browser:{stream_id}", stream_id, source=source)
        except SourceError:  # another stream took the id or the last place while the offer was answered
            await source.close()
            raise
        return live, answer

    def _new_id(self) -> str:
        while (candidate := f"s{next(self._ids)}") in self.streams:
            pass
        return candidate

    async def _run(self, live: LiveStream) -> None:
        assert live.pipeline is not None  # start() sets it before it starts this task
        try:
            live.ended = await live.pipeline.run()
        except Exception as exc:  # noqa: BLE001 - the pipeline reports its own errors; this guards the hub
            log.error("stream %s crashed: %s: %s", live.id, type(exc).__name__, exc)
            log.debug("stream %s crashed", live.id, exc_info=True)  # the traceback, with -v
            live.publish(ErrorMessage("internal", "the stream failed", live.id))
        finally:
            self.streams.pop(live.id, None)
            # the pipeline's emit is live.publish: a reference cycle that would keep the ended stream's buffers until
            # the cyclic garbage collector ran
            live.pipeline.emit = lambda message: None
            log.info("stream %s ended (%s)", live.id, live.ended.summary.get("reason") if live.ended else "crash")

    async def stop_all(self, timeout: float = 4.0) -> None:
        for live in list(self.streams.values()):
            assert live.pipeline is not None  # start() sets it before the stream is listed
            live.pipeline.stop()
        tasks = [live.task for live in self.streams.values() if live.task]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
