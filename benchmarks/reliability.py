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

The routines are testkit/reliability.py's; the tests run short versions of them (tests/test_reliability.py,
tests/test_faults.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import Engine  # noqa: E402
from testkit.reliability import (  # noqa: E402
    DEFAULT_CLIP,
    SHORT_CLIPS,
    ChurnResult,
    Holdings,
    SlowClientResult,
    SoakResult,
    SoakSample,
    StreamChurnResult,
    churn,
    slow_client,
    soak,
    stream_churn,
)


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
    if kind == "fake":  # constant scorers and a word-a-second transcriber
        from testkit.fakes import fake_engine

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
    from app.options import add_model_arguments

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
