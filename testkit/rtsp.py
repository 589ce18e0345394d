"""RTSP for the tests: whether the loopback RTSP server (testkit/rtsp_server.py, run by Debian's Python) can run
here, a vidsent server following an RTSP stream to its end, and a proxy that corrupts a stream part-way."""

from __future__ import annotations

import asyncio
import json
import os
import random

import pytest
from websockets.asyncio.client import connect

from protocol import parse_message
from testkit.data import DATA
from testkit.rtsp_server import rtsp_server_available
from testkit.servers import RunningServer, make_hub


def require_rtsp_server() -> None:
    """Skips the test where the RTSP test server cannot run (fails it under VIDSENT_REQUIRE_RTSP_SERVER=1)."""
    ok, reason = rtsp_server_available()
    if not ok:
        if os.environ.get("VIDSENT_REQUIRE_RTSP_SERVER") == "1":
            pytest.fail(f"the RTSP test server must run here: {reason}")
        pytest.skip(reason)


async def follow_stream(engine, url: str, react, timeout: float, **rtsp_options) -> list:
    """Starts `url` as the stream "cam" of a loopback server and reads its messages up to its `end`, awaiting
    react(message, ws) after each one; then checks that the server still answers. Every message, in order."""
    messages = []
    hub = make_hub(engine, DATA, rtsp_hosts=["127.0.0.1"], rtsp_options=rtsp_options)
    async with RunningServer(hub) as server, connect(server.url) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "start", "source": url, "stream": "cam"}))
        async with asyncio.timeout(timeout):
            async for raw in ws:
                message = parse_message(raw)
                messages.append(message)
                await react(message, ws)
                if message.type == "end":
                    break
        await ws.send(json.dumps({"type": "list"}))  # the server carries on
        assert parse_message(await asyncio.wait_for(ws.recv(), 10)).type == "streams"
    return messages


RTP_HEADER = 12


class CorruptingProxy:
    """A TCP proxy in front of the loopback RTSP test server that starts corrupting what the server sends after a
    while: a camera or relay that goes bad mid-stream.

    RTSP over TCP interleaves the control messages and the media: each RTP packet is framed as ``$``, a channel byte
    and a 16-bit length. The proxy follows that framing on the server-to-client direction, so it can damage the
    media and keep the framing (``mode="payload"``: a decoder sees broken media packets; RTCP is left alone), or
    replace everything with random bytes (``mode="garbage"``: the client sees no RTSP at all). Before ``after_s``
    and in the client-to-server direction it forwards bytes unchanged."""

    def __init__(self, upstream_port: int, after_s: float, mode: str = "payload", share: float = 0.3,
                 seed: int = 0):
        if mode not in ("payload", "garbage"):
            raise ValueError(mode)
        self.upstream_port = upstream_port
        self.after_s = after_s
        self.mode = mode
        self.share = share  # payload mode: the share of RTP packets damaged
        self.random = random.Random(seed)
        self.connections = 0
        self.damaged_packets = 0
        self._started: float | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def __aenter__(self) -> CorruptingProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def corrupting(self) -> bool:
        # the clock starts with the first client: "after a while" of streaming, not of the proxy's life
        return self._started is not None and asyncio.get_running_loop().time() - self._started >= self.after_s

    async def _accept(self, client_reader, client_writer) -> None:
        self._tasks.add(asyncio.current_task())
        self.connections += 1
        if self._started is None:
            self._started = asyncio.get_running_loop().time()
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_writer.close()
            return
        pipes = [asyncio.create_task(self._forward(client_reader, server_writer)),
                 asyncio.create_task(self._from_server(server_reader, client_writer))]
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the proxy closes: asyncio's stream callback must not see a cancelled task
            pass
        finally:
            for pipe in pipes:
                pipe.cancel()
            for writer in (client_writer, server_writer):
                writer.close()
            self._tasks.discard(asyncio.current_task())

    @staticmethod
    async def _forward(reader, writer) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    async def _from_server(self, reader, writer) -> None:
        try:
            while True:
                if self.corrupting() and self.mode == "garbage":
                    data = await reader.read(65536)
                    if not data:
                        return
                    writer.write(self.random.randbytes(len(data)))
                elif (first := await reader.read(1)) == b"":
                    return
                elif first == b"$":  # an interleaved RTP/RTCP packet
                    header = await reader.readexactly(3)
                    payload = bytearray(await reader.readexactly(int.from_bytes(header[1:], "big")))
                    is_rtp = header[0] % 2 == 0  # even channels carry RTP, odd ones its RTCP reports
                    if self.corrupting() and is_rtp and len(payload) > RTP_HEADER and self.random.random() < self.share:
                        body = len(payload) - RTP_HEADER
                        start = RTP_HEADER + self.random.randrange(body)
                        end = min(len(payload), start + max(1, body // 2))
                        payload[start:end] = self.random.randbytes(end - start)
                        self.damaged_packets += 1
                    writer.write(first + header + payload)
                else:  # an RTSP message: its header lines, then a body of Content-Length bytes
                    message = first + await reader.readuntil(b"\r\n\r\n")
                    length = 0
                    for line in message.split(b"\r\n"):
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value.strip() or 0)
                    writer.write(message + (await reader.readexactly(length) if length else b""))
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return
