"""Who speaks when: the voice encoder (models/voices.py) and the online speaker tracker (speech/speakers.py) on real
recordings, through the live path itself: engine/voices.py's VoiceTrack fed as the pipeline feeds it (a second of new
audio a step, the VAD on the few seconds it looks back over, speech cut into stretches as it is settled, each
stretch embedded and given a speaker as it comes: engine.voices.follow_recording).

    .venv/bin/python benchmarks/speakers.py [--seeds 5] [--turns 20] [--out results.json]

- conversations: RAVDESS actors taking turns (../shared/data/ravdess, 16 kHz FLAC). Each turn is one or two
  sentences of one actor (each clip cut to its speech, ±0.1 s; the two of a turn share an emotion, 0.2 s apart), the
  turns 0.3-0.8 s apart, the emotion of each turn drawn from all eight (calm to angry, normal and strong intensity).
  Line-ups: a man and a woman, two men, two women, three people (two of one sex), for each seed other actors.
  Reported: the share of the VAD's speech time (inside the turns) whose speaker is right, under the best one-to-one
  mapping of the found speakers to the actors (Hungarian; time of unmapped speakers and of stretches left without
  a speaker counts as wrong), both as finally attributed and as attributed at the moment the stretch came (live,
  a pending stretch counted wrong); the number of speakers found against the true number;
- recordings: endgame_nagg_nell.flac (a two-person dialogue: 2 speakers expected; its turns are printed),
  two_cities.flac, beckett.flac and the vna_* talking-head videos (one speaker each);
- music videos (../shared/data/musicvideos, 52 clips of 30 s): speakers made per clip, the VAD's speech seconds per
  clip (Silero, as speech/vad.py runs it: most clips have none; the ones with many seconds have sung lyrics, which
  Whisper base transcribes);
- cost: voice-encoder seconds per second of media and of speech (one torch thread, as the scoring thread has),
  tracker microseconds per stretch.

Results (2-core CPU, speech/speakers.py's defaults, 5 seeds x 5 line-ups of 20 turns, actors 19-24, the live voice
track with its streaming VAD):

| turns' emotions | speech right (final) | right (live) | right number of speakers |
|---|---|---|---|
| `--emotions calm`: neutral, calm | 93.7 % | 85.7 % | 23/25 |
| all eight (default) | 75.8 % | 65.2 % | 8/25 (mostly one too many) |

per line-up (calm / all): man+woman 94.8 / 79.3, two men 91.3 / 67.7, two women 98.4 / 78.1, 2 m + 1 w 91.6 / 77.6,
1 m + 2 w 92.5 / 76.3.
endgame_nagg_nell: 2 speakers; two_cities, vna_original_2, vna_test: 1; beckett and the other vna clips (under 3.1 s
of speech, or only short phrases): none, never two. Music videos: no speaker on the 31 clips where the VAD hears
nothing nor on the 14 with only stray VAD hits, 8 speakers on the 7 clips with sung or rapped lyrics (Excited/58,
Excited/96 (2), Neutral/69, 71, 73, 75, Sad/deap_db_rel_31). A VAD restarted on each step's few seconds, as the
track's first version ran it, made speakers of 5 more clips' music (Relaxation/10 among them). Cost: 0.012 s of
encoder per second of speech, 0.005 per second of media; the tracker 0.2-0.35 ms per stretch.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import defaultdict
from itertools import permutations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.voices import VoiceTrack, follow_recording  # noqa: E402
from media import SAMPLE_RATE  # noqa: E402
from speech.speakers import SpeakerTracker  # noqa: E402
from testkit.data import DATA  # noqa: E402
from testkit.ravdess import Ravdess, load_audio, vad_regions  # noqa: E402

GRID_S = 0.01
LINEUPS = {"man+woman": ("male", "female"), "two men": ("male", "male"), "two women": ("female", "female"),
           "three (2 m + 1 f)": ("male", "male", "female"), "three (1 m + 2 f)": ("male", "female", "female")}


class Encoder:
    """The voice encoder, timed."""

    def __init__(self) -> None:
        import torch

        from models.voices import load_voice_encoder

        torch.set_num_threads(1)
        self.model = load_voice_encoder("cpu")
        self.seconds = 0.0
        self.audio_s = 0.0

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        t = time.perf_counter()
        out = self.model.embed(samples)
        self.seconds += time.perf_counter() - t
        self.audio_s += len(samples) / SAMPLE_RATE
        return out


# ---------------------------------------------------------------------------------------------- conversations
def _grid(n: int, spans, values) -> np.ndarray:
    out = np.full(n, -1, np.int64)
    for (a, b), v in zip(spans, values):
        if v is not None:
            out[int(round(a / GRID_S)):int(round(b / GRID_S))] = v
    return out


def best_mapping(truth: np.ndarray, found: np.ndarray) -> dict[int, int]:
    """found id → true id maximising the time they share (one to one)."""
    true_ids = sorted(set(truth[truth >= 0].tolist()))
    found_ids = sorted(set(found[found >= 0].tolist()))
    if not true_ids or not found_ids:
        return {}
    overlap = np.array([[np.sum((found == f) & (truth == t)) for t in true_ids] for f in found_ids], float)
    try:
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(-overlap)
        pairs = list(zip(rows.tolist(), cols.tolist()))
    except ImportError:  # brute force over the one-to-one maps of the smaller side into the larger: a few speakers
        n_found, n_true = len(found_ids), len(true_ids)
        if n_found <= n_true:
            candidates = [list(enumerate(p)) for p in permutations(range(n_true), n_found)]
        else:
            candidates = [[(i, j) for j, i in enumerate(p)] for p in permutations(range(n_found), n_true)]
        pairs = max(candidates, key=lambda ps: sum(overlap[i, j] for i, j in ps))
    return {found_ids[i]: true_ids[j] for i, j in pairs if overlap[i, j] > 0}


def attribution(truth_turns, regions, stretches, final: bool, tracker: SpeakerTracker, duration: float
                ) -> tuple[float, dict[int, int]]:
    """Share of the VAD speech time inside the turns given to the right speaker (best mapping), and the mapping."""
    n = int(duration / GRID_S) + 1
    truth = _grid(n, [(a, b) for a, b, _ in truth_turns], [w for _, _, w in truth_turns])
    speech = _grid(n, regions, [1] * len(regions)) == 1
    if final:
        found = _grid(n, [(s.start, s.end) for s in tracker.segments], [s.speaker for s in tracker.segments])
    else:
        found = _grid(n, [(a, b) for a, b, _ in stretches], [w for _, _, w in stretches])
    mask = speech & (truth >= 0)
    mapping = best_mapping(truth[mask], found[mask])
    mapped = np.array([mapping.get(int(f), -2) for f in found[mask]]) if mask.any() else np.zeros(0)
    return float(np.mean(mapped == truth[mask])) if mask.any() else float("nan"), mapping


def follow(audio: np.ndarray, encoder: Encoder) -> tuple[SpeakerTracker, list[tuple[float, float, int | None]]]:
    """The live voice track over a recording: its tracker and each stretch with the speaker it got as it came."""
    track = VoiceTrack(encoder)
    live = follow_recording(track, audio)
    return track.tracker, live


def run_conversations(encoder: Encoder, seeds: int, turns: int, emotions: str) -> list[dict]:
    ravdess = Ravdess(DATA / "ravdess")
    results = []
    for name, sexes in LINEUPS.items():
        for seed in range(seeds):
            rng = np.random.default_rng([seed, len(sexes), sum(s == "male" for s in sexes)])
            actors = ravdess.actors(sexes, rng)
            audio, truth = ravdess.conversation(actors, turns, rng, emotions)
            regions = vad_regions(audio)  # the speech the share is measured over
            tracker, live = follow(audio, encoder)
            duration = len(audio) / SAMPLE_RATE
            final_acc, mapping = attribution(truth, regions, live, True, tracker, duration)
            live_acc, _ = attribution(truth, regions, live, False, tracker, duration)
            results.append({"lineup": name, "seed": seed, "actors": actors, "seconds": round(duration, 1),
                            "speakers_true": len(actors), "speakers_found": len(tracker.speakers),
                            "attributed_right": round(final_acc, 4), "live_attributed_right": round(live_acc, 4),
                            "unattributed_s": round(sum(s.seconds for s in tracker.segments if s.speaker is None), 2),
                            "mapping": {str(k): v for k, v in mapping.items()}})
            print(f"{name:18s} seed {seed} actors {actors}: {len(tracker.speakers)} found / {len(actors)}, "
                  f"right {final_acc:.1%} (live {live_acc:.1%})", flush=True)
    return results


# -------------------------------------------------------------------------------------------- single recordings
def turns_of(tracker: SpeakerTracker) -> list[tuple[float, float, int | None]]:
    """The tracker's stretches merged into turns (consecutive stretches of one speaker)."""
    out: list[tuple[float, float, int | None]] = []
    for s in tracker.segments:
        if out and out[-1][2] == s.speaker and s.start - out[-1][1] < 2.0:
            out[-1] = (out[-1][0], s.end, s.speaker)
        else:
            out.append((s.start, s.end, s.speaker))
    return [(round(a, 2), round(b, 2), w) for a, b, w in out]


def run_recordings(encoder: Encoder) -> list[dict]:
    files = [(DATA / "speech" / "endgame_nagg_nell.flac", 2), (DATA / "speech" / "two_cities.flac", 1),
             (DATA / "speech" / "beckett.flac", 1)] + [(p, 1) for p in sorted((DATA / "videos").glob("vna_*.mp4"))]
    results = []
    for path, expected in files:
        audio = load_audio(path)
        regions = vad_regions(audio)
        tracker, _ = follow(audio, encoder)
        speech_s = sum(b - a for a, b in regions)
        results.append({"file": path.name, "seconds": round(len(audio) / SAMPLE_RATE, 1),
                        "speech_s": round(speech_s, 1), "speakers_expected": expected,
                        "speakers_found": len(tracker.speakers), "turns": turns_of(tracker)})
        print(f"{path.name:28s} {len(tracker.speakers)} speaker(s) found, {expected} expected "
              f"({speech_s:.1f} s of speech); turns: {turns_of(tracker)}", flush=True)
    return results


def run_music(encoder: Encoder) -> list[dict]:
    root = DATA / "musicvideos"
    results = []
    for row in csv.DictReader(open(root / "labels.csv")):
        audio = load_audio(root / row["path"])
        regions = vad_regions(audio)
        tracker, _ = follow(audio, encoder)
        results.append({"clip": row["path"], "seconds": round(len(audio) / SAMPLE_RATE, 1),
                        "vad_speech_s": round(sum(b - a for a, b in regions), 1), "stretches": len(tracker.segments),
                        "speakers": len(tracker.speakers)})
    for r in results:
        if r["vad_speech_s"] > 0:
            print(f"  {r['clip']:32s} VAD speech {r['vad_speech_s']:5.1f} s, {r['stretches']:2d} stretches, "
                  f"{r['speakers']} speaker(s)")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--emotions", choices=("all", "calm"), default="all",
                        help="the turns' emotions: any of the eight (default), or neutral and calm only")
    parser.add_argument("--skip", nargs="*", default=[], choices=("conversations", "recordings", "music"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    encoder = Encoder()
    report: dict = {}
    media_s = 0.0
    t_all = time.perf_counter()
    if "conversations" not in args.skip:
        conv = run_conversations(encoder, args.seeds, args.turns, args.emotions)
        media_s += sum(c["seconds"] for c in conv)
        by_lineup: dict[str, list[dict]] = defaultdict(list)
        for c in conv:
            by_lineup[c["lineup"]].append(c)
        report["conversations"] = {
            "per_conversation": conv,
            "per_lineup": {k: {"attributed_right_mean": round(float(np.mean([c["attributed_right"] for c in v])), 4),
                               "attributed_right_min": min(c["attributed_right"] for c in v),
                               "live_attributed_right_mean": round(float(np.mean(
                                   [c["live_attributed_right"] for c in v])), 4),
                               "right_speaker_count": sum(c["speakers_found"] == c["speakers_true"] for c in v),
                               "conversations": len(v)} for k, v in by_lineup.items()},
            "attributed_right_mean": round(float(np.mean([c["attributed_right"] for c in conv])), 4),
            "live_attributed_right_mean": round(float(np.mean([c["live_attributed_right"] for c in conv])), 4),
            "right_speaker_count": f"{sum(c['speakers_found'] == c['speakers_true'] for c in conv)}/{len(conv)}",
        }
    if "recordings" not in args.skip:
        rec = run_recordings(encoder)
        media_s += sum(r["seconds"] for r in rec)
        report["recordings"] = rec
    if "music" not in args.skip:
        music = run_music(encoder)
        media_s += sum(m["seconds"] for m in music)
        silent = [m for m in music if m["vad_speech_s"] == 0]
        voiced = [m for m in music if m["vad_speech_s"] > 0]
        report["music"] = {"clips": len(music), "clips_without_vad_speech": len(silent),
                           "speakers_on_clips_without_vad_speech": sum(m["speakers"] for m in silent),
                           "clips_with_vad_speech": len(voiced),
                           "speakers_on_clips_with_vad_speech": sum(m["speakers"] for m in voiced),
                           "clips_with_a_speaker": [m["clip"] for m in music if m["speakers"]],
                           "per_clip": music}
    tracker_cost = tracker_microseconds()
    report["cost"] = {"media_s": round(media_s, 1), "speech_embedded_s": round(encoder.audio_s, 1),
                      "encoder_s": round(encoder.seconds, 2),
                      "encoder_s_per_media_s": round(encoder.seconds / max(media_s, 1e-9), 4),
                      "encoder_s_per_speech_s": round(encoder.seconds / max(encoder.audio_s, 1e-9), 4),
                      "tracker_us_per_stretch": tracker_cost, "wall_s": round(time.perf_counter() - t_all, 1)}
    summary = {k: v for k, v in report.items() if k != "conversations"}
    if "conversations" in report:
        summary["conversations"] = {k: v for k, v in report["conversations"].items() if k != "per_conversation"}
    if "music" in summary:
        summary["music"] = {k: v for k, v in summary["music"].items() if k != "per_clip"}
    summary.pop("recordings", None)
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


def tracker_microseconds(stretches: int = 2000, speakers: int = 4) -> float:
    """The tracker's own cost per stretch on synthetic 256-d voices (a long stream: 2000 stretches)."""
    rng = np.random.default_rng(0)
    centres = np.abs(rng.normal(size=(speakers, 256)))
    tracker = SpeakerTracker()
    t = time.perf_counter()
    for i in range(stretches):
        v = np.abs(centres[i % speakers] + rng.normal(scale=0.4, size=256))
        tracker.add(i * 1.6, i * 1.6 + 1.5, v / np.linalg.norm(v))
        tracker.speaker_of(i * 1.6, i * 1.6 + 0.3)
    return round((time.perf_counter() - t) / stretches * 1e6, 1)


if __name__ == "__main__":
    main()
