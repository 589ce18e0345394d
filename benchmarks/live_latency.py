"""Live-path latency at real-time pace: how soon each window's message and each committed word follow the media.

    .venv/bin/python benchmarks/live_latency.py ../shared/data/speech/two_cities.flac [--streams N] [--asr base]
        [--language auto|xx[,yy]]

For every window: latency = wall time of its message − wall time its last media arrived (p50 / p95 / max).
For every committed word: latency = wall time of its commit − wall time the word's end was spoken.
Also lag over time (from status messages), dropped frames, the language changes statuses reported, the process's
peak RSS and each stream's speech-recognition compute per media second.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.options import add_model_arguments, language_choice  # noqa: E402
from engine import Engine, PipelineConfig, StreamPipeline  # noqa: E402
from protocol import StatusMessage, TranscriptMessage, WindowMessage  # noqa: E402
from stream.sources import FileSource  # noqa: E402
from testkit.stats import pct  # noqa: E402


async def run_stream(engine: Engine, path: str, name: str, config: PipelineConfig) -> dict:
    window_latency, word_latency, lags, languages = [], [], [], []
    state = {"start": None}

    def emit(message):
        now = time.monotonic()
        if isinstance(message, StatusMessage):
            if message.state == "running" and state["start"] is None:
                state["start"] = now
            lags.append(message.lag_s)
            if message.detail.startswith(("language", "speech in")):
                languages.append(f"{message.media_time:.1f} s: {message.detail}")
        elif isinstance(message, WindowMessage) and message.latency_s is not None:
            window_latency.append(message.latency_s)
        elif isinstance(message, TranscriptMessage) and message.final and state["start"] is not None:
            word_latency.extend(now - (state["start"] + w["end"]) for w in message.words)

    pipeline = StreamPipeline(name, FileSource(path, realtime=True, sample_fps=config.sample_fps), engine, config, emit)
    end = await pipeline.run()
    return {"name": name, "windows": window_latency, "words": word_latency, "lags": lags,
            "dropped": end.summary["dropped_frames"], "duration": end.summary["duration"], "languages": languages,
            "asr_rtf": pipeline.asr_busy_s / max(end.summary["duration"], 1e-9),
            "shares": end.summary.get("languages", {})}


async def main_async(args) -> None:
    engine = Engine(asr=args.asr, device=args.device, speakers=args.speakers)
    config = PipelineConfig(language=args.language)
    started = time.monotonic()
    results = await asyncio.gather(*(run_stream(engine, args.file, f"s{i}", config) for i in range(args.streams)))
    wall = time.monotonic() - started
    engine.close()
    print(f"{args.file}: {args.streams} stream(s) at real-time pace, asr={args.asr}, language={args.language}, "
          f"wall {wall:.1f} s")
    print(f"{'stream':8} {'win p50':>8} {'win p95':>8} {'win max':>8} {'word p50':>9} {'word p95':>9} "
          f"{'word max':>9} {'lag max':>8} {'lag end':>8} {'dropped':>8}")
    for r in results:
        print(f"{r['name']:8} {pct(r['windows'], .5):8.2f} {pct(r['windows'], .95):8.2f} "
              f"{max(r['windows'], default=0):8.2f} "
              f"{pct(r['words'], .5):9.2f} {pct(r['words'], .95):9.2f} {max(r['words'], default=0):9.2f} "
              f"{max(r['lags'], default=0):8.2f} {(r['lags'] or [0])[-1]:8.2f} {r['dropped']:8d}")
        print(f"         asr compute {r['asr_rtf']:.2f} s per media second; speech {r['shares']}")
        for change in r["languages"]:
            print(f"         {change}")
    all_windows = [x for r in results for x in r["windows"]]
    all_words = [x for r in results for x in r["words"]]
    print(f"all: window p95 {pct(all_windows, .95):.2f} s (n={len(all_windows)}), "
          f"word p95 {pct(all_words, .95):.2f} s (n={len(all_words)}), "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if all_words:
        print(f"word latency mean {statistics.mean(all_words):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file")
    parser.add_argument("--streams", type=int, default=1)
    add_model_arguments(parser, heads=False)
    parser.add_argument("--language", default="auto", type=language_choice)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
