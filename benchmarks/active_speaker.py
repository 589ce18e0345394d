"""Who is talking (#32): how often mouths must be sampled, and whether each voice gets bound to its face.

    .venv/bin/python benchmarks/active_speaker.py                    # both sections (about 5 min on 2 busy cores)
    .venv/bin/python benchmarks/active_speaker.py --only rates
    .venv/bin/python benchmarks/active_speaker.py --only turns --rates 8 --json out/active_speaker.json

rates   Every real clip of ../shared/data/videos with one face, frames sampled at each rate as the pipeline samples
        them (stream.decoding.sample_video: longer side ≤ 640 px), BlazeFace (full range) on every sampled frame, the
        face mesh (models/mouth.py) on the largest face: its lip_height and its opening. Windows of 1 s and 2 s every
        0.25 s: "talking" = a window inside the Silero VAD speech of a vna_* talking head's own audio, "still" = any
        window of the two face clips without a voice (pyfeat_WolfgangLanger_Pexels: 19.7 s of a face smiling,
        frowning, covering its mouth, never speaking, its audio digital silence; pyfeat_single_face: 2.4 s, a
        smile). For each window: the mouth movement (models.active_speaker.mouth_movement: mean |Δ measure| between
        consecutive samples); for each rate, how well it separates the two classes: ROC AUC, and the threshold with
        the best balanced accuracy with that accuracy. models.active_speaker.MOVING_THRESHOLDS are the 2 s
        lip_height thresholds of this table (25 fps's from `--rates 25`). Costs: BlazeFace and the mesh per frame,
        and per second of media for one face at that rate (mesh alone: the face followed from its last landmarks
        between detector frames, as MediaPipe does). The clips hold no silence of the same face long enough for a
        window, so "still" windows are other faces: this measures talking vs not-talking faces, not one face over
        time.

turns   A conversation made from real clips (testkit/talking_heads.py): panels side by side, 240 x 240 each, the
        composite scaled to 640 x 212 as the pipeline scales frames: vna_original_2 (A, 12.3 s, her own voice) |
        vna_test (B, 9 s, her own voice) | pyfeat_WolfgangLanger_Pexels (a listener who never speaks, playing
        throughout, forwards then backwards), and an off-screen voice (speech/beckett.flac, no face). They speak in
        turns, A, B, off-screen, A, ..., each turn the next ~2.5 s of the speaker's own speech (cut at its quietest
        moment) with its own audio and its own frames at the same clip time; 1 s of silence (faint noise) between
        turns; three rounds (`--rounds`; the later ones repeat the first's pieces). Outside its turns a speaker's
        panel holds the clip's most-closed-mouth frame with a slow sub-pixel head sway and sensor noise (the clips
        have no silent stretch of their own; their short pauses still move the mouth): the one made-up part.
        The stream: Silero VAD on the conversation's audio; the voice ids of its speech regions are the ground-truth
        turn they fall in (the voice clustering is built separately: this measures the binding, not the clustering);
        faces: BlazeFace on every sampled frame, ids from models.tracking.FaceTracker, the mesh on each; windows of
        4 s every 2 s fed to SpeakingFaces.update. Reported per rate:
          turns bound right   after the window that takes in a turn's end, its voice is bound to its speaker's
                              face (all turns; and after each voice's first turn)
          wrong bindings      windows after which any voice was bound to another face than its speaker's (the
                              listener's included), or the off-screen voice bound at all
          silent ticks        points every 0.25 s in the silences between turns (0.3 s from their ends, none the VAD
                              took for speech) at which a face was said to be speaking (SpeakingFaces.speaking_face
                              with the final binding). It is 0 by construction (a face speaks only while a voice's
                              segment covers the time, and a window without a voice scores every face 0): this
                              checks the plumbing (VAD on the gaps' faint noise), not a decision
          cost                detector and mesh time per second of media (3 faces: every face is read)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.active_speaker import SpeakingFaces, mouth_movement  # noqa: E402
from models.faces import FaceDetector  # noqa: E402
from models.mouth import mouth_reader  # noqa: E402
from models.tracking import FaceTracker  # noqa: E402
from testkit.data import DATA, VIDEOS  # noqa: E402

RATES = (2.0, 5.0, 8.0, 12.5)
TALKING_HEADS = ("vna_original_2", "vna_test", "vna_original_1", "vna_original_12", "vna_mosi_2.6", "vna_0008",
                 "vna_0001", "vna_videogpt_raw")
STILL_FACES = ("pyfeat_WolfgangLanger_Pexels", "pyfeat_single_face")
WINDOW_S, HOP_S = 4.0, 2.0


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    if not len(pos) or not len(neg):
        return float("nan")
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def best_threshold(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """(threshold, balanced accuracy) with talking = movement ≥ threshold."""
    best = (float("nan"), 0.0)
    for th in np.unique(np.concatenate([pos, neg])):
        acc = 0.5 * ((pos >= th).mean() + (neg < th).mean())
        if acc > best[1]:
            best = (float(th), float(acc))
    return best


SIGNALS = ("lip_height", "opening")  # MouthReading's measures: the first is what SpeakingFaces is given


def clip_series(path: Path, rate: float,
                detector: FaceDetector) -> tuple[dict[str, list[tuple[float, float]]], dict]:
    """(t, measure) of the largest face of each sampled frame for each of SIGNALS, and the time spent."""
    from stream.decoding import sample_video

    reader = mouth_reader()
    series: dict[str, list[tuple[float, float]]] = {signal: [] for signal in SIGNALS}
    detect_s, mesh_s, follow_s, frames, followed = 0.0, 0.0, 0.0, 0, 0
    last = None
    for frame in sample_video(path, rate):
        frames += 1
        a = time.perf_counter()
        boxes = detector.detect(frame.image)
        b = time.perf_counter()
        detect_s += b - a
        if not boxes:
            continue
        box = max(boxes, key=lambda f: f.box[2] - f.box[0])
        reading = reader.read(frame.image, box)
        c = time.perf_counter()
        mesh_s += c - b
        if last is not None:  # the same face followed from its last landmarks instead (cost only)
            reader.read(frame.image, last.face_box)
            follow_s += time.perf_counter() - c
            followed += 1
        last = reading
        if reading is not None:
            for signal in SIGNALS:
                series[signal].append((frame.t, getattr(reading, signal)))
    return series, {"frames": frames, "detect_s": detect_s, "mesh_s": mesh_s, "follow_s": follow_s,
                    "followed": followed}


def section_rates(rates: tuple[float, ...]) -> list[dict]:
    from speech.speakers import speech_regions
    from testkit.talking_heads import decode_audio

    detector = FaceDetector("full")
    speech = {name: speech_regions(decode_audio(VIDEOS / f"{name}.mp4")) for name in TALKING_HEADS}
    durations: dict[str, float] = {}
    rows = []
    for rate in rates:
        series, costs = {}, {"frames": 0, "detect_s": 0.0, "mesh_s": 0.0, "follow_s": 0.0, "followed": 0}
        for name in TALKING_HEADS + STILL_FACES:
            series[name], cost = clip_series(VIDEOS / f"{name}.mp4", rate, detector)
            times = series[name][SIGNALS[0]]
            durations[name] = max(durations.get(name, 0.0), times[-1][0] if times else 0.0)
            for k in costs:
                costs[k] += cost[k]
        row: dict = {"rate": rate,
                     "detect_ms": 1000 * costs["detect_s"] / costs["frames"],
                     "mesh_ms": 1000 * costs["mesh_s"] / costs["frames"],
                     "follow_ms": 1000 * costs["follow_s"] / max(costs["followed"], 1)}
        row["cost_ms_per_media_s"] = rate * (row["detect_ms"] + row["mesh_ms"])
        row["follow_cost_ms_per_media_s"] = rate * row["follow_ms"]
        for signal, length in ((signal, length) for signal in SIGNALS for length in (1.0, 2.0)):
            talking: list[float] = []
            still: list[float] = []
            for name, by_signal in series.items():
                s = by_signal[signal]
                for w0 in np.arange(0.0, durations[name] - length + 1e-9, 0.25):
                    w1 = w0 + length
                    if name in TALKING_HEADS and not any(a <= w0 and w1 <= b for a, b in speech[name]):
                        continue
                    m = mouth_movement(s, [(w0, w1)], max_gap_s=max(2.5 / rate, 0.6), min_pairs=1)
                    if m is not None:
                        (talking if name in TALKING_HEADS else still).append(m.mean_step)
                    elif name in TALKING_HEADS:
                        talking.append(0.0)  # too few samples to see it talk: counts as a miss
                    else:
                        still.append(0.0)
            pos, neg = np.array(talking), np.array(still)
            threshold, accuracy = best_threshold(pos, neg)
            row[f"{signal} {length:g}s"] = {"talking": len(pos), "still": len(neg), "auc": auc(pos, neg),
                                   "threshold": threshold, "balanced_accuracy": accuracy,
                                   "talking_median": float(np.median(pos)), "still_p90": float(np.quantile(neg, 0.9))}
        rows.append(row)
        print(f"  rates: {rate:g} fps done", file=sys.stderr, flush=True)
    return rows


def print_rates(rows: list[dict]) -> None:
    print("\n### Mouth movement: talking heads (voice active) vs faces that do not talk\n")
    print("| fps | lip_height 1 s: AUC, bal. acc | 2 s: AUC, bal. acc | threshold (2 s) | opening 1 s: AUC | "
          "2 s: AUC | detector ms/frame | mesh ms/face | ms per media s (detect + mesh) | "
          "ms per media s (mesh, followed) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        one, two = r["lip_height 1s"], r["lip_height 2s"]
        print(f"| {r['rate']:g} | {one['auc']:.2f}, {one['balanced_accuracy']:.2f} | {two['auc']:.2f}, "
              f"{two['balanced_accuracy']:.2f} | {two['threshold']:.3f} | {r['opening 1s']['auc']:.2f} | "
              f"{r['opening 2s']['auc']:.2f} | {r['detect_ms']:.1f} | {r['mesh_ms']:.1f} | "
              f"{r['cost_ms_per_media_s']:.0f} | {r['follow_cost_ms_per_media_s']:.0f} |")
    if rows:
        one, two = rows[0]["lip_height 1s"], rows[0]["lip_height 2s"]
        print(f"\n(windows: 1 s {one['talking']} talking / {one['still']} still, "
              f"2 s {two['talking']} / {two['still']})")


class _Face:
    def __init__(self, box: tuple[float, float, float, float]) -> None:
        self.box = box
        self.person: int | None = None


def section_turns(rates: tuple[float, ...], rounds: int) -> list[dict]:
    from testkit.talking_heads import decode_audio, speech_regions, talkers_and_listener

    off_screen = {"off-screen": decode_audio(DATA / "speech" / "beckett.flac")}
    conv = talkers_and_listener(VIDEOS, rounds, off_screen)
    regions = speech_regions(conv.audio)
    segments = []
    for a, b in regions:  # ground-truth voice ids: the turn each VAD region overlaps most
        overlaps = [(min(b, t.t1) - max(a, t.t0), t.voice) for t in conv.turns]
        overlap, voice = max(overlaps)
        if overlap > 0:
            segments.append((a, b, voice))
    speakers = {c.name: c.name for c in conv.speakers}  # voice → its panel
    detector, reader = FaceDetector("full"), mouth_reader()
    rows = []
    for rate in rates:
        tracker = FaceTracker()
        samples: list[tuple[float, int, float]] = []  # (t, person, lip height)
        panel_votes: dict[int, dict[str, int]] = {}
        detect_s = mesh_s = 0.0
        reads = 0
        for i in range(int(conv.duration * rate)):
            t = i / rate
            image = conv.frame_at(t)
            a = time.perf_counter()
            faces = [_Face(f.box) for f in detector.detect(image)]
            b = time.perf_counter()
            tracker.update(t, faces, image.shape[:2])
            for face in faces:
                reading = reader.read(image, face.box)
                reads += 1
                if reading is None or face.person is None:
                    continue
                samples.append((t, face.person, reading.lip_height))
                votes = panel_votes.setdefault(face.person, {})
                panel = conv.panel_of(face.box, image.shape[1])
                votes[panel] = votes.get(panel, 0) + 1
            c = time.perf_counter()
            detect_s += b - a
            mesh_s += c - b
        panel_of = {person: max(v, key=v.__getitem__) for person, v in panel_votes.items()}

        speaking = SpeakingFaces(frame_rate=rate)
        states = []  # (window end, binding voice → panel, silent window scores)
        w0 = 0.0
        while w0 < conv.duration:
            w1 = w0 + WINDOW_S
            series: dict[int, list[tuple[float, float]]] = {}
            for t, person, height in samples:
                if w0 <= t < w1:
                    series.setdefault(person, []).append((t, height))
            window_segments = [(a, b, v) for a, b, v in segments if b > w0 and a < w1]
            window_regions = [(max(a, w0), min(b, w1)) for a, b in regions if b > w0 and a < w1]
            scores = speaking.update(w0, w1, series, window_regions, window_segments)
            bound = {v: panel_of.get(p, f"person {p}") for v, p in speaking.binding().items()}
            silent_scores = [s for s in scores.values() if s > 0] if not window_regions else []
            states.append((w1, bound, silent_scores))
            w0 += HOP_S

        def state_after(t: float) -> dict[str, str]:
            return next((bound for end, bound, _ in states if end >= t), states[-1][1])

        on_screen_turns = [turn for turn in conv.turns if turn.voice in speakers]
        right = [state_after(turn.t1).get(turn.voice) == speakers[turn.voice] for turn in on_screen_turns]
        seen: set[str] = set()
        right_after_first = []
        for turn, ok in zip(on_screen_turns, right):
            if turn.voice in seen:
                right_after_first.append(ok)
            seen.add(turn.voice)
        wrong_pairs = [(round(end, 1), v, panel) for end, bound, _ in states for v, panel in bound.items()
                       if v not in speakers or panel != speakers[v]]
        wrong = len({end for end, _, _ in wrong_pairs})
        ticks = bad_ticks = 0
        for turn, after in zip(conv.turns, conv.turns[1:]):
            for t in np.arange(turn.t1 + 0.3, after.t0 - 0.3, 0.25):
                if any(a <= t <= b for a, b in regions):
                    continue  # the VAD heard something there (noise): not a silence of the stream
                ticks += 1
                bad_ticks += speaking.speaking_face(float(t), segments) is not None  # with the final binding
        row = {
            "rate": rate, "turns": len(right), "turns_right": int(sum(right)),
            "turns_after_first": len(right_after_first), "turns_after_first_right": int(sum(right_after_first)),
            "windows": len(states), "windows_wrong_binding": wrong, "wrong_bindings": wrong_pairs,
            "silent_ticks": ticks, "silent_ticks_with_a_speaking_face": int(bad_ticks),
            "voiceless_windows_scored_speaking": sum(1 for _, _, s in states if s),
            "final_binding": {str(v): p for v, p in state_after(conv.duration).items()},
            "evidence": {str(v): {panel_of.get(f, str(f)): {"hit": round(e.hit, 2), "elsewhere": round(e.elsewhere, 2),
                                                          "segments": e.segments}
                                  for f, e in faces.items()} for v, faces in speaking.evidence().items()},
            "detect_ms_per_media_s": 1000 * detect_s / conv.duration,
            "mesh_ms_per_media_s": 1000 * mesh_s / conv.duration, "mesh_reads": reads,
            "faces_tracked": len(panel_of),
        }
        rows.append(row)
        print(f"  turns: {rate:g} fps done", file=sys.stderr, flush=True)
    voices = list(dict.fromkeys(t.voice for t in conv.turns))
    counts = ", ".join(f"{v} {sum(t.voice == v for t in conv.turns)}" for v in voices)
    print(f"\nconversation: {conv.duration:.1f} s, {len(conv.turns)} turns ({counts}), "
          f"{len(segments)} VAD speech segments")
    return rows


def print_turns(rows: list[dict]) -> None:
    print("\n### Binding voices to faces in the made conversation\n")
    print("| fps | turns bound right | after each voice's first turn | windows with a wrong binding | silent ticks "
          "with a speaking face | ms per media s (detect, mesh; 3 faces) | final binding |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        share = 100 * r["turns_right"] / r["turns"]
        print(f"| {r['rate']:g} | {r['turns_right']}/{r['turns']} ({share:.0f} %) | "
              f"{r['turns_after_first_right']}/{r['turns_after_first']} | "
              f"{r['windows_wrong_binding']}/{r['windows']} | "
              f"{r['silent_ticks_with_a_speaking_face']}/{r['silent_ticks']} | "
              f"{r['detect_ms_per_media_s']:.0f}, {r['mesh_ms_per_media_s']:.0f} | {r['final_binding']} |")
    for r in rows:
        print(f"\nevidence at {r['rate']:g} fps (voice → face: hit, elsewhere, segments): "
              + "; ".join(f"{v} → " + ", ".join(f"{f} {e['hit']:.2f}/{e['elsewhere']:.2f}/{e['segments']}"
                                                for f, e in faces.items())
                          for v, faces in r["evidence"].items()))
        if r["wrong_bindings"]:
            print("wrong bindings (window end, voice, face): " + ", ".join(map(str, r["wrong_bindings"])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="rates,turns", help="sections: rates,turns")
    parser.add_argument("--rates", default=",".join(f"{r:g}" for r in RATES), help="face sampling rates (fps)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of turns in the conversation")
    parser.add_argument("--json", type=Path, help="write the numbers here too")
    args = parser.parse_args()
    if not VIDEOS.is_dir():
        sys.exit(f"the real clips are not at {VIDEOS}")
    rates = tuple(float(r) for r in args.rates.split(","))
    sections = set(args.only.split(","))
    out: dict = {}
    if "rates" in sections:
        out["rates"] = section_rates(rates)
        print_rates(out["rates"])
    if "turns" in sections:
        out["turns"] = section_turns(rates, args.rounds)
        print_turns(out["turns"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
