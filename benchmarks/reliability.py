"""Reliability of a long-running server: a soak, client churn, and a client that never reads (issue #14).

    .venv/bin/python benchmarks/reliability.py soak [--media-hours 24] [--clip PATH] [--sample-minutes 10] [--json OUT]
    .venv/bin/python benchmarks/reliability.py churn [--seconds 60] [--clients 50] [--engine real|fake]
    .venv/bin/python benchmarks/reliability.py stream-churn [--streams 100] [--at-once 4] [--no-cyclic-gc]
    .venv/bin/python benchmarks/reliability.py slow-client [--seconds 60] [--engine fake|real]

soak: one real clip looped (FileSource(loops=N), realtime=False: `--fast` mode) through StreamPipeline with the
real Engine for H media hours; every few media minutes a sample of RSS, asyncio tasks, threads, fds, lag and window
latency; reports the RSS slope in MiB per media hour (least squares after a warm-up) and the growth of the rest.

churn: an in-process server (serve_forever on loopback) with one live stream of a real clip at real-time pace;
waves of N clients connect, subscribe, some send `list`, and leave, for S seconds; counts before and after.

stream-churn: the same server; N short real clips (1.3-4 s, 480x360 to 1920x804) are started by clients a few at a
time, each ends (most as fast as possible, every fourth stopped by its client part-way at real-time pace) and its
client leaves; threads (FFmpeg's own included) and RSS after each batch, before and after. With --no-cyclic-gc
Python's cyclic garbage collector is off for the run: what an ended stream held must go without it.

slow-client: a raw TCP websocket client with a tiny receive buffer subscribes and never reads, next to a normal
client, on a stream replayed as fast as possible (many messages); the process's RSS over time, whether and when the
server dropped the stuck client, and the normal client's message rate against a run without the stuck one.

The tests run short versions of these same functions (tests/test_reliability.py, tests/test_faults.py).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ctypes
import dataclasses
import gc
import json
import math
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from websockets.asyncio.client import connect  # noqa: E402

from pipeline import Engine, PipelineConfig, StreamPipeline  # noqa: E402
from protocol import EndMessage, ErrorMessage, StatusMessage, WindowMessage, parse_message  # noqa: E402
from server import BackgroundServer, SourcePolicy, StreamHub  # noqa: E402
from stream.sources import FileSource  # noqa: E402

DEFAULT_CLIP = ROOT.parent / "shared" / "data" / "videos" / "vna_original_2.mp4"
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


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ys over xs (None for fewer than two distinct xs)."""
    if len(xs) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def clip_duration(path: str | Path) -> float:
    import av

    with av.open(str(path)) as container:
        return container.duration / av.time_base


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


def print_soak(result: SoakResult) -> None:
    print(f"{'media min':>9} {'wall s':>8} {'RSS MiB':>8} {'tasks':>5} {'threads':>7} {'fds':>4} {'socks':>5} "
          f"{'lag s':>6} {'lat max':>7}")
    for s in result.samples:
        h = s.holdings
        print(f"{s.media_min:9.1f} {s.wall_s:8.1f} {h.rss_mib:8.1f} {h.tasks:5d} {h.threads:7d} {h.fds:4d} "
              f"{h.sockets:5d} {s.lag_s:6.2f} {s.latency_max_s:7.2f}")


def summarise_soak(result: SoakResult) -> str:
    rss = result.rss_slope_mib_per_media_hour
    lag = result.lag_slope_s_per_media_hour
    growth = ", ".join(f"{k} {result.growth(k):+g}" for k in ("tasks", "threads", "fds", "sockets"))
    return (f"{Path(result.clip).name} x{result.loops}: {result.media_s / 3600:.3f} media hours in "
            f"{result.wall_s / 60:.1f} wall min ({result.media_s / result.wall_s:.1f}x real time), "
            f"{result.windows} windows, gaps {len(result.window_gaps)}, end {result.end_reason}, "
            f"errors {len(result.errors)}\n"
            f"after {result.warmup_min:.0f} media min of warm-up: RSS slope "
            f"{'n/a' if rss is None else f'{rss:+.2f}'} MiB per media hour, RSS {result.growth('rss_mib'):+.1f} MiB, "
            f"{growth}; lag slope {'n/a' if lag is None else f'{lag:+.3f}'} s per media hour")


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
    hub = StreamHub(engine, config, SourcePolicy(Path(clip).parent))
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


def print_churn(result: ChurnResult) -> None:
    print(f"{result.waves} waves of {result.clients_per_wave} clients in {result.wall_s:.1f} s: {result.visits} "
          f"visits ({result.visits_per_s:.1f}/s), {result.failed_visits} failed; stream alive: {result.stream_alive}, "
          f"subscribers left: {result.subscribers_left}")
    print(f"{'':12} {'RSS MiB':>8} {'tasks':>6} {'threads':>8} {'other thr':>9} {'fds':>5} {'sockets':>8}")
    for name in ("before", "during_max", "after"):
        h: Holdings = getattr(result, name)
        print(f"{name:12} {h.rss_mib:8.1f} {h.tasks:6d} {h.threads:8d} {h.other_threads:9d} {h.fds:5d} {h.sockets:8d}")
    rss = result.rss_mib_by_wave
    if len(rss) >= 4:
        tenths = [rss[min(len(rss) - 1, i * len(rss) // 10)] for i in range(10)] + [rss[-1]]
        print("RSS MiB over the waves (every tenth):", " ".join(f"{r:.0f}" for r in tenths))


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
    hub = StreamHub(engine, PipelineConfig(), SourcePolicy(media_dir), max_streams=max(at_once, 1) + 1)
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


def print_stream_churn(result: StreamChurnResult) -> None:
    print(f"{result.streams} short streams, {result.at_once} at a time, in {result.wall_s:.1f} s, cyclic GC "
          f"{'on' if result.cyclic_gc else 'off'}: ends {result.ends}, {len(result.failures)} failed")
    for failure in result.failures[:5]:
        print("  failed:", failure)
    print(f"{'':12} {'RSS MiB':>8} {'tasks':>6} {'threads':>8} {'native':>7} {'fds':>5} {'sockets':>8}")
    for name in ("before", "during_max", "after"):
        h: Holdings = getattr(result, name)
        print(f"{name:12} {h.rss_mib:8.1f} {h.tasks:6d} {h.threads:8d} {h.native_threads:7d} {h.fds:5d} "
              f"{h.sockets:8d}")
    print(f"RSS after malloc_trim: {result.rss_trimmed_before_mib:.1f} MiB before, "
          f"{result.rss_trimmed_after_mib:.1f} after; pipelines of ended streams still in memory: "
          f"{result.pipelines_left}")
    print("after each batch (streams ended: RSS MiB/native threads):",
          " ".join(f"{n}:{h.rss_mib:.0f}/{h.native_threads}" for n, h in result.by_batch))


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
    hub = StreamHub(engine, config, SourcePolicy(Path(clip).parent))
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
            except asyncio.TimeoutError:
                live.pipeline.stop()
                await asyncio.wait_for(reader, 30)
            finally:
                result.wall_s = round(time.monotonic() - started, 2)
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
                if stuck_client is not None:
                    stuck_client.close()
    return result


def print_slow_client(runs: list[SlowClientResult]) -> None:
    print(f"{'stuck client':>12} {'wall s':>7} {'messages':>8} {'msg/s':>7} {'windows':>7} {'contiguous':>10} "
          f"{'dropped at s':>12} {'why':>17} {'outbox max':>10} {'RSS start':>9} {'RSS max':>8} {'RSS end':>8}")
    for r in runs:
        rss = [m for _, m in r.rss_mib] or [float("nan")]
        dropped = "-" if r.stuck_dropped_after_s is None else f"{r.stuck_dropped_after_s:.1f}"
        print(f"{str(r.with_stuck_client):>12} {r.wall_s:7.1f} {r.messages:8d} {r.messages_per_s:7.1f} "
              f"{len(r.windows):7d} {str(r.windows_contiguous):>10} {dropped:>12} {r.stuck_dropped_because or '-':>17} "
              f"{r.stuck_outbox_max:10d} {rss[0]:9.1f} {max(rss):8.1f} {rss[-1]:8.1f}")


# -- command line ------------------------------------------------------------------------------------------------
def make_engine(kind: str, args) -> Engine:
    if kind == "fake":  # constant scorers and a word-a-second transcriber (tests/test_pipeline_fakes.py)
        sys.path.insert(0, str(ROOT / "tests"))
        from test_pipeline_fakes import fake_engine

        return fake_engine()
    return Engine(asr=args.asr, device=args.device)


async def main_async(args) -> None:
    engine = make_engine(getattr(args, "engine", "real"), args)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPU cores, "
          f"engine {getattr(args, 'engine', 'real')}, clip {getattr(args, 'clip', None) or args.media_dir}", flush=True)
    try:
        if args.command == "soak":
            print_header = True

            def progress(sample: SoakSample) -> None:
                nonlocal print_header
                if print_header:
                    print("(progress) media min, wall s, RSS MiB, tasks, threads, fds", flush=True)
                    print_header = False
                h = sample.holdings
                print(f"  {sample.media_min:.1f} {sample.wall_s:.0f} {h.rss_mib:.1f} {h.tasks} {h.threads} {h.fds}",
                      flush=True)

            result = await soak(engine, args.clip, args.media_hours * 3600, args.sample_minutes * 60,
                                None if args.warmup_minutes is None else args.warmup_minutes * 60,
                                on_sample=progress)
            print_soak(result)
            print(summarise_soak(result))
            for gap in result.window_gaps[:10]:
                print("gap:", gap)
            if args.json:
                Path(args.json).write_text(json.dumps(result.to_json(), indent=1))
        elif args.command == "churn":
            print_churn(await churn(engine, args.clip, seconds=args.seconds, clients=args.clients,
                                    warmup_s=args.warmup_seconds))
        elif args.command == "stream-churn":
            print_stream_churn(await stream_churn(engine, args.media_dir, streams=args.streams, at_once=args.at_once,
                                                  cyclic_gc=not args.no_cyclic_gc))
        else:
            runs = [await slow_client(engine, args.clip, media_s=args.media_minutes * 60, stuck=stuck,
                                      seconds=args.seconds) for stuck in (False, True)]
            print_slow_client(runs)
    finally:
        engine.close()


def main(argv: list[str] | None = None) -> None:
    from models.assets import add_model_arguments

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    soak_cmd = commands.add_parser("soak", help="a looped clip in fast mode for hours of media")
    soak_cmd.add_argument("--media-hours", type=float, default=24.0)
    soak_cmd.add_argument("--sample-minutes", type=float, default=10.0, help="media minutes between samples")
    soak_cmd.add_argument("--warmup-minutes", type=float, default=None,
                          help="media minutes left out of the slopes (default 10%% of the run, at most 10)")
    soak_cmd.add_argument("--json", default=None, metavar="OUT", help="write every sample here")
    churn_cmd = commands.add_parser("churn", help="clients connecting, subscribing and leaving in waves")
    churn_cmd.add_argument("--seconds", type=float, default=60.0)
    churn_cmd.add_argument("--clients", type=int, default=50)
    churn_cmd.add_argument("--engine", choices=("real", "fake"), default="real")
    churn_cmd.add_argument("--warmup-seconds", type=float, default=15.0,
                           help="how long the stream runs before the first count (the models' first calls)")
    streams_cmd = commands.add_parser("stream-churn", help="short file streams started and ended over and over")
    streams_cmd.add_argument("--streams", type=int, default=100)
    streams_cmd.add_argument("--at-once", type=int, default=4, help="streams running together")
    streams_cmd.add_argument("--no-cyclic-gc", action="store_true",
                             help="Python's cyclic garbage collector off for the run")
    streams_cmd.add_argument("--engine", choices=("real", "fake"), default="fake")
    streams_cmd.add_argument("--media-dir", default=str(DEFAULT_CLIP.parent),
                             help=f"where the short clips are ({', '.join(SHORT_CLIPS[:2])}, ...)")
    slow_cmd = commands.add_parser("slow-client", help="a client that never reads next to a normal one")
    slow_cmd.add_argument("--seconds", type=float, default=60.0, help="wall seconds each of the two runs lasts")
    slow_cmd.add_argument("--media-minutes", type=float, default=600.0, help="media the stream would last")
    slow_cmd.add_argument("--engine", choices=("real", "fake"), default="fake")
    for command in (soak_cmd, churn_cmd, streams_cmd, slow_cmd):
        if command is not streams_cmd:
            command.add_argument("--clip", default=str(DEFAULT_CLIP), help="a real clip (default vna_original_2.mp4)")
        add_model_arguments(command, heads=False)
    asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
