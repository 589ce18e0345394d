"""How late incremental ASR commits words when audio arrives at real-time pace, and how accurate it stays.

Default (simulated clock): audio "arrives" at real-time pace in 0.1 s chunks; a pass starts once step_s of new
audio is queued and the previous pass has returned, and takes exactly its measured compute time, so the run is
faster than real time but the timeline is the live one. --real really sleeps, with a feeder thread inserting
audio while passes run in the main thread. --fast queues the whole file at once and runs passes back to back
(file mode: each pass takes up to twice step_s of new audio).

Latency of a word = wall time its commit came back - media time its end was spoken.
WER is against the reference transcript where there is one, else against an offline transcription of the whole
file by Whisper base (beam 5, VAD; it transcribes two_cities.flac without an error).

    .venv/bin/python benchmarks/asr_latency.py                       # tiny.en, two_cities + endgame
    .venv/bin/python benchmarks/asr_latency.py --asr base
    .venv/bin/python benchmarks/asr_latency.py --fast --step 3
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from media import SAMPLE_RATE, Word  # noqa: E402
from speech import AsrUpdate, IncrementalASR, normalise_text, word_error_rate  # noqa: E402
from testkit.data import DATA, TRANSCRIPTS  # noqa: E402

SPEECH = DATA / "speech"
CHUNK_S = 0.1


def load_audio(path: Path) -> np.ndarray:
    from faster_whisper.audio import decode_audio

    return decode_audio(str(path), sampling_rate=SAMPLE_RATE).astype(np.float32)


def chunks(audio: np.ndarray):
    n = int(CHUNK_S * SAMPLE_RATE)
    for i in range(0, len(audio), n):
        yield i / SAMPLE_RATE, audio[i : i + n]


class Run:
    def __init__(self) -> None:
        self.words: list[Word] = []
        self.latencies: list[float] = []
        self.compute: list[float] = []
        self.lags: list[float] = []  # clock - processed_until after each pass

    def record(self, update: AsrUpdate, clock: float) -> None:
        self.compute.append(update.compute_s)
        self.lags.append(clock - update.processed_until)
        for w in update.committed:
            self.words.append(w)
            self.latencies.append(clock - w.end)

    @property
    def text(self) -> str:
        return "".join(w.text for w in self.words).strip()


def simulated(asr: IncrementalASR, audio: np.ndarray) -> Run:
    run, duration, clock = Run(), len(audio) / SAMPLE_RATE, 0.0
    feed = list(chunks(audio))
    fed = 0

    def arrive_until(t: float) -> None:
        nonlocal fed
        while fed < len(feed) and feed[fed][0] + len(feed[fed][1]) / SAMPLE_RATE <= t + 1e-9:
            asr.insert_audio(feed[fed][1], feed[fed][0])
            fed += 1

    while fed < len(feed):
        clock = max(clock, fed * CHUNK_S + max(0.0, asr.step_s - asr.pending_audio_s))
        arrive_until(clock)
        if fed == len(feed):
            break
        update = asr.process()
        clock += update.compute_s
        run.record(update, clock)
        arrive_until(clock)
    update = asr.finish()
    clock = max(clock, duration) + update.compute_s
    run.record(update, clock)
    return run


def real_time(asr: IncrementalASR, audio: np.ndarray) -> Run:
    run = Run()
    t_start = time.perf_counter()
    done = threading.Event()

    def feeder() -> None:
        for t, samples in chunks(audio):
            delay = t_start + t + len(samples) / SAMPLE_RATE - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            asr.insert_audio(samples, t)
        done.set()

    threading.Thread(target=feeder, daemon=True).start()
    while not done.is_set():
        if asr.pending_audio_s >= asr.step_s:
            update = asr.process()
            run.record(update, time.perf_counter() - t_start)
        else:
            time.sleep(0.01)
    update = asr.finish()
    run.record(update, time.perf_counter() - t_start)
    return run


def fast(asr: IncrementalASR, audio: np.ndarray) -> Run:
    """File mode: audio is decoded faster than it is transcribed, so a pass starts as soon as the last returns
    and finds everything queued (the worst case for the size of one pass)."""
    run = Run()
    started = time.perf_counter()
    for t, samples in chunks(audio):
        asr.insert_audio(samples, t)
    while asr.pending_audio_s >= asr.step_s:
        run.record(asr.process(), time.perf_counter() - started)
    run.record(asr.finish(), time.perf_counter() - started)
    return run


def offline_text(model, audio: np.ndarray) -> str:
    segments, _ = model.transcribe(audio, language="en", beam_size=5, vad_filter=True)
    return " ".join(s.text.strip() for s in segments)


def extra_repeats(hypothesis: list[str], reference: list[str], n: int = 6) -> int:
    """Word n-grams the hypothesis has more often than the reference: a phrase emitted twice shows up here."""
    def counts(words: list[str]) -> Counter:
        return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))

    ref = counts(reference)
    return sum(max(0, c - max(ref[g], 1)) for g, c in counts(hypothesis).items())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "files", nargs="*", type=Path, default=[SPEECH / "two_cities.flac", SPEECH / "endgame_nagg_nell.flac"]
    )
    parser.add_argument("--asr", default="tiny.en", choices=["tiny.en", "base"])
    parser.add_argument("--step", type=float, default=1.0)
    parser.add_argument("--beam", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="CTranslate2 CPU threads")
    parser.add_argument("--prompt", action="store_true", help="feed committed text as the prompt")
    parser.add_argument(
        "--encoder-window", type=float, default=20.0, help="shortest encoder window in s (30 = Whisper's own)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--real", action="store_true", help="really sleep (feeder thread)")
    mode.add_argument("--fast", action="store_true", help="file mode: all audio queued at once, no clock")
    parser.add_argument(
        "--reference-asr", default="base", choices=["tiny.en", "base"],
        help="model whose offline transcript (beam 5) is the reference where the file has none",
    )
    parser.add_argument("--show", action="store_true", help="print the committed transcript")
    args = parser.parse_args(argv)

    from models.whisper import load_whisper

    model = load_whisper(args.asr, device="cpu", cpu_threads=args.threads)
    warm = np.zeros(SAMPLE_RATE, dtype=np.float32)
    model.transcribe(warm, language="en", beam_size=1)  # first call pays one-off allocations
    for path in args.files:
        if not path.exists() and (SPEECH / path).exists():
            path = SPEECH / path
        if not path.exists():
            print(f"{path.name}: missing ({path})")
            continue
        audio = load_audio(path)
        duration = len(audio) / SAMPLE_RATE
        asr = IncrementalASR(
            model, step_s=args.step, beam_size=args.beam, use_prompt=args.prompt,
            encoder_window_s=args.encoder_window,
        )
        started = time.perf_counter()
        run = (fast if args.fast else real_time if args.real else simulated)(asr, audio)
        wall = time.perf_counter() - started
        reference = TRANSCRIPTS.get(path.name)
        label = "WER"
        if reference is None:
            reference_model = load_whisper(args.reference_asr, device="cpu", cpu_threads=args.threads)
            reference, label = offline_text(reference_model, audio), f"WER vs offline {args.reference_asr}"
        lat = np.array(run.latencies) if run.latencies else np.array([np.nan])
        compute = np.array(run.compute)
        mode_name = "fast" if args.fast else "real" if args.real else "simulated real-time"
        print(
            f"{path.name} ({duration:.1f} s, {args.asr}, step {args.step} s, beam {args.beam}, "
            f"encoder window {args.encoder_window:g} s, {mode_name})"
        )
        if not args.fast:
            print(
                f"  latency p50 {np.percentile(lat, 50):.2f} s  p95 {np.percentile(lat, 95):.2f} s  "
                f"max {lat.max():.2f} s  over {len(run.latencies)} words"
            )
            live = run.lags[:-1] or run.lags  # the last record is finish()
            print(
                f"  lag behind the stream after a pass: first {live[0]:.2f} s, last {live[-1]:.2f} s, "
                f"max {max(live):.2f} s"
            )
        print(
            f"  RTF {compute.sum() / duration:.3f} (compute {compute.sum():.2f} s, {len(compute)} passes, "
            f"p50 {np.median(compute):.3f} s, max {compute.max():.3f} s; wall {wall:.1f} s)"
        )
        repeats = extra_repeats(normalise_text(run.text), normalise_text(reference))
        print(f"  {label} {word_error_rate(reference, run.text):.3f}   "
              f"6-grams repeated beyond the reference: {repeats}")
        if args.show:
            print("  committed:", run.text)
            if label != "WER":
                print("  offline:  ", reference)


if __name__ == "__main__":
    main()
