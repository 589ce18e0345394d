"""The vidsent asyncio server: a registry of live streams and the websocket protocol (see protocol.py and the README).

Transport only: each stream's processing is a `pipeline.StreamPipeline`; this module starts them on request (a file,
an RTSP URL, or a browser's WebRTC offer), fans their messages out to subscribed clients through bounded per-client
queues, and drops a client that cannot keep up instead of ever letting it stall a pipeline. The same port serves
the dashboard (`/`, files of client/dashboard/) and `/health` over plain HTTP.

    python server.py [--host 127.0.0.1] [--port 8765] [--media-dir DIR] [--allow-rtsp HOST[:PORT]] ...
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hmac
import ipaddress
import itertools
import json
import logging
import os
import secrets
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import SimpleCookie
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response
from websockets.protocol import State

from monitor.alerts import AlertMonitor, AlertRule, load_rules
from monitor.history import KEEP_S, MAX_BYTES, History
from monitor.history import default_path as default_history_path
from monitor.logs import configure_logging
from monitor.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from monitor.metrics import ServerMetrics
from models.assets import DeviceUnavailable
from pipeline import Engine, PipelineConfig, StreamPipeline
from protocol import (MAX_MESSAGE_BYTES, PROTOCOL_VERSION, EndMessage, ErrorMessage, HelloMessage, MediaMessage,
                      Message, ProtocolError, StatusMessage, StreamsMessage, SubscribedMessage, WebRTCAnswerMessage,
                      parse_request, quoted)
from stream.sources import MediaSource, SourceError, open_source, redact_url

log = logging.getLogger("vidsent.server")

CLIENT_QUEUE = 512  # messages a client may have unsent before it counts as too slow and is dropped
BACKLOG_STALL_S = 20.0  # a client that reads nothing of its replay for this long is dropped as too slow
SLOW_CLIENT_CLOSE = 1013  # "try again later"
MAX_STREAMS = 16
MAX_MEDIA_LISTED = 500  # files a `list_media` reply names at most
DASHBOARD_DIR = Path(__file__).resolve().parent / "client" / "dashboard"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml",
                 ".ico": "image/x-icon", ".txt": "text/plain; charset=utf-8"}


class SourcePolicy:
    """Which sources clients may start: files inside one media folder (no traversal, no symlinks out) and RTSP URLs
    on allow-listed hosts."""

    def __init__(self, media_dir: str | Path | None = None, rtsp_hosts: list[str] | None = None):
        self.media_dir = Path(media_dir).resolve() if media_dir else None
        # "host" allows any port on that host, "host:port" only that port
        self.rtsp_hosts = {self._host_port(h) for h in (rtsp_hosts or [])}

    @staticmethod
    def _host_port(spec: str) -> tuple[str, int | None]:
        parts = urlsplit(spec if "//" in spec else f"rtsp://{spec}")
        return (parts.hostname or "").lower(), parts.port

    def rtsp_allowed(self, url: str) -> bool:
        try:
            host, port = self._host_port(url)
        except ValueError:  # a port that is not a number
            return False
        default_port = 322 if urlsplit(url).scheme.lower() == "rtsps" else 554  # FFmpeg's defaults, as it connects
        return (host, None) in self.rtsp_hosts or (host, port or default_port) in self.rtsp_hosts

    def resolve(self, spec: str) -> str:
        scheme = urlsplit(spec).scheme.lower()
        if scheme in ("rtsp", "rtsps"):
            if not self.rtsp_allowed(spec):
                raise SourceError("not_allowed", f"RTSP host of {redact_url(spec)} is not on the server's allow-list")
            return spec
        if scheme and len(scheme) > 1:
            raise SourceError("not_allowed", f"source scheme {quoted(scheme)} is not allowed")
        if self.media_dir is None:
            raise SourceError("not_allowed", "this server has no media folder: start it with --media-dir")
        relative = self.relative_path(spec)
        try:
            path = (self.media_dir / relative).resolve()
        except (ValueError, OSError):  # a name too long, a loop of links
            raise SourceError("not_allowed", "that is not a usable file name") from None
        if not path.is_relative_to(self.media_dir):  # a link inside the folder that leads out of it
            raise SourceError("not_allowed", f"{quoted(spec)} is outside the server's media folder")
        return str(path)

    @staticmethod
    def relative_path(spec: str) -> PurePosixPath:
        """A client's file path, judged on its text alone (so no answer depends on what lies outside the folder):
        relative, without `..`, hidden parts or control characters, as `list_media` names files."""
        if not spec or any(not c.isprintable() for c in spec) or "\\" in spec:
            raise SourceError("not_allowed", "that is not a usable file name")
        path = PurePosixPath(spec)
        if path.is_absolute():
            raise SourceError("not_allowed", "give a path relative to the server's media folder (as list_media "
                                             "names it), not an absolute one")
        if any(part == ".." for part in path.parts):
            raise SourceError("not_allowed", "'..' is not allowed in a media path")
        if any(part.startswith(".") for part in path.parts):
            raise SourceError("not_allowed", "hidden files and folders are not served")
        if any(len(part.encode()) > 255 for part in path.parts) or len(spec) > 1024:
            raise SourceError("not_allowed", "that is not a usable file name")
        return path

    def list_media(self, limit: int = MAX_MEDIA_LISTED) -> tuple[list[dict], bool]:
        """The files a client may start ([{path, size}] relative to the media folder, sorted) and whether the list
        was cut at `limit`. Hidden files and links that lead out of the folder are left out."""
        if self.media_dir is None:
            return [], False
        found: list[dict] = []
        for folder, dirs, files in os.walk(self.media_dir):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                path = Path(folder, name)
                if name.startswith(".") or not path.resolve().is_relative_to(self.media_dir) or not path.is_file():
                    continue
                found.append({"path": path.relative_to(self.media_dir).as_posix(), "size": path.stat().st_size})
                if len(found) > limit:
                    return found[:limit], True
        return found, False


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
ANY_ADDRESS = ("0.0.0.0", "::", "")
TOKEN_COOKIE = "vidsent_token"
STOP_POLICIES = ("anyone", "starter")


def is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def request_host(request) -> str | None:
    """The host name of a request's `Host` header, lower case, without port or brackets (None: none or unreadable)."""
    header = request.headers.get("Host")
    if not header:
        return None
    try:
        host = urlsplit(f"//{header}").hostname
    except ValueError:  # a port that is not a number, an unclosed bracket
        return None
    return host.rstrip(".") if host else None


@dataclass
class Access:
    """Who may use the server and how much: a shared token (None: no authentication, loopback only unless the
    operator said --insecure), browser origins besides the server's own, and per-client limits."""

    token: str | None = None
    allowed_origins: tuple[str, ...] = ()
    max_clients: int = 64
    max_client_streams: int = 4  # streams one client may have started and still running
    max_requests_per_s: float = 20.0  # sustained; bursts of twice that are let through
    bind_host: str = "127.0.0.1"  # the address the server listens on (serve_forever sets it)
    allowed_hosts: tuple[str, ...] = ()  # --allow-host: names the server is reached by, besides its address
    stop_policy: str = "anyone"  # "starter": while its starting client is connected, only that client stops a stream

    def host_allowed(self, request) -> bool:
        """Whether the request's `Host` names this server. A page whose name re-resolves to this machine (DNS
        rebinding) sends its own name as Host, so only the names the server is really reached by pass: loopback
        names and addresses on loopback; the bound address (any address of this machine's when bound to all of
        them, and loopback) and --allow-host names otherwise."""
        host = request_host(request)
        if host is None:
            return False
        if host in (h.lower().rstrip(".") for h in self.allowed_hosts):
            return True
        bound = self.bind_host.strip("[]").lower()
        if is_loopback(bound):
            return is_loopback(host)
        if bound in ANY_ADDRESS:
            if is_loopback(host):
                return True
            try:  # an address literal cannot be re-bound to another name: it is this machine's if it reached us
                ipaddress.ip_address(host.strip("[]"))
                return True
            except ValueError:
                return False
        return host.strip("[]") == bound

    def token_of(self, request) -> str | None:
        """The token a request presents: `Authorization: Bearer …`, `?token=…` or the dashboard's cookie."""
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        query = parse_qs(urlsplit(request.path).query).get("token")
        if query:
            return query[0]
        cookie = SimpleCookie()
        try:
            cookie.load(request.headers.get("Cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie header is no token
            return None
        return cookie[TOKEN_COOKIE].value if TOKEN_COOKIE in cookie else None

    def authorised(self, request) -> bool:
        if self.token is None:
            return True
        given = self.token_of(request)
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def origin_allowed(self, request) -> bool:
        """A browser's websocket must come from a page of this server (same host:port) or an --allow-origin; a
        client that sends no Origin (not a browser) is judged by the token alone."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        if origin.rstrip("/") in self.allowed_origins:
            return True
        return urlsplit(origin).netloc.lower() == request.headers.get("Host", "").lower()


def resolve_token(host: str, token: str | None, insecure: bool) -> tuple[str | None, bool]:
    """(the token to require, whether it was generated here). Off loopback the server never runs without one
    unless --insecure was given: it makes one up and prints it once."""
    if token is not None and not token.strip():
        raise ValueError("an empty --token (or VIDSENT_TOKEN) would let anyone in: give a real one, or none on "
                         "loopback")
    if token:
        return token, False
    if host in LOOPBACK_HOSTS or insecure:
        return None, False
    return secrets.token_urlsafe(24), True


class RateLimit:
    """A token bucket: `rate` requests a second sustained, bursts of twice that."""

    def __init__(self, rate: float):
        self.rate, self.capacity = rate, max(1.0, 2 * rate)
        self.tokens, self.stamp = self.capacity, time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


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

    def describe(self) -> dict:
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
              source: MediaSource | None = None) -> LiveStream:
        """Start a stream from a client's source spec (checked against the policy), or from a ready source (then
        `spec` is only its name)."""
        self.check_room(stream_id)
        if source is None:
            source = open_source(self.policy.resolve(spec), realtime=realtime, sample_fps=self.config.sample_fps,
                                 name=spec, **self.rtsp_options)
        stream_id = stream_id or self._new_id()
        live = LiveStream(stream_id, redact_url(spec) if "://" in spec else Path(spec).name,
                          observers=list(self.observers))
        live.pipeline = StreamPipeline(stream_id, source, self.engine, self.config, emit=live.publish)
        self.streams[stream_id] = live
        live.task = asyncio.create_task(self._run(live), name=f"stream-{stream_id}")
        return live

    async def start_webrtc(self, sdp: str, stream_id: str | None = None) -> tuple[LiveStream, str]:
        """Answer a browser's SDP offer and start its tracks as a stream: (the stream, the SDP answer)."""
        from stream.webrtc import WebRTCSource  # aiortc loads only when a browser connects

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
            live.pipeline.stop()
        tasks = [live.task for live in self.streams.values() if live.task]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


def _http_response(status: HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-cache"), ("X-Content-Type-Options", "nosniff")])
    return Response(status.value, status.phrase, headers, body)


def _dashboard_files() -> dict[str, Path]:
    """Every file the dashboard serves, by URL path, found once: a request's path is only ever looked up here, so
    no client text reaches the file system. Files with a known content type (and the vendored LICENSE) only."""
    files = {}
    for path in sorted(DASHBOARD_DIR.rglob("*")):
        if path.is_file() and not path.name.startswith(".") and (path.suffix in CONTENT_TYPES or path.name == "LICENSE"):
            files["/dashboard/" + path.relative_to(DASHBOARD_DIR).as_posix()] = path
    files["/"] = DASHBOARD_DIR / "index.html"
    # what browsers ask for on any page without an icon link (the 401 page's too)
    files["/favicon.ico"] = DASHBOARD_DIR / "favicon.svg"
    return files


DASHBOARD_FILES = _dashboard_files()


def dashboard_file(path: str) -> Path | None:
    """The dashboard file an HTTP path names (`/` is the page itself, `/favicon.ico` its icon), or None."""
    return DASHBOARD_FILES.get(unquote(path))  # %-escapes that are no UTF-8 become U+FFFD: no file has that name


class Server:
    def __init__(self, hub: StreamHub, access: Access | None = None):
        self.hub = hub
        self.access = access or Access()
        self.clients = 0
        self.connected: set[Subscriber] = set()
        self.metrics = ServerMetrics(streams=lambda: hub.streams, clients=lambda: self.clients)
        hub.observers.append(self.metrics.observe)

    def http(self, connection, request):
        """Plain HTTP on the websocket's port: the dashboard at `/` and `/dashboard/…`, JSON at `/health`, Prometheus
        text at `/metrics`;
        a websocket upgrade on any path goes on to the protocol (after the host, origin, token and client-count
        checks); anything else is 404. With a token, only `/health` answers without it, and says nothing of streams.
        A request whose `Host` is not a name of this server gets 421, whatever it asks for."""
        try:
            return self._http(request)
        except Exception as exc:  # noqa: BLE001 - one bad request must not fill the log with tracebacks
            log.warning("HTTP request failed: %s: %s", type(exc).__name__, exc)
            log.debug("HTTP request failed", exc_info=True)  # the traceback, with -v
            return _http_response(HTTPStatus.BAD_REQUEST, b"bad request\n", "text/plain; charset=utf-8")

    def _http(self, request):
        access = self.access
        text = "text/plain; charset=utf-8"
        if not access.host_allowed(request):
            return _http_response(HTTPStatus.MISDIRECTED_REQUEST,
                                  b"this server is not reached by that host name (see --allow-host)\n", text)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            if not access.origin_allowed(request):
                return _http_response(HTTPStatus.FORBIDDEN, b"origin not allowed\n", text)
            if not access.authorised(request):
                return _http_response(HTTPStatus.UNAUTHORIZED, b"a valid token is required\n", text)
            if self.clients >= access.max_clients:
                return _http_response(HTTPStatus.SERVICE_UNAVAILABLE, b"too many clients: try again later\n", text)
            return None
        path = urlsplit(request.path).path
        if path == "/health":
            health = {"ok": True, "protocol": PROTOCOL_VERSION}
            if access.authorised(request):
                health["streams"] = [s.describe() for s in self.hub.streams.values()]
            return _http_response(HTTPStatus.OK, (json.dumps(health) + "\n").encode(), "application/json")
        if path == "/metrics":
            if not access.authorised(request):
                return _http_response(HTTPStatus.UNAUTHORIZED, b"a valid token is required\n", text)
            return _http_response(HTTPStatus.OK, self.metrics.exposition(), METRICS_CONTENT_TYPE)
        target = dashboard_file(path)
        if target is None:
            return _http_response(HTTPStatus.NOT_FOUND, b"not found: the dashboard is at /\n", text)
        if not access.authorised(request):
            return _http_response(HTTPStatus.UNAUTHORIZED, b"this server needs its token: open /?token=TOKEN\n", text)
        response = _http_response(HTTPStatus.OK, target.read_bytes(), CONTENT_TYPES.get(target.suffix, text))
        if access.token is not None and "token" in parse_qs(urlsplit(request.path).query):
            # the page's modules and its websocket then present the token as a cookie
            response.headers["Set-Cookie"] = f"{TOKEN_COOKIE}={access.token}; Path=/; HttpOnly; SameSite=Strict"
        return response

    async def handle(self, ws: ServerConnection) -> None:
        self.clients += 1
        client = Subscriber(ws, self.access.max_requests_per_s)
        self.connected.add(client)
        from models.fusion import sentiment_scale

        client.send(HelloMessage(server="vidsent", streams=[s.describe() for s in self.hub.streams.values()],
                                 ice_servers=self._ice_servers_for_browsers(), scale=sentiment_scale()))
        try:
            async for raw in ws:
                try:
                    if not client.rate.allow():
                        raise ProtocolError("rate_limited", f"more than {self.access.max_requests_per_s:g} requests "
                                                            f"a second: this one was ignored")
                    request = parse_request(raw)
                    if request["type"] == "webrtc_offer":
                        await self._answer_offer(client, request)
                    else:
                        self._dispatch(client, request)
                except (ProtocolError, SourceError) as exc:
                    client.send(ErrorMessage(exc.code, exc.message))
                except Exception as exc:  # noqa: BLE001 - one bad request must not end the client's connection
                    log.error("client %d: a request failed: %s: %s", client.id, type(exc).__name__, exc)
                    log.debug("client %d: a request failed", client.id, exc_info=True)  # the traceback, with -v
                    client.send(ErrorMessage("internal", "the request failed on an internal error; the server's "
                                                         "log has the details"))
        except ConnectionClosed:
            pass
        finally:
            self.clients -= 1
            self.connected.discard(client)
            for live in self.hub.streams.values():
                live.subscribers.discard(client)
            await client.close()

    def _check_client_streams(self, client: Subscriber) -> None:
        client.started &= set(self.hub.streams)
        if len(client.started) >= self.access.max_client_streams:
            raise SourceError("client_stream_limit", f"a client may run at most {self.access.max_client_streams} "
                                                     f"streams at once: stop one first")

    def _ice_servers_for_browsers(self) -> list[dict]:
        servers = self.hub.webrtc_options.get("ice_servers") or []
        return [{k: v for k, v in (("urls", s.urls), ("username", s.username), ("credential", s.credential)) if v}
                for s in servers]

    async def _answer_offer(self, client: Subscriber, request: dict) -> None:
        self._check_client_streams(client)
        live, answer = await self.hub.start_webrtc(request["sdp"], request.get("stream"))
        live.starter = client
        client.started.add(live.id)
        client.send(WebRTCAnswerMessage(live.id, answer))
        self._subscribe(client, live)

    def _dispatch(self, client: Subscriber, request: dict) -> None:
        kind = request["type"]
        if kind == "list":
            client.send(StreamsMessage([s.describe() for s in self.hub.streams.values()]))
        elif kind == "list_media":
            files, truncated = self.hub.policy.list_media()
            client.send(MediaMessage(files, truncated, sorted(f"{h}:{p}" if p else h
                                                              for h, p in self.hub.policy.rtsp_hosts)))
        elif kind == "start":
            self._check_client_streams(client)
            live = self.hub.start(request["source"], request.get("stream"), request.get("realtime", True))
            live.starter = client
            client.started.add(live.id)
            self._subscribe(client, live)
        elif kind == "subscribe":
            live = self.hub.streams.get(request["stream"])
            if live is None:
                raise SourceError("no_such_stream", f"no stream {request['stream']!r} is running")
            self._subscribe(client, live, request.get("since"))
        elif kind == "unsubscribe":
            live = self.hub.streams.get(request["stream"])
            if live is not None:
                live.subscribers.discard(client)
        elif kind == "stop":
            live = self.hub.streams.get(request["stream"])
            if live is None:
                raise SourceError("no_such_stream", f"no stream {request['stream']!r} is running")
            if self.access.stop_policy == "starter" and not self._may_stop(client, live):
                raise SourceError("not_allowed", f"stream {live.id!r} was started by another client, which is still "
                                                 f"connected: only it may stop the stream")
            live.pipeline.stop()

    def _may_stop(self, client: Subscriber, live: LiveStream) -> bool:
        """--stop-policy starter: the stream's starter while it is connected; anyone once it has gone (a camera's
        stream would otherwise run on with nobody able to stop it)."""
        return live.starter is None or live.starter is client or live.starter not in self.connected

    def _subscribe(self, client: Subscriber, live: LiveStream, since_s: float | None = None) -> None:
        """With since_s, the stream's last since_s media seconds from the history go out before its live messages
        (nothing is replayed without a history; a replay already going out to this client is not repeated)."""
        live.subscribers.add(client)
        client.send(SubscribedMessage(live.id))
        if since_s and self.hub.history is not None and client.held is None:
            client.send_backlog_first(self.hub.history.recent(live.id, since_s))
        if live.last_status is not None:
            client.send(live.last_status)


class _OneRequestConnection(ServerConnection):
    """A connection that reads one HTTP request head, then nothing until it has answered. websockets 17.4 parses
    whatever follows the request in the same packet as websocket frames, fails on a second pipelined request and
    logs an AssertionError's traceback; a client must wait for the answer before it sends more anyway (RFC 6455,
    4.1), and HTTP here answers one request per connection."""

    _head_read = False
    _tail = b""  # the last bytes of the head so far, to find its end across packets

    def data_received(self, data: bytes) -> None:
        if self._head_read:
            if self.protocol.state is not State.CONNECTING:
                super().data_received(data)
            return
        window = self._tail + data
        end = window.find(b"\r\n\r\n")
        if end == -1:
            self._tail = window[-3:]
            super().data_received(data)
            return
        self._head_read = True
        super().data_received(data[:end + 4 - len(self._tail)])


async def serve_forever(host: str, port: int, hub: StreamHub, ready: asyncio.Event | None = None,
                        stop: asyncio.Event | None = None, access: Access | None = None,
                        keepalive_s: float = 20.0) -> None:
    """keepalive_s: the websocket ping interval, and how long a client may leave a ping unanswered."""
    access = dataclasses.replace(access or Access(), bind_host=host)
    server = Server(hub, access)
    # websockets' debug log prints every request's headers and path, tokens and cookies included: never below INFO
    ws_log = logging.getLogger("websockets")
    ws_log.setLevel(max(ws_log.getEffectiveLevel(), logging.INFO))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread, or not a Unix loop
            pass
    async with serve(server.handle, host, port, process_request=server.http, max_size=MAX_MESSAGE_BYTES,
                     ping_interval=keepalive_s, ping_timeout=keepalive_s,
                     create_connection=_OneRequestConnection) as ws_server:
        bound = ", ".join(f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in ws_server.sockets)
        log.info("vidsent listening on ws://%s (protocol v%d); dashboard at http://%s/", bound, PROTOCOL_VERSION,
                 bound.split(", ")[0])
        hub.bound_port = ws_server.sockets[0].getsockname()[1]
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("shutting down: ending %d stream(s)", len(hub.streams))
        await hub.stop_all()
        await asyncio.sleep(0.2)  # let the writers flush the end messages
        if hub.alerts is not None:
            await hub.alerts.close(drain_s=2.0)  # webhooks already queued get a last chance
        if hub.history is not None:
            await asyncio.to_thread(hub.history.close)  # the last windows and every end reach the file


class BackgroundServer:
    """serve_forever on a free loopback port, in a task of the running loop, for as long as the `async with`
    lasts (embedding the server in an asyncio program; the tests and benchmarks). `.port` and `.url` once in."""

    def __init__(self, hub: StreamHub, access: Access | None = None, keepalive_s: float = 20.0):
        self.hub, self.access, self.keepalive_s = hub, access, keepalive_s
        self.stop, self.ready = asyncio.Event(), asyncio.Event()

    async def __aenter__(self) -> "BackgroundServer":
        self.task = asyncio.create_task(serve_forever("127.0.0.1", 0, self.hub, self.ready, self.stop, self.access,
                                                      keepalive_s=self.keepalive_s))
        await asyncio.wait_for(self.ready.wait(), 10)
        self.port = self.hub.bound_port
        self.url = f"ws://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 15)


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    parser.add_argument("--media-dir", default=None,
                        help="folder whose files clients may start as streams (nothing outside it)")
    parser.add_argument("--allow-rtsp", action="append", default=[], metavar="HOST[:PORT]",
                        help="an RTSP host (any port) or host:port clients may start streams from (repeatable)")
    parser.add_argument("--max-streams", type=int, default=MAX_STREAMS, help="streams the server runs at most")
    parser.add_argument("--token", default=os.environ.get("VIDSENT_TOKEN"),
                        help="the token clients must present (Authorization: Bearer, ?token=, or the dashboard's "
                             "cookie); default $VIDSENT_TOKEN; off loopback one is generated when none is given")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="a host name clients reach the server by (its DNS name, behind a proxy: the Host they "
                             "send), besides its bound address and loopback (repeatable); requests naming any other "
                             "host get 421, which stops DNS rebinding")
    parser.add_argument("--stop-policy", choices=STOP_POLICIES, default="anyone",
                        help="who may stop a stream: anyone (any client, the default) or starter (only the client "
                             "that started it while that client is connected, then anyone)")
    parser.add_argument("--insecure", action="store_true",
                        help="allow binding off loopback without a token (anyone who reaches the port may use it)")
    parser.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                        help="a web origin (e.g. https://dash.example.com) whose pages may use the websocket, "
                             "besides the server's own (repeatable)")
    parser.add_argument("--max-clients", type=int, default=Access.max_clients, help="concurrent websocket clients")
    parser.add_argument("--max-client-streams", type=int, default=Access.max_client_streams,
                        help="streams one client may have started and still running")
    parser.add_argument("--max-requests-per-s", type=float, default=Access.max_requests_per_s,
                        help="requests a second one client may send (bursts of twice that)")
    parser.add_argument("--rtsp-timeout", type=float, default=5.0, help="RTSP connect/read timeout in seconds")
    parser.add_argument("--rtsp-give-up", type=float, default=30.0,
                        help="end an RTSP stream after this many seconds without media (reconnecting meanwhile)")
    parser.add_argument("--ice-server", action="append", default=[], metavar="URL",
                        help="a STUN/TURN server for WebRTC: stun:HOST:PORT or turn:HOST:PORT,USER,CREDENTIAL "
                             "(repeatable; default none: host candidates only, nothing is contacted)")
    parser.add_argument("--ice-host", action="append", default=[], metavar="ADDR",
                        help="gather WebRTC host candidates only on this local address (repeatable; e.g. 127.0.0.1 "
                             "for a browser on this machine; default: every interface but loopback)")
    parser.add_argument("--webrtc-give-up", type=float, default=5.0,
                        help="end a browser's stream after this many seconds without media from it")
    parser.add_argument("--alert", action="append", default=[], metavar="RULE",
                        help="raise an `alert` when a signal crosses a threshold, e.g. 'rolling<0.3 for 10s' "
                             "(signals: rolling, fused, text, audio, visual; repeatable)")
    parser.add_argument("--alerts", metavar="FILE.toml", help="alert rules as [[alert]] tables (when, name, "
                                                              "clear_margin, webhook)")
    parser.add_argument("--alert-webhook", metavar="URL", help="POST every --alert rule's alerts to this URL as JSON")
    parser.add_argument("--log-json", action="store_true",
                        help="log one JSON object per line (ts, level, logger, message, stream) instead of text")
    parser.add_argument("--history", default=None, metavar="PATH|off",
                        help="the SQLite file each stream's windows, transcript, alerts and end are kept in (default "
                             "history.sqlite3 in $VIDSENT_DATA_DIR, else $XDG_DATA_HOME/vidsent or "
                             "~/.local/share/vidsent); off keeps nothing")
    parser.add_argument("--history-keep", type=float, default=KEEP_S / 86400, metavar="DAYS",
                        help="delete history older than this (default 7 days)")
    parser.add_argument("--history-max-mb", type=float, default=MAX_BYTES / 2**20, metavar="MB",
                        help="over this size the oldest runs are deleted first (default 1024)")
    parser.add_argument("--scorers", default="local", metavar="local|auto|ray://HOST:PORT",
                        help="where the scorers run: local (this process, the default), auto (a Ray Serve "
                             "application on this machine's Ray, started when none runs) or ray://HOST:PORT (a Ray "
                             "cluster's head: its replicas batch the windows of every ingest server); needs "
                             "pip install 'ray[serve]==2.60.0'")
    parser.add_argument("--scorer-replicas", type=int, default=1, metavar="N",
                        help="scorer replicas of the Ray application (with --scorers auto|ray://...; default 1)")


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    from models.assets import add_model_arguments

    add_model_arguments(parser)
    parser.add_argument("--fusion", default="weighted", choices=["weighted", "vote", "product", "stacking"])
    parser.add_argument("--window", type=float, default=4.0, help="window length in seconds (default 4)")
    parser.add_argument("--hop", type=float, default=2.0, help="window hop in seconds (default 2)")
    parser.add_argument("--half-life", type=float, default=6.0, help="rolling EMA half-life in seconds (default 6)")
    parser.add_argument("--fps", type=float, default=2.0, help="frames sampled per second for the visual scorer")


def pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    return PipelineConfig(window_s=args.window, hop_s=args.hop, half_life_s=args.half_life, sample_fps=args.fps)


def webrtc_settings(args: argparse.Namespace) -> dict:
    """WebRTCSource options from the command line; with --ice-host, ICE gathers only on those addresses."""
    from stream.webrtc import gather_ice_on, parse_ice_server

    if args.webrtc_give_up <= 0:
        raise ValueError("--webrtc-give-up must be positive")
    ice_servers = [parse_ice_server(spec) for spec in args.ice_server]
    if args.ice_host:
        gather_ice_on(args.ice_host)
    return {"ice_servers": ice_servers, "give_up_s": args.webrtc_give_up}


def build_engine(args: argparse.Namespace) -> Engine:
    """The process's Engine; with --scorers auto|ray://HOST:PORT its scorers are a Ray Serve application (speech
    recognition stays here). Ray missing, unreachable or failing to deploy: one logged line and exit status 2."""
    scorers = None
    where = getattr(args, "scorers", "local")  # only `serve` has --scorers
    if where != "local":
        from models.ray_scorers import RayScorersError, connect_ray_scorers

        try:
            scorers = connect_ray_scorers(where, device=args.device, heads_dir=args.heads, fusion=args.fusion,
                                          replicas=args.scorer_replicas)
        except RayScorersError as exc:
            log.error("%s", exc)
            raise SystemExit(2) from None
    return Engine(asr=args.asr, device=args.device, heads_dir=args.heads, fusion=args.fusion, scorers=scorers,
                  text_evidence=getattr(args, "text_evidence", True))


def open_history(args: argparse.Namespace) -> History | None:
    """The server's History from --history, --history-keep and --history-max-mb (None for `--history off`)."""
    if args.history == "off":
        return None
    if args.history_keep <= 0 or args.history_max_mb <= 0:
        raise ValueError("--history-keep and --history-max-mb must be positive")
    path = Path(args.history) if args.history else default_history_path()
    log.info("history in %s (kept %g days, at most %g MiB)", path, args.history_keep, args.history_max_mb)
    return History(path, keep_s=args.history_keep * 86400, max_bytes=int(args.history_max_mb * 2**20))


def main_serve(args: argparse.Namespace) -> int:
    configure_logging(json_lines=args.log_json, verbose=getattr(args, "verbose", False))
    try:
        config = pipeline_config(args)
        webrtc_options = webrtc_settings(args)
        policy = SourcePolicy(args.media_dir, args.allow_rtsp)
        alert_rules = load_rules(args.alert, args.alerts, args.alert_webhook)
        history = open_history(args)
    except (ValueError, OSError, sqlite3.Error) as exc:
        log.error("%s", exc)
        return 2
    try:
        token, generated = resolve_token(args.host, args.token, args.insecure)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    if generated:
        # printed once, never logged: the operator hands it to the clients
        print(f"vidsent: no --token given for {args.host}; clients must present this one: {token}", flush=True)
    elif token is None and args.host not in LOOPBACK_HOSTS:
        log.warning("binding to %s without a token (--insecure): anyone who reaches the port may use it", args.host)
    access = Access(token=token, allowed_origins=tuple(o.rstrip("/") for o in args.allow_origin),
                    max_clients=args.max_clients, max_client_streams=args.max_client_streams,
                    max_requests_per_s=args.max_requests_per_s, allowed_hosts=tuple(args.allow_host),
                    stop_policy=args.stop_policy)
    for host, port in sorted(policy.rtsp_hosts, key=str):
        if port is None:
            log.warning("--allow-rtsp %s allows every port of that host: give HOST:PORT to allow one", host)
    log.info("loading models (asr=%s, device=%s)", args.asr, args.device)
    try:
        engine = build_engine(args)
    except DeviceUnavailable as exc:
        log.error("%s", exc)
        return 2
    hub = StreamHub(engine, config, policy, args.max_streams,
                    rtsp_options={"open_timeout_s": args.rtsp_timeout, "read_timeout_s": args.rtsp_timeout,
                                  "give_up_s": args.rtsp_give_up},
                    webrtc_options=webrtc_options, history=history, alert_rules=alert_rules)
    try:
        asyncio.run(serve_forever(args.host, args.port, hub, access=access))
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc.strerror or exc)
        return 1
    finally:
        engine.close()
        if history is not None:
            history.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="server.py", description="vidsent websocket server")
    add_server_arguments(parser)
    add_pipeline_arguments(parser)
    return main_serve(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
