"""The protocol on one port: plain HTTP (the dashboard, /health, /metrics) and the websocket protocol of
protocol.py, each request checked (host, origin, token, limits) and dispatched to the stream hub."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import cast
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from models.fusion import sentiment_scale
from monitor.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from monitor.metrics import ServerMetrics
from protocol import (
    PROTOCOL_VERSION,
    ErrorMessage,
    HelloMessage,
    IceServer,
    MediaMessage,
    ProtocolError,
    Scale,
    StreamsMessage,
    SubscribedMessage,
    WebRTCAnswerMessage,
    parse_request,
)
from service.access import TOKEN_COOKIE, Access
from service.hub import LiveStream, StreamHub, Subscriber
from service.static import CONTENT_TYPES, dashboard_file, http_response
from stream.sources import SourceError

log = logging.getLogger("vidsent.server")

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
            return http_response(HTTPStatus.BAD_REQUEST, b"bad request\n", "text/plain; charset=utf-8")

    def _http(self, request):
        access = self.access
        text = "text/plain; charset=utf-8"
        if not access.host_allowed(request):
            return http_response(HTTPStatus.MISDIRECTED_REQUEST,
                                  b"this server is not reached by that host name (see --allow-host)\n", text)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            if not access.origin_allowed(request):
                return http_response(HTTPStatus.FORBIDDEN, b"origin not allowed\n", text)
            if not access.authorised(request):
                return http_response(HTTPStatus.UNAUTHORIZED, b"a valid token is required\n", text)
            if self.clients >= access.max_clients:
                return http_response(HTTPStatus.SERVICE_UNAVAILABLE, b"too many clients: try again later\n", text)
            return None
        path = urlsplit(request.path).path
        if path == "/health":
            health = {"ok": True, "protocol": PROTOCOL_VERSION}
            if access.authorised(request):
                health["streams"] = [s.describe() for s in self.hub.streams.values()]
            return http_response(HTTPStatus.OK, (json.dumps(health) + "\n").encode(), "application/json")
        if path == "/metrics":
            if not access.authorised(request):
                return http_response(HTTPStatus.UNAUTHORIZED, b"a valid token is required\n", text)
            return http_response(HTTPStatus.OK, self.metrics.exposition(), METRICS_CONTENT_TYPE)
        target = dashboard_file(path)
        if target is None:
            return http_response(HTTPStatus.NOT_FOUND, b"not found: the dashboard is at /\n", text)
        if not access.authorised(request):
            return http_response(HTTPStatus.UNAUTHORIZED, b"this server needs its token: open /?token=TOKEN\n", text)
        response = http_response(HTTPStatus.OK, target.read_bytes(), CONTENT_TYPES.get(target.suffix, text))
        if access.token is not None and "token" in parse_qs(urlsplit(request.path).query):
            # the page's modules and its websocket then present the token as a cookie
            response.headers["Set-Cookie"] = f"{TOKEN_COOKIE}={access.token}; Path=/; HttpOnly; SameSite=Strict"
        return response

    async def handle(self, ws: ServerConnection) -> None:
        self.clients += 1
        client = Subscriber(ws, self.access.max_requests_per_s)
        self.connected.add(client)

        client.send(HelloMessage(server="vidsent", streams=[s.describe() for s in self.hub.streams.values()],
                                 ice_servers=self._ice_servers_for_browsers(),
                                 scale=cast(Scale, sentiment_scale())))
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

    def _ice_servers_for_browsers(self) -> list[IceServer]:
        servers = self.hub.webrtc_options.get("ice_servers") or []
        # an RTCIceServer's fields as IceServer has them, the unset ones left out (urls is always set)
        return [cast(IceServer, {k: v for k, v in (("urls", s.urls), ("username", s.username),
                                                   ("credential", s.credential)) if v})
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
        live: LiveStream | None
        if kind == "list":
            client.send(StreamsMessage([s.describe() for s in self.hub.streams.values()]))
        elif kind == "list_media":
            files, truncated = self.hub.policy.list_media()
            client.send(MediaMessage(files, truncated, sorted(f"{h}:{p}" if p else h
                                                              for h, p in self.hub.policy.rtsp_hosts)))
        elif kind == "start":
            self._check_client_streams(client)
            live = self.hub.start(request["source"], request.get("stream"), request.get("realtime", True),
                                  language=request.get("language"))
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
            assert live.pipeline is not None  # the hub sets it before the stream is listed
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


class OneRequestConnection(ServerConnection):
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
