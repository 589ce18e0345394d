"""An async Python client for the vidsent websocket protocol: typed messages, with reconnect.

    async with VidsentClient("ws://127.0.0.1:8765") as client:
        stream = await client.start("clip.mp4")          # or: await client.subscribe("s1")
        async for message in client.messages():
            if isinstance(message, WindowMessage):
                print(message.t_end, message.rolling["score"])
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from protocol import (
    CodedError,
    EndMessage,
    ErrorMessage,
    HelloMessage,
    MediaMessage,
    Message,
    StreamDescription,
    StreamsMessage,
    SubscribedMessage,
    WebRTCAnswerMessage,
    parse_message,
)

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)


class VidsentError(CodedError):
    """The server answered a request with an `error`."""

    def __str__(self) -> str:
        return f"{self.message} [{self.code}]"


class VidsentClient:
    def __init__(self, url: str = "ws://127.0.0.1:8765", *, reconnect: bool = True, max_backoff_s: float = 10.0,
                 open_timeout_s: float = 10.0, token: str | None = None):
        self.url = url
        self.token = token  # sent as Authorization: Bearer when the server requires one
        self.reconnect = reconnect
        self.max_backoff_s = max_backoff_s
        self.open_timeout_s = open_timeout_s
        self.ws: ClientConnection | None = None
        self.hello: HelloMessage | None = None
        self.subscriptions: set[str] = set()
        self.reconnects = 0  # connections made again after the server went away
        self._backlog: list[Message] = []

    async def __aenter__(self) -> VidsentClient:
        await self._connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _connect(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        self.ws = await connect(self.url, open_timeout=self.open_timeout_s, max_size=16 * 1024 * 1024,
                                additional_headers=headers)
        first = parse_message(await self.ws.recv())
        if isinstance(first, HelloMessage):
            self.hello = first
        else:
            self._backlog.append(first)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    def _connection(self) -> ClientConnection:
        if self.ws is None:
            raise RuntimeError("the client is not connected: use `async with VidsentClient(...)`")
        return self.ws

    async def _send(self, request: dict) -> None:
        await self._connection().send(json.dumps(request))

    async def _await_reply(self, *kinds: type[M]) -> M:
        """The next reply of the given kinds; other messages that arrive meanwhile are kept for messages()."""
        while True:
            message = parse_message(await self._connection().recv())
            if isinstance(message, kinds):
                return message
            if isinstance(message, ErrorMessage) and message.stream is None:
                raise VidsentError(message.code, message.message)
            self._backlog.append(message)

    async def start(self, source: str, *, stream: str | None = None, realtime: bool = True,
                    language: str | None = None) -> str:
        """Ask the server to start a stream from a file in its media folder or an allowed RTSP URL; subscribes.
        language: auto, a code (es) or codes (en,es); None: the server's own --language."""
        request: dict[str, object] = {"type": "start", "source": source, "realtime": realtime}
        if stream:
            request["stream"] = stream
        if language:
            request["language"] = language
        await self._send(request)
        reply = await self._await_reply(SubscribedMessage)
        self.subscriptions.add(reply.stream)
        return reply.stream

    async def offer(self, sdp: str, *, stream: str | None = None) -> WebRTCAnswerMessage:
        """Send a WebRTC SDP offer (e.g. an aiortc RTCPeerConnection's localDescription.sdp); returns the server's
        answer, whose `stream` the tracks become. Subscribes to that stream."""
        request = {"type": "webrtc_offer", "sdp": sdp}
        if stream:
            request["stream"] = stream
        await self._send(request)
        answer = await self._await_reply(WebRTCAnswerMessage)
        await self._await_reply(SubscribedMessage)
        self.subscriptions.add(answer.stream)
        return answer

    async def list_media(self) -> MediaMessage:
        """The files of the server's media folder that `start` accepts, and its allow-listed RTSP hosts."""
        await self._send({"type": "list_media"})
        return await self._await_reply(MediaMessage)

    async def subscribe(self, stream: str) -> str:
        await self._send({"type": "subscribe", "stream": stream})
        reply = await self._await_reply(SubscribedMessage)
        self.subscriptions.add(reply.stream)
        return reply.stream

    async def stop(self, stream: str) -> None:
        await self._send({"type": "stop", "stream": stream})

    async def list_streams(self) -> list[StreamDescription]:
        await self._send({"type": "list"})
        return (await self._await_reply(StreamsMessage)).streams

    async def messages(self) -> AsyncIterator[Message]:
        """Every message for this client, typed. On a lost connection it reconnects with backoff and subscribes
        again to the streams still running; it ends when the server is gone for good (reconnect=False)."""
        backoff = 0.5
        while True:
            while self._backlog:
                yield self._backlog.pop(0)
            try:
                raw = await self._connection().recv()
            except ConnectionClosed:
                if not self.reconnect:
                    return
                while True:
                    await asyncio.sleep(backoff)
                    backoff = min(self.max_backoff_s, backoff * 2)
                    try:
                        await self._connect()
                        self.reconnects += 1
                        break
                    except (TimeoutError, OSError, ConnectionClosed) as exc:
                        log.info("reconnect to %s failed: %s", self.url, exc)
                running = {s["stream"] for s in (self.hello.streams if self.hello else [])}
                for stream in sorted(self.subscriptions & running):
                    await self._send({"type": "subscribe", "stream": stream})
                self.subscriptions &= running
                continue
            backoff = 0.5
            message = parse_message(raw)
            if isinstance(message, EndMessage):
                self.subscriptions.discard(message.stream)
            yield message
