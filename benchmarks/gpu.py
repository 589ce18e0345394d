"""The GPU path, measured: the same Engine, workers and batching code as on a CPU, with the models on `--device`.

    .venv/bin/python benchmarks/gpu.py                      # on a machine where torch sees a GPU (--device cuda)
    .venv/bin/python benchmarks/gpu.py --device cpu --streams 1,2   # the same measurements on the CPU, to compare

1. Batch throughput per modality through `ScorerSet.score` and `frames.analyze` at batch sizes 1, 8 and 32
   (windows/s and frames/s), on real windows of a real clip: what batching across streams buys on this device.
2. N concurrent streams of the clip replayed as fast as possible through one Engine (analyze_file): media seconds
   per wall second for the whole set, and the batcher's batch sizes (how many streams' windows it scored together).

Prints a markdown table; on a machine without a GPU, `--device cuda` stops with a one-line message.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import Engine, PipelineConfig, analyze_file  # noqa: E402
from models.runtime import resolve_device  # noqa: E402
from testkit.data import VIDEOS  # noqa: E402

DEFAULT_CLIP = VIDEOS / "vna_original_2.mp4"


def real_windows(engine: Engine, clip: Path) -> tuple[list, list]:
    """The windows (and the sampled frames) one replay of `clip` scores, recorded on their way to the batcher."""
    windows, images = [], []
    score, analyze = engine.score_window, engine.analyze_frames

    async def record_window(stream, window, has_audio, has_video):
        windows.append(window)
        return await score(stream, window, has_audio, has_video)

    async def record_frames(stream, batch):
        images.extend(batch)
        return await analyze(stream, batch)

    engine.score_window, engine.analyze_frames = record_window, record_frames
    try:
        asyncio.run(analyze_file(clip, engine, PipelineConfig()))
    finally:
        engine.score_window, engine.analyze_frames = score, analyze
    return windows, images


def per_second(fn, items: list, batch: int, repeats: int = 3) -> float:
    fn(items[:batch])  # warm-up (a GPU's kernels, allocator)
    started = time.perf_counter()
    done = 0
    for _ in range(repeats):
        for at in range(0, len(items), batch):
            fn(items[at:at + batch])
            done += len(items[at:at + batch])
    return done / (time.perf_counter() - started)


def streams_throughput(engine: Engine, clip: Path, n: int) -> tuple[float, float, int]:
    async def main():
        return await asyncio.gather(*(analyze_file(clip, engine, PipelineConfig()) for _ in range(n)))

    before = engine.batcher.stats.window_batches, engine.batcher.stats.windows
    started = time.perf_counter()
    results = asyncio.run(main())
    wall = time.perf_counter() - started
    batches = engine.batcher.stats.window_batches - before[0]
    windows = engine.batcher.stats.windows - before[1]
    return sum(r["duration"] for r in results) / wall, windows / max(batches, 1), engine.batcher.stats.largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    parser.add_argument("--asr", default="tiny.en", choices=("tiny.en", "base"))
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--streams", default="1,4,8,16", help="comma-separated stream counts")
    args = parser.parse_args()
    try:
        resolve_device(args.device)
    except RuntimeError as exc:
        raise SystemExit(f"benchmarks/gpu.py: {exc}") from None
    engine = Engine(asr=args.asr, device=args.device)
    try:
        windows, images = real_windows(engine, args.clip)
        scorers = engine.scorers
        rows = [("device / thread plan", f"{engine.device} / {engine.plan}")]
        for batch in (1, 8, 32):
            rows.append((f"windows/s, batch {batch}", f"{per_second(scorers.score, windows * 4, batch):.1f}"))
            rows.append((f"frames/s, batch {batch}", f"{per_second(scorers.frames.analyze, images, batch):.1f}"))
        for n in (int(s) for s in args.streams.split(",")):
            speed, mean_batch, largest = streams_throughput(engine, args.clip, n)
            rows.append((f"{n} streams as fast as possible: media s per wall s / windows per scoring batch "
                         "(largest batch, requests)",
                         f"{speed:.1f} / {mean_batch:.1f} ({largest})"))
    finally:
        engine.close()
    print(f"| measure ({args.clip.name}, asr {args.asr}) | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
