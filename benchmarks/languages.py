"""Languages on real recorded speech: identification, transcription and following a switch, through the same
per-stream transcriber the live pipeline uses (live-sized passes, --language auto).

    .venv/bin/python benchmarks/languages.py MANIFEST… [--per-language 10] [--switches 12] [--out results.json]

Each MANIFEST is a CSV `path,language,reference[,…]` (paths relative to its folder; reference may be empty, then the
clip counts for identification only), e.g. the one scripts/build_multilingual_speech.py writes.

- identification: a clip counts as correct when the first language the tracker decides is its language, decided
  within 5 s of speech (the VAD's speech since the clip began), and never left for another later in the clip;
- transcription: WER (CER for Chinese and Japanese) of the committed words against the reference, per language
  (the errors summed over the clips, over the summed reference lengths);
- switching: clip A (one language) then, after 0.5 s of silence, clip B (another): seconds of B's speech until the
  tracker reports B's language (the target: within 6 s);
- cost: Whisper compute seconds per audio second, per language.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from media import SAMPLE_RATE  # noqa: E402
from speech.language import LanguageChoice  # noqa: E402
from speech.metrics import UNSPACED_LANGUAGES, characters, edit_distance  # noqa: E402
from speech.words import normalise_text  # noqa: E402

STEP_S = 0.75  # the pipeline's live step (PipelineConfig.asr_step_s); a language on Whisper base takes its own


def decode(path: Path) -> np.ndarray:
    from faster_whisper.audio import decode_audio

    return decode_audio(str(path), sampling_rate=SAMPLE_RATE)


def speech_seconds_before(audio: np.ndarray, t: float) -> float:
    from speech.vad import detect_speech

    speech = detect_speech(audio[: int(t * SAMPLE_RATE)], 0.0, min_silence_s=0.15, threshold=0.5)
    return sum(b - a for a, b in speech.regions)


def stream_clip(transcribers, audio: np.ndarray):
    """(committed words, [(media time, SpokenLanguage)], compute seconds) of one clip in live passes: audio comes in
    0.25 s pieces and a pass runs whenever the transcriber's step (its language's pace) is in, as in the pipeline."""
    asr = transcribers.streaming(STEP_S, True, LanguageChoice())
    words, states, busy = [], [], 0.0
    piece = int(0.25 * SAMPLE_RATE)
    for i in range(0, len(audio), piece):
        asr.insert_audio(audio[i:i + piece], i / SAMPLE_RATE)
        if asr.pending_audio_s < asr.step_s:
            continue
        started = time.perf_counter()
        update = asr.process()
        busy += time.perf_counter() - started
        words += update.committed
        states.append((min(i + piece, len(audio)) / SAMPLE_RATE, update.language))
    started = time.perf_counter()
    update = asr.finish()
    busy += time.perf_counter() - started
    return words + update.committed, states + [(len(audio) / SAMPLE_RATE, update.language)], busy


def errors(reference: str, hypothesis: str, language: str) -> tuple[int, int]:
    if language in UNSPACED_LANGUAGES:
        ref, hyp = characters(reference), characters(hypothesis)
    else:
        ref, hyp = normalise_text(reference), normalise_text(hypothesis)
    return edit_distance(ref, hyp), len(ref)


def write_stream(manifests: list[Path], language: str, seconds: float, out: Path) -> None:
    from testkit.media import write_flac

    paths = [manifest.parent / row["path"] for manifest in manifests
             for row in csv.DictReader(manifest.open(encoding="utf-8")) if row["language"] == language]
    if not paths:
        raise SystemExit(f"no clip in {language!r} in {', '.join(map(str, manifests))}")
    silence, pieces, filled, i = np.zeros(SAMPLE_RATE // 2, np.float32), [], 0, 0
    while filled < seconds * SAMPLE_RATE:
        clip = decode(paths[i % len(paths)])
        pieces += [clip, silence]
        filled, i = filled + len(clip) + len(silence), i + 1
    write_flac(out, np.concatenate(pieces)[: int(seconds * SAMPLE_RATE)])
    print(f"wrote {out}: {seconds:g} s of {language}, {i} clips")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifests", type=Path, nargs="+", metavar="MANIFEST")
    parser.add_argument("--per-language", type=int, default=10, help="clips per language at most")
    parser.add_argument("--switches", type=int, default=12, help="pairs of clips for the switch measurement")
    parser.add_argument("--asr", default="tiny.en", choices=["tiny.en", "base"])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--stream", nargs=3, metavar=("LANGUAGE", "SECONDS", "OUT"),
                        help="instead: write OUT (FLAC), a long stream of the manifests' clips in LANGUAGE, in their "
                             "order, 0.5 s of silence between them, again from the first until SECONDS are filled "
                             "(the Italian stream of the README's live figures: --stream it 600 it600.flac)")
    args = parser.parse_args()
    if args.stream:
        write_stream(args.manifests, args.stream[0], float(args.stream[1]), Path(args.stream[2]))
        return

    from engine.engine import WhisperTranscribers
    from models.runtime import configure_runtime

    device = configure_runtime("cpu")
    transcribers = WhisperTranscribers(args.asr, device)
    by_language: dict[str, list[dict]] = defaultdict(list)
    for manifest in args.manifests:
        for row in csv.DictReader(manifest.open(encoding="utf-8")):
            row["path"] = str(manifest.parent / row["path"])  # as given when absolute
            by_language[row["language"]].append(row)
    rng = random.Random(0)
    chosen = {code: rng.sample(items, min(args.per_language, len(items)))
              for code, items in sorted(by_language.items())}

    per_language: dict[str, dict] = {}
    for code, items in chosen.items():
        right, decide_s, err, ref_len, busy, audio_s = 0, [], 0, 0, 0.0, 0.0
        wrong: list[str] = []
        for row in items:
            audio = decode(Path(row["path"]))
            words, states, compute = stream_clip(transcribers, audio)
            busy += compute
            audio_s += len(audio) / SAMPLE_RATE
            decided = [(t, s.language) for t, s in states if s is not None and s.language is not None]
            first_t, first = decided[0] if decided else (None, None)
            within = first_t is not None and speech_seconds_before(audio, first_t) <= 5.0
            if first == code and within and {c for _, c in decided} == {code}:
                right += 1
                decide_s.append(speech_seconds_before(audio, first_t))
            else:
                wrong.append(f"{Path(row['path']).name}: {[c for _, c in decided][:1] or 'none'}")
            if row.get("reference"):
                e, n = errors(row["reference"], "".join(w.text for w in words), code)
                err, ref_len = err + e, ref_len + n
        per_language[code] = {
            "clips": len(items), "identified": right, "accuracy": round(right / len(items), 3),
            "speech_s_to_decide_median": round(float(np.median(decide_s)), 2) if decide_s else None,
            "metric": "CER" if code in UNSPACED_LANGUAGES else "WER",
            "error_rate": round(err / ref_len, 3) if ref_len else None, "reference_units": ref_len,
            "compute_per_audio_s": round(busy / max(audio_s, 1e-9), 3), "wrong": wrong,
        }
        print(f"{code}: {per_language[code]}", flush=True)

    switches = []
    codes = [c for c in chosen if chosen[c]]
    for k in range(args.switches if len(codes) > 1 else 0):
        first, second = rng.sample(codes, 2)
        a = decode(Path(rng.choice(chosen[first])["path"]))
        b_parts = [decode(Path(row["path"])) for row in rng.sample(chosen[second],
                                                                                      min(3, len(chosen[second])))]
        b = np.concatenate(b_parts)
        silence = np.zeros(SAMPLE_RATE // 2, np.float32)
        audio = np.concatenate([a, silence, b])
        switch_t = (len(a) + len(silence)) / SAMPLE_RATE
        _, states, _ = stream_clip(transcribers, audio)
        followed = next((t for t, s in states if t > switch_t and s is not None and s.language == second), None)
        speech_after = None
        if followed is not None:
            speech_after = round(speech_seconds_before(audio, followed) - speech_seconds_before(audio, switch_t), 2)
        switches.append({"from": first, "to": second, "followed_after_speech_s": speech_after,
                         "b_speech_s": round(speech_seconds_before(audio, len(audio) / SAMPLE_RATE)
                                             - speech_seconds_before(audio, switch_t), 2)})
        print(f"switch {k + 1}: {switches[-1]}", flush=True)

    identified = sum(v["identified"] for v in per_language.values())
    total = sum(v["clips"] for v in per_language.values())
    followed = [s["followed_after_speech_s"] for s in switches if s["followed_after_speech_s"] is not None]
    summary = {
        "identification_accuracy": round(identified / max(total, 1), 3), "clips": total,
        "switches_followed": f"{len(followed)}/{len(switches)}",
        "switch_speech_s_median": round(float(np.median(followed)), 2) if followed else None,
        "switch_speech_s_max": round(max(followed), 2) if followed else None,
        "within_6_s": sum(1 for s in followed if s <= 6.0),
    }
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps({"per_language": per_language, "switches": switches, "summary": summary},
                                       indent=1, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
