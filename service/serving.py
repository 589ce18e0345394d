"""The server's life: listening on a port until a signal (or `stop`) comes, then ending every stream with its
`end` and closing the history; and `BackgroundServer`, the same inside a running asyncio program."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal

from websockets.asyncio.server import serve

from protocol import MAX_MESSAGE_BYTES, PROTOCOL_VERSION
from service.access import Access
from service.handler import OneRequestConnection, Server
from service.hub import StreamHub

log = logging.getLogger("vidsent.server")

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
                     create_connection=OneRequestConnection) as ws_server:
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

    async def __aenter__(self) -> BackgroundServer:
        self.task = asyncio.create_task(serve_forever("127.0.0.1", 0, self.hub, self.ready, self.stop, self.access,
                                                      keepalive_s=self.keepalive_s))
        await asyncio.wait_for(self.ready.wait(), 10)
        self.port = self.hub.bound_port
        self.url = f"ws://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 15)
