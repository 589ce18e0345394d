"""One command that measures the live path and prints a markdown table, each value beside its target.

    .venv/bin/python benchmarks/run.py                          # the full run (about 32 min on 2 cores, see below)
    .venv/bin/python benchmarks/run.py --quick                  # a smoke run: short durations (about 2.5 min)
    .venv/bin/python benchmarks/run.py --only streams,cold --seconds 60 --json out/bench.json
    .venv/bin/python benchmarks/run.py --only rss --rss-realtime   # RSS at 10 / 60 min of a real-time stream (1 h)

Sections (`--only a,b,...`; default all of them, `--quick`: material,streams,words,fast,cold):

  material  the long material, made once with ffmpeg and cached (`--cache`, default ~/.cache/vidsent/bench): every
            real clip (speech/*.flac over a black frame, videos/*.mp4, musicvideos/*/*.mp4) re-encoded to one format
            (640x360 25 fps H.264 ultrafast, AAC 48 kHz stereo), then joined without re-encoding (ffmpeg's concat
            demuxer, stream copy) into eight 10-minute streams (one sequence of all the clips, speech repeated
            three times, each stream starting at another speech clip), a 61-minute one (six of them back to back,
            then a minute of a seventh)
            and `fast120.mp4`: the speech and talking-head clips alone, 120 s. A `.parts.json` stamp beside each
            file says what it was made of; a file whose parts changed is made again.
  streams   1, 2, 4 and 8 concurrent real-time streams (different 10-minute mixes) through a `vidsent serve`
            subprocess, `--seconds` each: window latency (the server's `latency_s` and client-side receive), word
            latency, lag and its slope, dropped frames, the server's CPU (cores) and peak RSS.
  words     two_cities.flac, one real-time stream through the server, tiny.en and base: word latency, committed
            words against the reference transcript (lost = reference words deleted in the alignment), lag slope.
  fast      the `fast` file: `vidsent analyze --fast FILE` as a subprocess (its own per-file time, model load excluded;
            the total wall time too) vs faster-whisper alone (the pipeline's model, threads and beam; VAD; words)
            vs decoding alone (FileSource as fast as possible, frames sampled at --fast's rate), in `--fast-runs`
            rounds (3; 1 with --quick) of the three back to back: the median round and every round's ratio.
  cold      `vidsent serve` process start → port answers → first `window` of a stream started at once.
  rss       the server's RSS after 10 and 60 media minutes of the 60-minute stream (as fast as possible, or
            `--rss-realtime`).
  long      4 concurrent real-time streams for 10 minutes: lag slope, final lag, dropped frames, audio complete.

Word latency = receive time of the final `transcript` − (the stream's media origin on the client's clock + the
word's end); the media origin is min(receive time − media_time) over the stream's `status` messages (a real-time
source never runs ahead of the wall clock). Client-side window latency likewise with the window's t_end.

Wall time of the full default run on the 2-core machine (from the smoke runs): material ~2 min the first time
(cached afterwards; ~1.4 GiB), streams ~8.5 min, words ~2 min, fast ~1.5 min, cold ~15 s, rss ~9 min (60 media
minutes at ~7x real time), long ~10.5 min: about 32 min. The servers' logs go to CACHE/logs/.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import difflib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from client.ws_client import VidsentClient  # noqa: E402
from protocol import (  # noqa: E402
    EndMessage,
    ErrorMessage,
    StatusMessage,
    TranscriptMessage,
    WindowMessage,
)
from speech import normalise_text, word_error_rate  # noqa: E402
from testkit.data import DATA, TRANSCRIPTS  # noqa: E402
from testkit.media import clip_duration  # noqa: E402
from testkit.servers import free_port  # noqa: E402
from testkit.stats import pct, slope  # noqa: E402

SECTIONS = ("material", "streams", "words", "fast", "cold", "rss", "long")
QUICK_SECTIONS = ("material", "streams", "words", "fast", "cold")
BIN = Path(sys.executable).parent

# targets (the table's second column)
WINDOW_P95_S = 1.5
WORD_P95_S = 3.0
LAG_SLOPE_S_PER_MIN = 0.05
FINAL_LAG_S = 5.0
ANALYZE_OVER_WHISPER = 1.3
RSS_GROWTH = 0.05


def vidsent(*args: str) -> tuple[list[str], dict]:
    """The `vidsent` command line and its environment. The repository goes on PYTHONPATH: an editable install made
    before a package was added (monitor/) does not map it, and `vidsent` would fail to import it."""
    script = BIN / "vidsent"
    command = [str(script)] if script.exists() else [sys.executable, str(ROOT / "cli.py")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return [*command, *args], env


def progress(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- the table ---------------------------------------------------------------------------------------------------
@dataclass
class Row:
    section: str
    measure: str
    value: str
    target: str = "—"
    ok: bool | None = None  # None: reported, no target

    @property
    def mark(self) -> str:
        return {True: "✓", False: "✗", None: ""}[self.ok]


def fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None or x != x else f"{x:.{digits}f}"


def at_most(x: float | None, limit: float) -> bool | None:
    return None if x is None or x != x else x <= limit


def print_table(rows: list[Row]) -> None:
    print("| section | measure | value | target | |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.section} | {r.measure} | {r.value} | {r.target} | {r.mark} |")


# -- the server as a subprocess ----------------------------------------------------------------------------------
def proc_status(pid: int, key: str) -> float:
    """A /proc/PID/status field in MiB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def proc_cpu_s(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """`vidsent serve` on a free loopback port, `--history off`; its log goes to a file. Always `close()` it."""

    # options every server of a run gets (run.py's --no-speakers)
    extra: tuple[str, ...] = ()

    def __init__(self, media_dir: Path, log_path: Path, asr: str = "tiny.en", max_streams: int = 16):
        self.media_dir, self.log_path, self.asr, self.max_streams = media_dir, log_path, asr, max_streams
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.started_at = self.ready_at = None

    def start(self) -> ServerProcess:
        command, env = vidsent("serve", "--port", str(self.port), "--media-dir", str(self.media_dir),
                               "--history", "off", "--asr", self.asr, "--max-streams", str(self.max_streams),
                               *self.extra)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        return self

    async def wait_ready(self, timeout: float = 300.0) -> float:
        """Seconds from process start until the port accepts a connection."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}): {self.log_tail()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                self.ready_at = time.monotonic()
                return self.ready_at - self.started_at
            except OSError:
                await asyncio.sleep(0.05)
        raise TimeoutError(f"the server did not answer in {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, n: int = 600) -> str:
        try:
            return self.log_path.read_text()[-n:].strip()
        except OSError:
            return ""

    def cpu_s(self) -> float:
        return proc_cpu_s(self.proc.pid)

    def rss_mib(self) -> float:
        return proc_status(self.proc.pid, "VmRSS")

    def peak_rss_mib(self) -> float:
        return proc_status(self.proc.pid, "VmHWM")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "_log", None):
            self._log.close()


# -- one stream as a client sees it -------------------------------------------------------------------------------
@dataclass
class StreamTrace:
    """What a client received of one stream, each message with its receive time (time.monotonic())."""

    stream: str
    source: str
    started_at: float = 0.0  # when the client sent `start`
    statuses: list[tuple[float, float, float, int]] = field(default_factory=list)  # (recv, media_time, lag, dropped)
    windows: list[tuple[float, int, float, float, float | None]] = field(default_factory=list)  # (recv, index,
    # t_start, t_end, latency_s)
    words: list[tuple[float, float, float, str]] = field(default_factory=list)  # (recv, start, end, word)
    end: dict | None = None
    errors: list[str] = field(default_factory=list)
    rss_at: dict[float, float] = field(default_factory=dict)  # media seconds mark → server RSS MiB (rss section)

    def observe(self, message, now: float) -> None:
        if isinstance(message, StatusMessage):
            self.statuses.append((now, message.media_time, message.lag_s, message.dropped_frames))
        elif isinstance(message, WindowMessage):
            self.windows.append((now, message.index, message.t_start, message.t_end, message.latency_s))
        elif isinstance(message, TranscriptMessage) and message.final:
            self.words.extend((now, w["start"], w["end"], w["word"]) for w in message.words)
        elif isinstance(message, ErrorMessage):
            self.errors.append(f"{message.code}: {message.message}")
        elif isinstance(message, EndMessage):
            self.end = message.summary

    @property
    def media_origin(self) -> float | None:
        """The wall time (client clock) media time 0 corresponds to, for a real-time stream."""
        offsets = [recv - media for recv, media, _, _ in self.statuses if media > 0]
        return min(offsets) if offsets else None

    def word_latencies(self) -> list[float]:
        origin = self.media_origin
        return [] if origin is None else [recv - (origin + end) for recv, _, end, _ in self.words]

    def window_latencies(self) -> list[float]:
        return [lat for *_, lat in self.windows if lat is not None]

    def window_client_latencies(self) -> list[float]:
        origin = self.media_origin
        return [] if origin is None else [recv - (origin + t_end) for recv, _, _, t_end, _ in self.windows]

    def lag_series(self) -> tuple[list[float], list[float]]:
        """(wall minutes since the first status, lag_s) of every status after the first window."""
        if not self.statuses:
            return [], []
        first = self.windows[0][0] if self.windows else self.statuses[0][0]
        kept = [(recv, lag) for recv, _, lag, _ in self.statuses if recv >= first]
        return [(recv - first) / 60 for recv, _ in kept], [lag for _, lag in kept]

    @property
    def lag_slope_s_per_min(self) -> float | None:
        return slope(*self.lag_series())

    @property
    def final_lag_s(self) -> float | None:
        return self.statuses[-1][2] if self.statuses else None

    @property
    def dropped_frames(self) -> int:
        if self.end is not None:
            return int(self.end.get("dropped_frames", 0))
        return self.statuses[-1][3] if self.statuses else 0

    @property
    def text(self) -> str:
        return " ".join(w.strip() for *_, w in self.words)

    def windows_contiguous(self) -> bool:
        """Every window followed on from the one before (no index skipped, no media left out between them)."""
        idx = [i for _, i, _, _, _ in self.windows]
        spans = [(s, e) for _, _, s, e, _ in self.windows]
        return bool(idx) and idx == list(range(idx[0], idx[0] + len(idx))) and all(
            b[0] <= a[1] for a, b in zip(spans, spans[1:]))

    def summary(self) -> dict:
        out = dataclasses.asdict(self)
        out.update(media_origin=self.media_origin, lag_slope_s_per_min=self.lag_slope_s_per_min,
                   dropped=self.dropped_frames, contiguous=self.windows_contiguous())
        return out


async def follow(url: str, source: str, name: str, *, realtime: bool = True, seconds: float | None = None,
                 on_message=None) -> StreamTrace:
    """Start `source` on the server as stream `name` and record it until it ends, or stop it after `seconds`.
    on_message(trace, message) may return True to stop the stream early."""
    trace = StreamTrace(name, source)
    async with VidsentClient(url, reconnect=False, open_timeout_s=30) as client:
        trace.started_at = time.monotonic()
        await client.start(source, stream=name, realtime=realtime)
        stop = asyncio.Event()

        async def read() -> None:
            async for message in client.messages():
                trace.observe(message, time.monotonic())
                if isinstance(message, EndMessage) and message.stream == name:
                    return
                if on_message is not None and on_message(trace, message):
                    stop.set()

        reader = asyncio.create_task(read())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([reader, stopper], timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not reader.done():
            await client.stop(name)
            try:
                await asyncio.wait_for(reader, 60)
            except TimeoutError:
                reader.cancel()
                trace.errors.append("no end within 60 s of stop")
        if reader.done() and not reader.cancelled() and reader.exception() is not None:
            trace.errors.append(repr(reader.exception()))
    return trace


class ServerSampler:
    """The server process's CPU seconds and RSS over a stretch of wall time (a sample every `every_s`)."""

    def __init__(self, server: ServerProcess, every_s: float = 1.0):
        self.server, self.every_s = server, every_s
        self.rss: list[tuple[float, float]] = []

    async def __aenter__(self) -> ServerSampler:
        self.t0, self.cpu0 = time.monotonic(), self.server.cpu_s()
        self.task = asyncio.create_task(self._sample())
        return self

    async def _sample(self) -> None:
        while True:
            self.rss.append((round(time.monotonic() - self.t0, 1), round(self.server.rss_mib(), 1)))
            await asyncio.sleep(self.every_s)

    async def __aexit__(self, *exc) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.wall_s = time.monotonic() - self.t0
        self.cores = (self.server.cpu_s() - self.cpu0) / self.wall_s if self.wall_s else float("nan")
        self.peak_rss = self.server.peak_rss_mib()
        self.max_rss = max((r for _, r in self.rss), default=float("nan"))


# -- material ----------------------------------------------------------------------------------------------------
FORMAT = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-r", "25", "-g", "50",
          "-c:a", "aac", "-b:a", "96k", "-ar", "48000", "-ac", "2"]
PICTURE = "scale=640:360:force_original_aspect_ratio=decrease,pad=640:360:(ow-iw)/2:(oh-ih)/2,setsar=1,fps=25"


@dataclass
class Material:
    cache: Path
    mixes: list[str]  # 10-minute streams, names inside `cache`
    long: str  # the 61-minute stream (RSS is read at its 10th and 60th minute)
    fast: str  # the first 120 s of mixes[0]
    made_s: dict[str, float] = field(default_factory=dict)  # what had to be made this run, and how long it took
    durations: dict[str, float] = field(default_factory=dict)


def ffmpeg(*args: str) -> None:
    done = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args[-1:])}: {done.stderr.strip()[-400:]}")


def clips() -> list[Path]:
    """The real clips spread evenly over one sequence, so that any ten minutes of it hold speech (each speech file
    three times), talking heads and music videos."""
    speech = sorted((DATA / "speech").glob("*.flac")) * 3
    videos = sorted((DATA / "videos").glob("*.mp4"))
    music = sorted((DATA / "musicvideos").glob("*/*.mp4"), key=lambda p: (p.stem.zfill(4), p.parent.name))
    placed = [((k + 0.5) / len(pool), n, clip) for n, pool in enumerate((speech, videos, music))
              for k, clip in enumerate(pool)]
    return [clip for *_, clip in sorted(placed, key=lambda x: x[:2])]


def normalise(clip: Path, target: Path) -> None:
    if clip.suffix == ".flac":  # speech alone: over a black frame, for as long as the speech lasts
        ffmpeg("-f", "lavfi", "-i", "color=black:s=640x360:r=25", "-i", str(clip), "-map", "0:v", "-map", "1:a",
               "-shortest", *FORMAT, str(target))
    else:  # the audio padded or cut to the picture's length, so that joined segments stay in sync
        ffmpeg("-i", str(clip), "-map", "0:v:0", "-map", "0:a:0", "-vf", PICTURE, "-af", "apad", "-shortest",
               *FORMAT, str(target))


def concat(parts: list[Path], target: Path, seconds: float | None = None) -> None:
    listing = target.with_suffix(".txt")
    listing.write_text("".join(f"file '{p.resolve()}'\n" for p in parts))
    limit = ["-t", str(seconds)] if seconds else []
    partial = target.with_name(target.stem + ".part" + target.suffix)
    ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), *limit, "-c", "copy", "-movflags", "+faststart",
           str(partial))
    partial.replace(target)
    listing.unlink()


def make_material(cache: Path, n_mixes: int = 8, mix_s: float = 600.0, long_parts: int = 6,
                  fast_s: float = 120.0) -> Material:
    cache.mkdir(parents=True, exist_ok=True)
    material = Material(cache, [f"mix{i}.mp4" for i in range(n_mixes)], "long60.mp4", "fast120.mp4")
    started = time.monotonic()
    segments, kinds = [], []  # kinds: speech, videos or musicvideos
    for clip in clips():
        kinds.append("musicvideos" if clip.parent.parent.name == "musicvideos" else clip.parent.name)
        target = cache / "segments" / f"{clip.parent.name}-{clip.stem}.mp4"
        if not target.exists():
            target.parent.mkdir(exist_ok=True)
            normalise(clip, target.with_suffix(".part.mp4"))
            target.with_suffix(".part.mp4").rename(target)
        segments.append(target)
    material.made_s["segments"] = round(time.monotonic() - started, 1)
    lengths = [clip_duration(s) for s in segments]
    # mix i: the sequence from its i-th speech clip on (so every stream has speech within seconds), mix_s long
    speech_at = [k for k, kind in enumerate(kinds) if kind == "speech"]
    jobs = []
    for i, name in enumerate(material.mixes):
        first = speech_at[i % len(speech_at)] if speech_at else i * len(segments) // n_mixes
        order, total = [], 0.0
        while total < mix_s + 5:
            k = (first + len(order)) % len(segments)
            order.append(segments[k])
            total += lengths[k]
        jobs.append((name, order, mix_s))
    # a minute past the last RSS mark: a stream's last window ends a little before its container's duration
    jobs.append((material.long, [cache / m for m in material.mixes[:long_parts + 1]], long_parts * mix_s + 60.0))
    # the fast file: speech and talking heads only (music videos hold little speech for Whisper to transcribe)
    jobs.append((material.fast, [seg for seg, kind in zip(segments, kinds) if kind != "musicvideos"], fast_s))
    for name, parts, limit in jobs:
        target, stamp = cache / name, cache / f"{name}.parts.json"
        wanted = json.dumps({"parts": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in parts],
                             "limit": limit})
        if not target.exists() or not stamp.exists() or stamp.read_text() != wanted:
            t = time.monotonic()
            concat(parts, target, limit)
            stamp.write_text(wanted)
            material.made_s[name] = round(time.monotonic() - t, 1)
    material.durations = {name: round(clip_duration(cache / name), 1)
                          for name in [*material.mixes, material.long, material.fast]}
    return material


def section_material(args, material: Material) -> list[Row]:
    made = material.made_s
    total = sum(made.values())
    fresh = [k for k in made if k != "segments"]
    value = (f"{total:.0f} s ({made['segments']:.0f} s re-encoding the clips, {', '.join(fresh) or 'nothing'} "
             f"joined)" if fresh or made["segments"] > 1 else "cached")
    d = material.durations
    return [Row("material", f"made {len(material.mixes)} × 10-min mixes + 60-min + 120-s file", value),
            Row("material", "durations (mix0 / long60 / fast120)",
                f"{d[material.mixes[0]]:.0f} / {d[material.long]:.0f} / {d[material.fast]:.0f} s")]


# -- streams through the server ------------------------------------------------------------------------------------
@dataclass
class StreamsRun:
    streams: int
    seconds: float
    window_p50: float
    window_p95: float
    window_client_p50: float
    window_client_p95: float
    word_p50: float
    word_p95: float
    words: int
    lag_max: float
    lag_slope_max: float | None  # the worst stream's, s per minute
    dropped: int
    server_cores: float
    server_rss_max: float
    server_peak_rss: float
    errors: list[str]
    traces: list[dict] = field(default_factory=list)


def pooled(traces: list[StreamTrace], attr: str) -> list[float]:
    return [x for t in traces for x in getattr(t, attr)()]


async def concurrent_run(server: ServerProcess, sources: list[str], seconds: float | None,
                         realtime: bool = True, prefix: str = "b") -> tuple[list[StreamTrace], ServerSampler]:
    async with ServerSampler(server) as sampler:
        traces = await asyncio.gather(*(follow(server.url, src, f"{prefix}{i}", realtime=realtime, seconds=seconds)
                                        for i, src in enumerate(sources)))
    return list(traces), sampler


def summarise_run(traces: list[StreamTrace], sampler: ServerSampler, seconds: float) -> StreamsRun:
    windows, client = pooled(traces, "window_latencies"), pooled(traces, "window_client_latencies")
    words = pooled(traces, "word_latencies")
    slopes = [s for s in (t.lag_slope_s_per_min for t in traces) if s is not None]
    return StreamsRun(
        streams=len(traces), seconds=seconds, window_p50=pct(windows, .5), window_p95=pct(windows, .95),
        window_client_p50=pct(client, .5), window_client_p95=pct(client, .95), word_p50=pct(words, .5),
        word_p95=pct(words, .95), words=len(words),
        lag_max=max((lag for t in traces for _, _, lag, _ in t.statuses), default=float("nan")),
        lag_slope_max=max(slopes) if slopes else None, dropped=sum(t.dropped_frames for t in traces),
        server_cores=round(sampler.cores, 3), server_rss_max=sampler.max_rss, server_peak_rss=sampler.peak_rss,
        errors=[e for t in traces for e in t.errors], traces=[t.summary() for t in traces])


async def section_streams(args, material: Material, log_dir: Path) -> tuple[list[Row], list[StreamsRun]]:
    server = ServerProcess(material.cache, log_dir / "serve-streams.log").start()
    runs, rows = [], []
    try:
        await server.wait_ready()
        for n in args.stream_counts:
            progress(f"streams: {n} concurrent real-time stream(s) for {args.seconds:.0f} s")
            sources = [material.mixes[i % len(material.mixes)] for i in range(n)]
            traces, sampler = await concurrent_run(server, sources, args.seconds, prefix=f"n{n}-")
            run = summarise_run(traces, sampler, args.seconds)
            runs.append(run)
            label = f"{n} stream{'s' if n > 1 else ''}"
            rows += [
                Row("streams", f"{label}: window latency p50 / p95 (server latency_s; client receive)",
                    f"{fmt(run.window_p50)} / {fmt(run.window_p95)} s; {fmt(run.window_client_p50)} / "
                    f"{fmt(run.window_client_p95)} s", f"p95 ≤ {WINDOW_P95_S:g} s",
                    at_most(run.window_p95, WINDOW_P95_S)),
                Row("streams", f"{label}: word latency p50 / p95 ({run.words} words)",
                    f"{fmt(run.word_p50)} / {fmt(run.word_p95)} s", f"p95 ≤ {WORD_P95_S:g} s",
                    at_most(run.word_p95, WORD_P95_S)),
                Row("streams", f"{label}: lag max / worst slope",
                    f"{fmt(run.lag_max)} s / {fmt(run.lag_slope_max, 3)} s/min",
                    f"slope ≤ {LAG_SLOPE_S_PER_MIN:g} s/min", at_most(run.lag_slope_max, LAG_SLOPE_S_PER_MIN)),
                Row("streams", f"{label}: dropped frames / server CPU / server RSS max (peak)",
                    f"{run.dropped} / {run.server_cores:.2f} cores / {run.server_rss_max:.0f} "
                    f"({run.server_peak_rss:.0f}) MiB"),
            ]
            if run.errors:
                rows.append(Row("streams", f"{label}: errors", "; ".join(run.errors[:3]), "none", False))
    finally:
        server.close()
    return rows, runs


# -- word latency and lost words on two_cities ----------------------------------------------------------------------
def lost_words(reference: str, hypothesis: str) -> list[str]:
    """Reference words the hypothesis leaves out (deleted in the alignment; a substitution is not a loss)."""
    ref, hyp = normalise_text(reference), normalise_text(hypothesis)
    lost = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ref, hyp, autojunk=False).get_opcodes():
        if op == "delete":
            lost += ref[i1:i2]
        elif op == "replace" and i2 - i1 > j2 - j1:
            lost += ref[i1 + (j2 - j1):i2]
    return lost


@dataclass
class WordsRun:
    asr: str
    word_p50: float
    word_p95: float
    words: int
    wer: float
    lost: list[str]
    lag_slope: float | None
    final_lag: float | None
    text: str
    server_cores: float
    trace: dict


async def section_words(args, log_dir: Path) -> tuple[list[Row], list[WordsRun]]:
    clip = "two_cities.flac"
    rows, runs = [], []
    for asr in args.word_asrs:
        progress(f"words: {clip}, one real-time stream, asr {asr}")
        server = ServerProcess(DATA / "speech", log_dir / f"serve-words-{asr}.log", asr=asr).start()
        try:
            await server.wait_ready()
            traces, sampler = await concurrent_run(server, [clip], None)
        finally:
            server.close()
        trace = traces[0]
        lat = trace.word_latencies()
        run = WordsRun(asr, pct(lat, .5), pct(lat, .95), len(lat), word_error_rate(TRANSCRIPTS[clip], trace.text),
                       lost_words(TRANSCRIPTS[clip], trace.text), trace.lag_slope_s_per_min, trace.final_lag_s,
                       trace.text, round(sampler.cores, 3), trace.summary())
        runs.append(run)
        rows += [
            Row("words", f"two_cities {asr}: word latency p50 / p95 ({run.words} words)",
                f"{fmt(run.word_p50)} / {fmt(run.word_p95)} s", f"p95 ≤ {WORD_P95_S:g} s",
                at_most(run.word_p95, WORD_P95_S)),
            Row("words", f"two_cities {asr}: lost reference words / WER",
                f"{len(run.lost)}{' (' + ' '.join(run.lost[:8]) + ')' if run.lost else ''} / {run.wer:.1%}",
                "0 lost", not run.lost),
            Row("words", f"two_cities {asr}: lag slope / final lag (keeps up)",
                f"{fmt(run.lag_slope, 3)} s/min / {fmt(run.final_lag)} s", f"slope ≤ {LAG_SLOPE_S_PER_MIN:g} s/min",
                at_most(run.lag_slope, LAG_SLOPE_S_PER_MIN)),
        ]
        if trace.errors:
            rows.append(Row("words", f"two_cities {asr}: errors", "; ".join(trace.errors[:3]), "none", False))
    return rows, runs


# -- analyze vs whisper alone vs decode alone ------------------------------------------------------------------------
@dataclass
class FastResult:
    file: str
    media_s: float
    analyze_s: float  # the per-file time `vidsent analyze` prints: the replay alone, models already loaded
    analyze_total_s: float  # the subprocess's whole wall time, model load included
    analyze_load_s: float  # "models ready in X s"
    whisper_s: float  # transcribe() with the segments consumed, model loaded and warmed
    whisper_load_s: float
    whisper_settings: str
    decode_s: float
    analyze_windows: int

    @property
    def over_whisper(self) -> float:
        return self.analyze_s / self.whisper_s

    @property
    def over_decode(self) -> float:
        return self.analyze_s / self.decode_s


def run_analyze(path: Path, out_json: Path) -> tuple[float, float, float, int]:
    command, env = vidsent("analyze", "--fast", str(path), "--json", str(out_json))
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    total = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"vidsent analyze failed ({done.returncode}): {(done.stderr or done.stdout)[-400:]}")
    load = float(done.stderr.split("models ready in ", 1)[1].split()[0])
    took = float(next(line for line in done.stdout.splitlines() if line.startswith("✓")).rsplit("|", 1)[1].split()[0])
    windows = len(json.loads(out_json.read_text())[0]["windows"])
    return took, total, load, windows


def whisper_alone(path: Path) -> tuple[float, float, str]:
    """faster-whisper's own transcribe() on the whole file with the model, threads and beam the pipeline uses."""
    import numpy as np

    from models.runtime import configure_runtime, runtime_plan
    from models.whisper import load_whisper
    from speech import transcribe_options

    device = configure_runtime("auto")
    started = time.monotonic()
    model = load_whisper("tiny.en", device)
    load_s = time.monotonic() - started
    model.transcribe(np.zeros(16000, dtype=np.float32), language="en", beam_size=1)  # one-off allocations
    plan = runtime_plan()
    settings = (f"tiny.en {device}, beam 1, {getattr(plan, 'asr_threads', '?')} thread(s), "
                f"{getattr(plan, 'asr_workers', 1)} worker(s), vad_filter, word timestamps")
    started = time.monotonic()
    segments, _ = model.transcribe(str(path), **transcribe_options())
    for _ in segments:
        pass
    return time.monotonic() - started, load_s, settings


async def decode_alone(path: Path) -> float:
    from cli import fast_analysis_config
    from engine import PipelineConfig
    from stream.sources import FileSource

    source = FileSource(path, realtime=False, sample_fps=fast_analysis_config(PipelineConfig()).sample_fps)
    started = time.monotonic()
    try:
        async for _ in source:
            pass
    finally:
        await source.close()
    return time.monotonic() - started


async def section_fast(args, material: Material, log_dir: Path) -> tuple[list[Row], list[FastResult]]:
    """`--fast-runs` rounds, each of analyze, whisper alone and decode alone back to back on the same file (so each
    ratio compares runs made moments apart); the table gives the median round and every round's ratio."""
    path = material.cache / material.fast
    runs: list[FastResult] = []
    for n in range(1, args.fast_runs + 1):
        progress(f"fast ({n}/{args.fast_runs}): vidsent analyze --fast {path.name} (subprocess)")
        took, total, load, windows = await asyncio.to_thread(run_analyze, path, log_dir / "analyze.json")
        progress(f"fast ({n}/{args.fast_runs}): faster-whisper alone")
        whisper_s, whisper_load, settings = await asyncio.to_thread(whisper_alone, path)
        progress(f"fast ({n}/{args.fast_runs}): decoding alone")
        decode_s = await decode_alone(path)
        runs.append(FastResult(str(path), material.durations[material.fast], round(took, 2), round(total, 2),
                               round(load, 2), round(whisper_s, 2), round(whisper_load, 2), settings,
                               round(decode_s, 2), windows))
    r = sorted(runs, key=lambda run: run.over_whisper)[len(runs) // 2]
    worst = max(run.over_whisper for run in runs)
    rows = [
        Row("fast", f"`vidsent analyze --fast` {r.media_s:.0f} s file (median of {len(runs)} rounds): replay (load "
                    f"excluded) / whole command",
            f"{r.analyze_s:.1f} s ({r.media_s / r.analyze_s:.1f}x real time) / {r.analyze_total_s:.1f} s "
            f"(models {r.analyze_load_s:.1f} s)"),
        Row("fast", f"faster-whisper alone ({r.whisper_settings}) / decode alone (FileSource, --fast frame rate)",
            f"{r.whisper_s:.1f} s / {r.decode_s:.1f} s"),
        Row("fast", "analyze / whisper alone: median (every round)",
            f"{r.over_whisper:.2f} ({', '.join(f'{run.over_whisper:.2f}' for run in runs)})",
            f"≤ {ANALYZE_OVER_WHISPER:g} every round", worst <= ANALYZE_OVER_WHISPER),
        Row("fast", "analyze / decode alone", f"{r.over_decode:.1f}"),
    ]
    return rows, runs


# -- cold start -------------------------------------------------------------------------------------------------------
@dataclass
class ColdStart:
    port_ready_s: float
    first_window_s: float
    first_window_media_end: float


async def section_cold(args, material: Material, log_dir: Path) -> tuple[list[Row], ColdStart]:
    progress("cold: vidsent serve → port → first window")
    server = ServerProcess(material.cache, log_dir / "serve-cold.log").start()
    try:
        port_s = await server.wait_ready()
        trace = await follow(server.url, material.mixes[0], "cold", seconds=60,
                             on_message=lambda t, m: isinstance(m, WindowMessage))
    finally:
        server.close()
    if not trace.windows:
        raise RuntimeError(f"no window within 60 s ({'; '.join(trace.errors) or 'no error'})")
    recv, _, _, t_end, _ = trace.windows[0]
    r = ColdStart(round(port_s, 2), round(recv - server.started_at, 2), t_end)
    return [Row("cold", "process start → port answers (models loaded)", f"{r.port_ready_s:.1f} s"),
            Row("cold", f"process start → first window (its media ends at {t_end:g} s, real time)",
                f"{r.first_window_s:.1f} s")], r


# -- RSS over a long stream -------------------------------------------------------------------------------------------
@dataclass
class RssResult:
    realtime: bool
    marks_min: list[float]
    rss_mib: dict[str, float]  # media minute → server RSS at the first window reaching it
    series: list[tuple[float, float]]  # (media minute, RSS) every media minute
    wall_s: float
    media_s: float
    peak_rss_mib: float


async def section_rss(args, material: Material, log_dir: Path) -> tuple[list[Row], RssResult]:
    marks = [m * 60 for m in args.rss_marks]
    mode = "real time" if args.rss_realtime else "as fast as possible"
    progress(f"rss: {material.long} {mode}, RSS at media minutes {args.rss_marks}")
    server = ServerProcess(material.cache, log_dir / "serve-rss.log").start()
    series: list[tuple[float, float]] = []
    rss: dict[str, float] = {}

    def watch(trace: StreamTrace, message) -> bool:
        if isinstance(message, WindowMessage):
            if not series or message.t_end >= (series[-1][0] + 1) * 60:
                series.append((round(message.t_end / 60, 2), round(server.rss_mib(), 1)))
            for mark in marks:
                if message.t_end >= mark and str(mark / 60) not in rss:
                    rss[str(mark / 60)] = round(server.rss_mib(), 1)
                    progress(f"rss: {mark / 60:g} media min: {rss[str(mark / 60)]} MiB")
            return message.t_end >= marks[-1]
        return False

    try:
        await server.wait_ready()
        started = time.monotonic()
        trace = await follow(server.url, material.long, "rss", realtime=args.rss_realtime, on_message=watch)
        wall = time.monotonic() - started
        peak = server.peak_rss_mib()
    finally:
        server.close()
    media = trace.windows[-1][3] if trace.windows else 0.0
    r = RssResult(args.rss_realtime, args.rss_marks, rss, series, round(wall, 1), media, peak)
    first, last = (rss.get(str(m / 60)) for m in (marks[0], marks[-1]))
    growth = None if first is None or last is None else last / first - 1
    return [Row("rss", f"server RSS at {args.rss_marks[0]:g} / {args.rss_marks[-1]:g} media min ({mode}; "
                       f"{media / 60:.0f} media min in {wall / 60:.1f} wall min)",
                f"{fmt(first, 0)} / {fmt(last, 0)} MiB ({'n/a' if growth is None else f'{growth:+.1%}'}), "
                f"peak {peak:.0f} MiB", f"within {RSS_GROWTH:.0%}",
                None if growth is None else abs(growth) <= RSS_GROWTH)], r


# -- 4 streams for 10 minutes ---------------------------------------------------------------------------------------
async def section_long(args, material: Material, log_dir: Path) -> tuple[list[Row], StreamsRun]:
    seconds = args.long_seconds
    progress(f"long: 4 concurrent real-time streams for {seconds / 60:g} min")
    server = ServerProcess(material.cache, log_dir / "serve-long.log").start()
    try:
        await server.wait_ready()
        full = seconds >= min(material.durations[m] for m in material.mixes[:4])
        traces, sampler = await concurrent_run(server, material.mixes[:4], None if full else seconds)
    finally:
        server.close()
    run = summarise_run(traces, sampler, seconds)
    final = max((t.final_lag_s or 0.0) for t in traces)
    complete = []
    for t in traces:
        played = (t.end or {}).get("duration") or 0.0
        last = t.windows[-1][3] if t.windows else 0.0
        complete.append(t.windows_contiguous() and last >= played - 2 * 4.0 and t.end is not None)
    return [
        Row("long", f"4 streams × {seconds / 60:g} min: worst lag slope / final lag",
            f"{fmt(run.lag_slope_max, 3)} s/min / {final:.2f} s",
            f"≤ {LAG_SLOPE_S_PER_MIN:g} s/min, < {FINAL_LAG_S:g} s",
            None if run.lag_slope_max is None else run.lag_slope_max <= LAG_SLOPE_S_PER_MIN and final < FINAL_LAG_S),
        Row("long", "4 streams: window p95 / word p95 / dropped frames (allowed)",
            f"{fmt(run.window_p95)} s / {fmt(run.word_p95)} s / {run.dropped}"),
        Row("long", "4 streams: audio complete (windows contiguous to the end of the media)",
            f"{sum(complete)} of {len(complete)}", "all", all(complete)),
        Row("long", "4 streams: server CPU / RSS max (peak)",
            f"{run.server_cores:.2f} cores / {run.server_rss_max:.0f} ({run.server_peak_rss:.0f}) MiB"),
    ], run


# -- the run ----------------------------------------------------------------------------------------------------------
async def main_async(args) -> int:
    sections = args.only or (QUICK_SECTIONS if args.quick else SECTIONS)
    log_dir = args.cache / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    raw: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "cpus": os.cpu_count(),
                 "args": {k: str(v) for k, v in vars(args).items()}, "sections": {}, "wall_s": {}}
    run_started = time.monotonic()
    material = None
    needs_material = set(sections) & {"material", "streams", "fast", "cold", "rss", "long"}
    for name in sections:
        started = time.monotonic()
        progress(f"section {name} …")
        try:
            if material is None and needs_material:
                progress("material: making (or finding) the long streams")
                material = await asyncio.to_thread(make_material, args.cache)
                raw["material"] = dataclasses.asdict(material)
            if name == "material":
                got = section_material(args, material)
                result = None
            elif name == "streams":
                got, result = await section_streams(args, material, log_dir)
            elif name == "words":
                got, result = await section_words(args, log_dir)
            elif name == "fast":
                got, result = await section_fast(args, material, log_dir)
            elif name == "cold":
                got, result = await section_cold(args, material, log_dir)
            elif name == "rss":
                got, result = await section_rss(args, material, log_dir)
            else:
                got, result = await section_long(args, material, log_dir)
            rows += got
            raw["sections"][name] = (dataclasses.asdict(result) if dataclasses.is_dataclass(result) else
                                     [dataclasses.asdict(r) for r in result] if result else None)
        except Exception as exc:  # noqa: BLE001 - one section's failure goes in the table, the rest go on
            progress(f"section {name} failed: {type(exc).__name__}: {exc}")
            rows.append(Row(name, "FAILED", f"{type(exc).__name__}: {str(exc)[:200]}", "runs", False))
            raw["sections"][name] = {"error": traceback.format_exc()}
        raw["wall_s"][name] = round(time.monotonic() - started, 1)
        progress(f"section {name} done in {raw['wall_s'][name]:.0f} s")
    raw["wall_s"]["total"] = round(time.monotonic() - run_started, 1)
    raw["rows"] = [dataclasses.asdict(r) for r in rows]
    print(f"\nvidsent benchmarks, {raw['started']}, {os.cpu_count()} CPUs, "
          f"{'quick' if args.quick else 'full'} run of {', '.join(sections)}: "
          f"{raw['wall_s']['total'] / 60:.1f} min wall\n")
    print_table(rows)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(raw, indent=1, default=str))
        progress(f"wrote {args.json}")
    return 0 if all(r.ok is not False for r in rows) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", type=lambda s: [x.strip() for x in s.split(",") if x.strip()], default=None,
                        help=f"comma-separated sections of {', '.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 20 s stream runs of 1 and 2 streams, tiny.en only, rss at 1 and 5 min, "
                             "long 60 s; sections material,streams,words,fast,cold unless --only")
    parser.add_argument("--seconds", type=float, default=None, help="wall seconds of each streams run (default 120)")
    parser.add_argument("--streams", default=None, help="stream counts of the streams section (default 1,2,4,8)")
    parser.add_argument("--fast-runs", type=int, default=None,
                        help="rounds of the fast section (analyze, whisper alone, decode alone); default 3, 1 with "
                             "--quick")
    parser.add_argument("--rss-realtime", action="store_true", help="the rss stream at real-time pace (an hour)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "vidsent" / "bench",
                        help="where the long material and the servers' logs go")
    parser.add_argument("--json", metavar="OUT", default=None, help="write every raw number here")
    parser.add_argument("--no-speakers", action="store_true",
                        help="servers without voice tracking (`vidsent serve --no-speakers`), to measure its cost")
    args = parser.parse_args(argv)
    if args.no_speakers:
        ServerProcess.extra = ("--no-speakers",)
    unknown = set(args.only or []) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}: choose from {', '.join(SECTIONS)}")
    if not DATA.is_dir():
        parser.error(f"the real data is missing ({DATA})")
    if shutil.which("ffmpeg") is None:
        parser.error("ffmpeg is needed to make the long material")
    args.seconds = args.seconds or (20.0 if args.quick else 120.0)
    args.stream_counts = [int(n) for n in (args.streams or ("1,2" if args.quick else "1,2,4,8")).split(",")]
    args.word_asrs = ["tiny.en"] if args.quick else ["tiny.en", "base"]
    args.rss_marks = [1.0, 5.0] if args.quick else [10.0, 60.0]
    args.long_seconds = 60.0 if args.quick else 600.0
    args.fast_runs = args.fast_runs if args.fast_runs is not None else (1 if args.quick else 3)
    if args.fast_runs < 1:
        parser.error("--fast-runs must be at least 1")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
