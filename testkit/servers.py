"""vidsent servers for tests and benchmarks: one in this process on a loopback port (make_hub, RunningServer),
`vidsent` as a subprocess (VIDSENT, FAKE_SERVE, run_vidsent, wait_listening) or in this process
(vidsent_in_process), and what a client does with them over
a websocket (start, collect, reply) or HTTP (http_get)."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

from websockets.asyncio.client import connect

from engine import Engine, PipelineConfig
from protocol import Message, parse_message
from service.access import SourcePolicy
from service.hub import StreamHub
from service.serving import BackgroundServer
from testkit.data import ROOT, VIDEOS
from testkit.fakes import fake_engine

RunningServer = BackgroundServer  # `async with RunningServer(hub) as server`: server.url, server.port, server.hub

VIDSENT = [sys.executable, str(ROOT / "cli.py")]  # the `vidsent` command as a user runs it
FAKE_SERVE = [sys.executable, str(ROOT / "tests" / "fake_serve.py")]  # the same on testkit's fake engine

# messages of the streams already running, which a client reads past to the answer to its request
STREAM_MESSAGE_TYPES = ("status", "window", "transcript", "end")

_engines_made: list[Engine] = []  # the fake engines make_hub made itself, until close_engines_made()


def make_hub(engine: Engine | None = None, media_dir: str | Path | None = VIDEOS, *,
             rtsp_hosts: list[str] | None = None, config: PipelineConfig | None = None, **options) -> StreamHub:
    """A StreamHub on `engine` (a fake_engine() when none is given) and `config` (the default PipelineConfig),
    serving the files in `media_dir` (the real clips by default; None: no files) and the RTSP cameras on
    `rtsp_hosts`; `options` go to StreamHub as they are (rtsp_options, webrtc_options, history, alert_rules,
    max_streams)."""
    if engine is None:
        engine = fake_engine()
        _engines_made.append(engine)
    return StreamHub(engine, config or PipelineConfig(), SourcePolicy(media_dir, rtsp_hosts=rtsp_hosts), **options)


def close_engines_made() -> None:
    """Closes the fake engines make_hub made for hubs given no engine: their worker threads would otherwise outlive
    the test, and count against the thread checks of the tests after it."""
    while _engines_made:
        _engines_made.pop().close()


def free_port() -> int:
    """A loopback TCP port nothing listens on (at the moment it is returned)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_listening(process: asyncio.subprocess.Process, port: int, timeout: float = 120) -> None:
    """Until a `vidsent serve` subprocess answers a websocket client on `port` with its hello."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if process.returncode is not None:
            raise AssertionError(f"vidsent serve exited with {process.returncode}")
        try:
            async with connect(f"ws://127.0.0.1:{port}", open_timeout=2) as ws:
                await ws.recv()
                return
        except (TimeoutError, OSError):
            await asyncio.sleep(0.5)
    raise AssertionError("vidsent serve did not start listening")


async def run_vidsent(*args: str, timeout: float = 240) -> tuple[int, str, str]:
    """`vidsent ARGS` as a subprocess in the repository root: its exit code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(*VIDSENT, *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode, out.decode(), err.decode()


def vidsent_in_process(capsys, *args: str) -> tuple[int, str, str]:
    """`vidsent ARGS` in this process through cli.main, with pytest's `capsys`: (exit code, stdout, stderr);
    argparse's exit is its code."""
    from cli import main as cli_main  # here: importing cli sets HF_HUB_OFFLINE and loads its options' modules

    try:
        code = cli_main(list(args))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


async def start(ws, source: str, realtime: bool = False, stream: str | None = None) -> str:
    """Starts `source` on the connection; the stream's id once the server has subscribed the client to it."""
    request = {"type": "start", "source": source, "realtime": realtime}
    if stream:
        request["stream"] = stream
    await ws.send(json.dumps(request))
    while True:
        message = parse_message(await ws.recv())
        if message.type == "subscribed":
            return message.stream
        assert message.type != "error", message


async def collect(ws, stream: str, timeout: float = 120.0) -> list:
    """Every message for one stream until its `end`."""
    out = []
    async with asyncio.timeout(timeout):
        async for raw in ws:
            message = parse_message(raw)
            if getattr(message, "stream", None) == stream:
                out.append(message)
                if message.type == "end":
                    return out
    return out


async def reply(ws, request: dict | str, *, past: tuple[str, ...] = STREAM_MESSAGE_TYPES) -> Message:
    """The answer to a request (a dict, or the text as it is sent), past the messages of the types in `past`."""
    await ws.send(request if isinstance(request, str) else json.dumps(request))
    async with asyncio.timeout(10):
        while (message := parse_message(await ws.recv())).type in past:
            pass
    return message


async def http_get(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """GET `url` off the event loop: the status, the headers and the body (empty for an error status)."""
    def get():
        try:
            with urlopen(Request(url, headers=headers or {}), timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except HTTPError as exc:
            return exc.code, dict(exc.headers), b""

    return await asyncio.get_running_loop().run_in_executor(None, get)
