"""The reliability routines of a long-running server, shared by benchmarks/reliability.py (hours of them, with the
figures) and the tests (short runs, only what must hold): a soak, client churn, short streams started and ended
over and over, and a client that never reads; and what the process holds (threads, tasks, fds, RSS) around them.
See benchmarks/reliability.py's docstring for what each one does."""

from __future__ import annotations

import asyncio
import base64
import ctypes
import dataclasses
import gc
import json
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.client import connect

from engine import Engine, PipelineConfig, StreamPipeline
from protocol import (
    EndMessage,
    ErrorMessage,
    StatusMessage,
    WindowMessage,
    parse_message,
)
from service.serving import BackgroundServer
from stream.sources import FileSource
from testkit.data import VIDEOS
from testkit.media import clip_duration
from testkit.servers import make_hub
from testkit.stats import slope

DEFAULT_CLIP = VIDEOS / "vna_original_2.mp4"
# worker pools that live as long as the process (asyncio's default executor, the Engine's ASR and scoring threads)
POOL_THREAD_PREFIXES = ("asyncio_", "vidsent-")


# -- what the process holds -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Holdings:
    rss_mib: float
    tasks: int
    threads: int  # all of them
    other_threads: int  # outside the long-lived pools: what a stream or a client would leave behind
    native_threads: int  # every thread of the process (/proc/self/task): also those of native libraries (FFmpeg's)
    fds: int
    sockets: int

    @classmethod
    def now(cls) -> Holdings:
        fd_dir = "/proc/self/fd"
        links = []
        for fd in os.listdir(fd_dir):
            try:
                links.append(os.readlink(f"{fd_dir}/{fd}"))
            except OSError:  # closed between listing and reading (the listing's own fd, for one)
                pass
        threads = threading.enumerate()
        return cls(rss_mib=rss_mib(), tasks=len(asyncio.all_tasks()), threads=len(threads),
                   other_threads=sum(not t.name.startswith(POOL_THREAD_PREFIXES) for t in threads),
                   native_threads=len(os.listdir("/proc/self/task")),
                   fds=len(links), sockets=sum(link.startswith("socket:") for link in links))

    @property
    def native_only_threads(self) -> int:
        """Threads that Python does not know of: the native libraries' own (FFmpeg's decoder threads)."""
        return self.native_threads - self.threads


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


# -- soak --------------------------------------------------------------------------------------------------------
@dataclass
class SoakSample:
    media_min: float
    wall_s: float
    holdings: Holdings
    lag_s: float  # watermark ahead of the next window's end (last status message)
    latency_max_s: float  # worst window latency since the previous sample


@dataclass
class SoakResult:
    clip: str
    loops: int
    media_s: float
    wall_s: float
    windows: int
    window_gaps: list[str]  # windows that did not follow on from the previous one
    end_reason: str
    errors: list[str]
    samples: list[SoakSample]
    warmup_min: float

    def _after_warmup(self) -> list[SoakSample]:
        return [s for s in self.samples if s.media_min >= self.warmup_min]

    @property
    def rss_slope_mib_per_media_hour(self) -> float | None:
        kept = self._after_warmup()
        return slope([s.media_min / 60 for s in kept], [s.holdings.rss_mib for s in kept])

    @property
    def lag_slope_s_per_media_hour(self) -> float | None:
        kept = self._after_warmup()
        return slope([s.media_min / 60 for s in kept], [s.lag_s for s in kept])

    def growth(self, name: str) -> float:
        """Last sample minus the first one after the warm-up."""
        kept = self._after_warmup() or self.samples
        return getattr(kept[-1].holdings, name) - getattr(kept[0].holdings, name)

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["rss_slope_mib_per_media_hour"] = self.rss_slope_mib_per_media_hour
        out["lag_slope_s_per_media_hour"] = self.lag_slope_s_per_media_hour
        out["growth"] = {k: self.growth(k) for k in ("rss_mib", "tasks", "threads", "fds", "sockets")}
        return out


async def soak(engine: Engine, clip: str | Path, media_s: float, sample_every_s: float = 600.0,
               warmup_s: float | None = None, config: PipelineConfig | None = None,
               on_sample: Callable[[SoakSample], None] | None = None) -> SoakResult:
    """`clip` looped to at least `media_s` seconds of media, analysed as fast as possible; a sample every
    `sample_every_s` media seconds, from the first window on."""
    config = config or PipelineConfig()
    loops = max(1, math.ceil(media_s / clip_duration(clip)))
    source = FileSource(clip, realtime=False, sample_fps=config.sample_fps, loops=loops)
    samples: list[SoakSample] = []
    gaps: list[str] = []
    errors: list[str] = []
    seen = {"previous": None, "windows": 0, "lag": 0.0, "latency": 0.0, "next_sample": 0.0}
    started = time.monotonic()

    def take_sample(media_t: float) -> None:
        sample = SoakSample(round(media_t / 60, 3), round(time.monotonic() - started, 2), Holdings.now(),
                            seen["lag"], seen["latency"])
        samples.append(sample)
        seen["latency"] = 0.0
        seen["next_sample"] = media_t + sample_every_s
        if on_sample:
            on_sample(sample)

    def emit(message) -> None:
        if isinstance(message, StatusMessage) and message.lag_s is not None:
            seen["lag"] = message.lag_s
        elif isinstance(message, ErrorMessage):
            errors.append(f"{message.code}: {message.message}")
        elif isinstance(message, WindowMessage):
            previous = seen["previous"]
            if previous is None:
                if message.index != 0 or message.t_start != 0.0:
                    gaps.append(f"first window {message.index} starts at {message.t_start}")
            elif (message.index != previous.index + 1 or not previous.t_start < message.t_start <= previous.t_end):
                gaps.append(f"window {message.index} [{message.t_start}, {message.t_end}] after "
                            f"{previous.index} [{previous.t_start}, {previous.t_end}]")
            seen["previous"] = message
            seen["windows"] += 1
            seen["latency"] = max(seen["latency"], message.latency_s or 0.0)
            if message.t_end >= seen["next_sample"]:
                take_sample(message.t_end)

    pipeline = StreamPipeline("soak", source, engine, config, emit)
    end: EndMessage = await pipeline.run()  # no sample after the end: the stream's own tasks are gone by then
    media = end.summary["duration"]
    return SoakResult(clip=str(clip), loops=loops, media_s=media, wall_s=round(time.monotonic() - started, 1),
                      windows=seen["windows"], window_gaps=gaps, end_reason=end.summary["reason"], errors=errors,
                      samples=samples,
                      warmup_min=(warmup_s if warmup_s is not None else min(600.0, 0.1 * media)) / 60)


# -- a server in this process -----------------------------------------------------------------------------------
def looped_source(clip: str | Path, seconds: float, realtime: bool, config: PipelineConfig) -> FileSource:
    """The clip looped to last at least `seconds` of media."""
    loops = max(1, math.ceil(seconds / clip_duration(clip)))
    return FileSource(clip, realtime=realtime, sample_fps=config.sample_fps, name=Path(clip).name, loops=loops)


async def until_true(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return check()


async def settled(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Polls check() until it is true or the timeout passes (resources are released a moment after an end)."""
    return await until_true(check, timeout)


def own_threads() -> list[str]:
    """Threads other than the bounded worker pools (asyncio's default executor, the Engine's ASR and scoring
    threads), which live as long as the process: what a stream leaves behind shows here."""
    return sorted(t.name for t in threading.enumerate() if not t.name.startswith(POOL_THREAD_PREFIXES))


# -- churn -------------------------------------------------------------------------------------------------------
@dataclass
class ChurnResult:
    clients_per_wave: int
    waves: int
    visits: int
    failed_visits: int
    wall_s: float
    before: Holdings
    during_max: Holdings  # the most of each seen between waves
    after: Holdings
    stream_alive: bool
    subscribers_left: int  # subscribers of the live stream after the churn (the owner: 1)
    rss_mib_by_wave: list[float] = field(default_factory=list)

    @property
    def visits_per_s(self) -> float:
        return self.visits / self.wall_s if self.wall_s else 0.0


async def visit(url: str, stream: str, send_list: bool) -> None:
    async with connect(url) as ws:
        await ws.recv()  # hello
        await ws.send(json.dumps({"type": "subscribe", "stream": stream}))
        while parse_message(await ws.recv()).type != "subscribed":
            pass
        if send_list:
            await ws.send(json.dumps({"type": "list"}))
            while parse_message(await ws.recv()).type != "streams":
                pass


async def drain(ws) -> None:
    """Reads and forgets: a client that stopped reading would be dropped by the server's keepalive."""
    async for _ in ws:
        pass


async def churn(engine: Engine, clip: str | Path, *, seconds: float = 60.0, clients: int = 50,
                waves: int | None = None, list_every: int = 3, warmup_s: float = 1.0,
                settle_s: float = 10.0) -> ChurnResult:
    """Waves of `clients` visitors (see `visit`; every `list_every`-th also sends `list`) on one live stream of
    `clip` at real-time pace, for `seconds` of wall time or exactly `waves` waves, once the stream has run for
    `warmup_s`. The `after` counts are taken once tasks and fds are back to where they were, or after `settle_s`."""
    config = PipelineConfig()
    hub = make_hub(engine, Path(clip).parent, config=config)
    async with BackgroundServer(hub) as server:
        # the stream outlasts the churn and the settling by a margin
        source = looped_source(clip, warmup_s + seconds + settle_s + 60, realtime=True, config=config)
        async with connect(server.url) as owner:
            await owner.recv()
            live = hub.start(Path(clip).name, "live", source=source)
            await owner.send(json.dumps({"type": "subscribe", "stream": "live"}))
            owner_reader = asyncio.create_task(drain(owner))
            await asyncio.sleep(warmup_s)  # the stream is running: its own tasks and threads exist
            before = Holdings.now()
            most = before
            rss_by_wave = []
            visits = failed = done_waves = 0
            started = time.monotonic()
            while (done_waves < waves) if waves is not None else (time.monotonic() - started < seconds):
                outcomes = await asyncio.gather(*(visit(server.url, "live", n % list_every == 0)
                                                  for n in range(clients)), return_exceptions=True)
                failed += sum(isinstance(o, BaseException) for o in outcomes)
                visits += len(outcomes)
                done_waves += 1
                now = Holdings.now()
                rss_by_wave.append(round(now.rss_mib, 1))
                most = Holdings(*(max(a, b) for a, b in zip(dataclasses.astuple(most), dataclasses.astuple(now))))
            wall = time.monotonic() - started
            await until_true(lambda: len(asyncio.all_tasks()) <= before.tasks and Holdings.now().fds <= before.fds,
                             settle_s)
            after = Holdings.now()
            result = ChurnResult(clients, done_waves, visits, failed, round(wall, 2), before, most, after,
                                 stream_alive=hub.streams.get("live") is live and live.ended is None,
                                 subscribers_left=len(live.subscribers), rss_mib_by_wave=rss_by_wave)
            live.pipeline.stop()
            owner_reader.cancel()
            await asyncio.gather(owner_reader, return_exceptions=True)
    return result


# -- stream churn ------------------------------------------------------------------------------------------------
# real clips of 1.3-4 s in the data's videos folder: 480x360 to 1920x804 (a 1080p decoder holds the most)
SHORT_CLIPS = ("vna_mosi_2.6.mp4", "vna_0001.mp4", "vna_original_1.mp4", "vna_original_12.mp4",
               "pyfeat_single_face.mp4", "vna_0008.mp4", "pyfeat_no_face.mp4", "vna_videogpt_raw.mp4")


@dataclass
class StreamChurnResult:
    streams: int  # counted ones, after the warm-up batch
    at_once: int
    cyclic_gc: bool  # whether Python's cyclic garbage collector was on
    ends: dict[str, int]  # end reason → streams
    failures: list[str]  # clients that got an error or no end
    wall_s: float
    before: Holdings  # after the warm-up batch
    during_max: Holdings  # the most of each seen after a batch
    after: Holdings
    rss_trimmed_before_mib: float  # RSS once the C allocator has given its free memory back (malloc_trim)
    rss_trimmed_after_mib: float
    pipelines_left: int  # StreamPipeline objects still in memory at the end (every stream has ended)
    by_batch: list[tuple[int, Holdings]] = field(default_factory=list)  # (streams ended so far, counts after them)


def trimmed_rss_mib() -> float:
    """RSS once glibc has returned the free memory it keeps (malloc_trim): what is still allocated, without the
    allocator's high water."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    return rss_mib()


def pipelines_in_memory() -> int:
    """StreamPipeline objects the process holds, ended streams' included until they are freed."""
    # type(), not isinstance: a weak proxy whose object is gone (websockets keeps some) raises on isinstance
    return sum(type(o) is StreamPipeline for o in gc.get_objects())


async def short_stream(url: str, clip: str, stop_after_s: float | None = None) -> str:
    """A client starts a stream of `clip` and reads it to its end: as fast as possible, or at real-time pace and
    stopped by the client `stop_after_s` after it runs. Its end reason."""
    async with connect(url) as ws:
        await ws.recv()  # hello
        realtime = stop_after_s is not None
        await ws.send(json.dumps({"type": "start", "source": clip, "realtime": realtime}))
        stream = None
        async for raw in ws:
            message = parse_message(raw)
            if message.type == "subscribed":
                stream = message.stream
            elif message.type == "status" and message.state == "running" and stop_after_s is not None:
                await asyncio.sleep(stop_after_s)
                await ws.send(json.dumps({"type": "stop", "stream": stream}))
                stop_after_s = None
            elif message.type == "error" and message.stream in (None, stream):
                raise RuntimeError(f"{clip}: {message.code}: {message.message}")
            elif message.type == "end":
                return message.summary["reason"]
    raise RuntimeError(f"{clip}: the connection closed before the stream's end")


async def stream_churn(engine: Engine, media_dir: str | Path, clips: tuple[str, ...] = SHORT_CLIPS, *,
                       streams: int = 100, at_once: int = 4, stop_every: int = 4, stop_after_s: float = 0.5,
                       cyclic_gc: bool = True, settle_s: float = 10.0) -> StreamChurnResult:
    """`streams` short streams of `clips` (in `media_dir`), `at_once` at a time, each started and read to its end by
    its own client on an in-process server on loopback; every `stop_every`-th runs at real-time pace and is stopped
    by its client `stop_after_s` after it runs (its decoder closed mid-file), the others run as fast as possible.
    One batch first as a warm-up (the worker pools' threads start, FFmpeg and the allocator's first use), then the
    counts; `after` once the hub has no stream left and the tasks are back, or after `settle_s`."""
    hub = make_hub(engine, media_dir, max_streams=max(at_once, 1) + 1)
    ends: dict[str, int] = {}
    failures: list[str] = []
    gc_was_on = gc.isenabled()
    if not cyclic_gc:
        gc.collect()
        gc.disable()
    try:
        async with BackgroundServer(hub) as server:
            async def batch(first: int, count: int) -> None:
                runs = [short_stream(server.url, clips[n % len(clips)],
                                     stop_after_s if stop_every and n % stop_every == stop_every - 1 else None)
                        for n in range(first, first + count)]
                for outcome in await asyncio.gather(*runs, return_exceptions=True):
                    if isinstance(outcome, BaseException):
                        failures.append(f"{type(outcome).__name__}: {outcome}")
                    else:
                        ends[outcome] = ends.get(outcome, 0) + 1
                await until_true(lambda: not hub.streams, settle_s)

            await batch(0, at_once)  # the warm-up: not counted
            ends.clear()
            failures.clear()
            before = Holdings.now()
            rss_trimmed_before = trimmed_rss_mib()
            most = before
            by_batch = []
            started = time.monotonic()
            for first in range(at_once, at_once + streams, at_once):
                count = min(at_once, at_once + streams - first)
                await batch(first, count)
                # a thread that has just ended leaves the system's list of them a moment after Python's
                await until_true(lambda: Holdings.now().native_only_threads <= before.native_only_threads, 1.0)
                now = Holdings.now()
                by_batch.append((first - at_once + count, now))
                most = Holdings(*(max(a, b) for a, b in zip(dataclasses.astuple(most), dataclasses.astuple(now))))
            wall = time.monotonic() - started
            # (a worker thread lets go of a stream's last request a moment after answering it)
            await until_true(lambda: len(asyncio.all_tasks()) <= before.tasks and pipelines_in_memory() == 0
                             and Holdings.now().native_only_threads <= before.native_only_threads, settle_s)
            after = Holdings.now()
            rss_trimmed_after = trimmed_rss_mib()
            pipelines_left = pipelines_in_memory()
    finally:
        if not cyclic_gc and gc_was_on:
            gc.enable()
    return StreamChurnResult(streams, at_once, cyclic_gc, ends, failures, round(wall, 2), before, most, after,
                             round(rss_trimmed_before, 1), round(rss_trimmed_after, 1), pipelines_left, by_batch)


# -- a client that never reads -----------------------------------------------------------------------------------
class StuckClient:
    """A websocket client on a raw TCP socket with a tiny receive buffer: it completes the handshake, sends one
    request, and never reads again (not even the server's pings)."""

    def __init__(self, port: int, receive_buffer: int = 4096):
        self.port, self.receive_buffer = port, receive_buffer
        self.sock: socket.socket | None = None

    async def open(self, request: dict) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)  # before connect: sets the window
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", self.port))
        key = base64.b64encode(os.urandom(16)).decode()
        await loop.sock_sendall(sock, (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
                                       f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                                       f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:  # the 101 response (and perhaps the start of the hello: left unread)
            head += await loop.sock_recv(sock, 1)
        if not head.startswith(b"HTTP/1.1 101"):
            sock.close()
            raise ConnectionError(head.decode(errors="replace"))
        await loop.sock_sendall(sock, self.text_frame(json.dumps(request)))
        self.sock = sock

    @staticmethod
    def text_frame(text: str) -> bytes:
        payload, mask = text.encode(), os.urandom(4)
        n = len(payload)
        length = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
        return bytes([0x81]) + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@dataclass
class SlowClientResult:
    with_stuck_client: bool
    wall_s: float
    messages: int  # what the normal client received
    windows: list[int]  # the indexes of the windows it received
    end_reason: str | None
    stuck_dropped_after_s: float | None  # when the server stopped sending to the stuck client
    stuck_dropped_because: str | None = None  # "outbox full" (Subscriber.too_slow) or "connection closed"
    stuck_outbox_max: int = 0  # the most messages its outbox held
    rss_mib: list[tuple[float, float]] = field(default_factory=list)  # (wall s, RSS) every sample

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.wall_s if self.wall_s else 0.0

    @property
    def windows_contiguous(self) -> bool:
        return bool(self.windows) and self.windows == list(range(len(self.windows)))


BUSY_STREAM = PipelineConfig(window_s=2.0, hop_s=0.5)  # a window every half second of media: many messages


async def slow_client(engine: Engine, clip: str | Path, *, media_s: float = 1200.0, stuck: bool = True,
                      seconds: float | None = None, stop_when_dropped: bool = False, sample_every_s: float = 0.5,
                      config: PipelineConfig = BUSY_STREAM, keepalive_s: float = 20.0) -> SlowClientResult:
    """A normal client subscribes to a stream of `clip` looped to `media_s` of media, replayed as fast as possible;
    with `stuck`, a StuckClient subscribes to it as well. Runs to the stream's end, or `seconds` of wall time, or
    (`stop_when_dropped`) until the server has dropped the stuck client; then the stream is stopped."""
    hub = make_hub(engine, Path(clip).parent, config=config)
    result = SlowClientResult(stuck, 0.0, 0, [], None, None)
    async with BackgroundServer(hub, keepalive_s=keepalive_s) as server:
        stuck_client = StuckClient(server.port) if stuck else None
        async with connect(server.url, max_queue=None) as normal:
            await normal.recv()
            live = hub.start(Path(clip).name, "busy", realtime=False,
                             source=looped_source(clip, media_s, realtime=False, config=config))
            await normal.send(json.dumps({"type": "subscribe", "stream": "busy"}))
            await until_true(lambda: len(live.subscribers) == 1, 10)
            normal_subscriber = next(iter(live.subscribers))
            stuck_subscriber = None
            if stuck_client is not None:
                await stuck_client.open({"type": "subscribe", "stream": "busy"})
                await until_true(lambda: len(live.subscribers) == 2, 10)
                stuck_subscriber = next(s for s in live.subscribers if s is not normal_subscriber)
            started = time.monotonic()

            async def watch() -> None:
                while True:
                    now = time.monotonic() - started
                    result.rss_mib.append((round(now, 2), round(rss_mib(), 1)))
                    if stuck_subscriber is not None and result.stuck_dropped_after_s is None:
                        result.stuck_outbox_max = max(result.stuck_outbox_max, stuck_subscriber.outbox.qsize())
                        if stuck_subscriber not in live.subscribers and live.ended is None:
                            result.stuck_dropped_after_s = round(now, 2)
                            result.stuck_dropped_because = ("outbox full" if stuck_subscriber.too_slow
                                                            else "connection closed")
                            if stop_when_dropped:
                                live.pipeline.stop()
                    await asyncio.sleep(sample_every_s)

            async def read() -> None:
                async for raw in normal:
                    message = parse_message(raw)
                    result.messages += 1
                    if message.type == "window":
                        result.windows.append(message.index)
                    elif message.type == "end":
                        result.end_reason = message.summary["reason"]
                        return

            watcher = asyncio.create_task(watch())
            reader = asyncio.create_task(read())
            try:
                await asyncio.wait_for(asyncio.shield(reader), seconds)
            except TimeoutError:
                live.pipeline.stop()
                await asyncio.wait_for(reader, 30)
            finally:
                result.wall_s = round(time.monotonic() - started, 2)
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
                if stuck_client is not None:
                    stuck_client.close()
    return result
