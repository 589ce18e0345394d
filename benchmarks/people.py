"""Who feels what (issue #32): each person's own verdicts through the real pipeline, and what following people costs.

    .venv/bin/python benchmarks/people.py [--only dialogue,faces,live] [--out results.json]

- dialogue: RAVDESS actors held out of the voice and audio models (19-24), a woman and a man, one speaking only in a
  happy voice and the other only in an angry one, 16 turns (each one or two sentences, 0.3-0.8 s apart), replayed
  through the pipeline with voices tracked. Per person (found voice, mapped to the actor whose turns it overlaps
  most): the share of their windows (at least 0.5 s of their speech in it) whose voice score and fused score lie on
  their side of 0.5, and their rolling score's. Beside it the voice head's ceiling: each of the same turns scored
  alone by the audio scorer (a turn under 2 s is too short for it and left out);
- faces: two real talking heads side by side taking turns with their own voices and, right of them, a real face
  that never speaks (testkit.talking_heads, twice through their speech, 59 s), replayed: after each turn of a talker
  (from its second), is its voice tied to its own face; windows with a voice tied to a wrong face; whether any face
  is taken for the speaker in the silences between turns; mouth reads per media second and their cost;
- live: that conversation four times over (about 4 minutes) at real-time pace, with people followed and with
  `--no-speakers` (neither voices nor mouths): window latency p50 / p95, the lag's growth, the process's CPU.
Four real-time streams on the server: `benchmarks/run.py --only streams --streams 4` (its mixes hold talking heads,
so their mouths are read), with and without `--no-speakers`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import Engine, PipelineConfig, StreamPipeline  # noqa: E402
from protocol import StatusMessage, WindowMessage  # noqa: E402
from stream.sources import FileSource  # noqa: E402
from stream.windows import Window  # noqa: E402
from testkit.data import DATA  # noqa: E402
from testkit.people import face_panels, share, sides_right, voice_truth  # noqa: E402
from testkit.stats import pct  # noqa: E402

CACHE = Path.home() / ".cache" / "vidsent" / "bench" / "people"
HAPPY_ANGRY = [(20, 21), (21, 20), (22, 23), (23, 22), (24, 19), (19, 24)]  # (happy, angry): a woman and a man


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def replay(engine: Engine, path: Path, realtime: bool = False) -> tuple[StreamPipeline, list, list, float]:
    """(pipeline, windows, statuses, process CPU seconds) of one stream."""
    messages: list = []
    pipeline = StreamPipeline(path.stem, FileSource(path, realtime=realtime), engine, PipelineConfig(),
                              emit=messages.append)
    started = cpu_s()
    await pipeline.run()
    return (pipeline, [m for m in messages if isinstance(m, WindowMessage)],
            [m for m in messages if isinstance(m, StatusMessage)], cpu_s() - started)


# ------------------------------------------------------------------------------------------------------ dialogue
def section_dialogue(engine: Engine) -> list[dict]:
    from testkit.media import write_flac
    from testkit.ravdess import Ravdess

    ravdess = Ravdess(DATA / "ravdess")
    rows = []
    for seed, (happy, angry) in enumerate(HAPPY_ANGRY):
        progress(f"dialogue: actor {happy} happy, {angry} angry")
        audio, truth = ravdess.conversation([happy, angry], 16, np.random.default_rng(seed),
                                            emotion_of={happy: "happy", angry: "angry"})
        path = CACHE / f"dialogue-{happy}-{angry}-{seed}.flac"
        write_flac(path, audio)
        pipeline, windows, _, _ = asyncio.run(replay(engine, path))
        assert pipeline.voices is not None
        actor_of = voice_truth(pipeline.voices.segments_in(0.0, float("inf")), truth)
        sides = sides_right(windows, {v: a == happy for v, a in actor_of.items()})
        ceiling = turn_ceiling(engine, audio, truth, happy)
        for actor in (happy, angry):
            voices = [v for v, a in actor_of.items() if a == actor]
            rows.append({"happy": happy, "angry": angry, "actor": actor, "emotion": "happy" if actor == happy else
                         "angry", "voices": voices,
                         **{key: [ok for v in voices for ok in sides.get(v, {}).get(key, [])]
                            for key in ("audio", "fused", "rolling")},
                         "turns_alone": ceiling[actor]})
    return rows


def turn_ceiling(engine: Engine, audio: np.ndarray, truth, happy: int) -> dict[int, list[bool]]:
    """Each turn scored alone by the audio scorer: whether it lands on its speaker's side (turns under 2 s left out)."""
    from media import SAMPLE_RATE

    turns = [(audio[int(a * SAMPLE_RATE):int(b * SAMPLE_RATE)], actor) for a, b, actor in truth]
    windows = [Window(i, 0.0, len(clip) / SAMPLE_RATE, clip, [], []) for i, (clip, _) in enumerate(turns)]
    scores = engine.scorers.score(windows, True, False, ("audio",))
    out: dict[int, list[bool]] = {}
    for (_, actor), score in zip(turns, scores):
        out.setdefault(actor, [])
        if score["audio"].score is not None:
            out[actor].append((score["audio"].score >= 0.5) == (actor == happy))
    return out


def print_dialogue(rows: list[dict]) -> None:
    print("\n## dialogue: a happy and an angry RAVDESS actor (held out), 16 turns, per person\n")
    print("| happy / angry | person | windows | voice right | overall (fused) right | rolling right | "
          "turns alone (voice head) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['happy']} / {r['angry']} | {r['actor']} ({r['emotion']}, voices {r['voices']}) | "
              f"{len(r['fused'])} | {share(r['audio']):.0%} | {share(r['fused']):.0%} | {share(r['rolling']):.0%} | "
              f"{sum(r['turns_alone'])}/{len(r['turns_alone'])} |")
    for emotion in ("happy", "angry", None):
        chosen = [r for r in rows if emotion is None or r["emotion"] == emotion]
        flat = {k: [x for r in chosen for x in r[k]] for k in ("audio", "fused", "rolling", "turns_alone")}
        persons = sum(share(r["audio"]) >= 0.8 and share(r["fused"]) >= 0.8 for r in chosen)
        print(f"{emotion or 'all'}: voice {share(flat['audio']):.1%}, fused {share(flat['fused']):.1%}, rolling "
              f"{share(flat['rolling']):.1%} of {len(flat['fused'])} windows; persons at >= 80 % on both: "
              f"{persons}/{len(chosen)}; turns alone {share(flat['turns_alone']):.1%}")


# ---------------------------------------------------------------------------------------------------------- faces
def conversation(rounds: int):
    from testkit.talking_heads import talkers_and_listener, write_conversation

    conv = talkers_and_listener(DATA / "videos", rounds=rounds)
    path = CACHE / f"conversation-{rounds}.mp4"
    if not path.exists():
        progress(f"making {path.name} ({conv.duration:.0f} s)")
        write_conversation(conv, path)
    return path, conv


def section_faces(engine: Engine) -> dict:
    path, conv = conversation(2)
    started = time.monotonic()
    pipeline, windows, _, cpu = asyncio.run(replay(engine, path))
    wall = time.monotonic() - started
    assert pipeline.voices is not None and pipeline.mouths is not None and pipeline.people.speaking is not None
    panel_of = face_panels(pipeline.frames.results.between(0.0, float("inf")), conv)
    segments = pipeline.voices.segments_in(0.0, float("inf"))
    voice_of = voice_truth(segments, [(t.t0, t.t1, t.voice) for t in conv.turns])
    talkers = [c.name for c in conv.speakers]

    def bound_after(t: float) -> dict[int, int]:
        window = next((w for w in windows if w.t_end >= t), windows[-1])
        return {p["speaker"]: p["person"] for p in window.people if p["speaker"] is not None and p["person"]}

    turns, seen = [], set()
    for turn in conv.turns:
        if turn.voice not in talkers:
            continue
        spoken: dict[int, float] = {}
        for a, b, k in segments:
            overlap = min(b, turn.t1) - max(a, turn.t0)
            if overlap > 0:
                spoken[k] = spoken.get(k, 0.0) + overlap
        voice = max(spoken, key=lambda k: spoken[k]) if spoken else None
        face = bound_after(turn.t1 + 2.0).get(voice) if voice is not None else None
        turns.append({"t": round(turn.t0, 1), "who": turn.voice, "voice": voice, "first": turn.voice not in seen,
                      "right": face is not None and panel_of.get(face) == turn.voice})
        seen.add(turn.voice)
    wrong = [(w.t_end, p["speaker"], panel_of.get(p["person"])) for w in windows for p in w.people
             if p["speaker"] is not None and p["person"] is not None
             and voice_of.get(p["speaker"]) != panel_of.get(p["person"])]
    silences = [(a.t1 + 0.3, b.t0 - 0.3) for a, b in zip(conv.turns, conv.turns[1:])]
    ticks = [float(t) for a, b in silences for t in np.arange(a, b, 0.25)]
    speaking_in_silence = sum(pipeline.people.speaking.speaking_face(t, segments) is not None for t in ticks)
    return {"duration": conv.duration, "turns": turns, "wrong": wrong, "silence_ticks": len(ticks),
            "speaking_in_silence": speaking_in_silence, "faces": len(panel_of), "voices": len(voice_of),
            "binding": {str(v): panel_of.get(f) for v, f in pipeline.people.binding().items()},
            "mouth_reads_per_s": pipeline.mouths.reads / conv.duration,
            "mouth_ms_per_read": 1000 * pipeline.mouths.busy_s / max(pipeline.mouths.reads, 1),
            "mouth_ms_per_media_s": 1000 * pipeline.mouths.busy_s / conv.duration,
            "voice_ms_per_media_s": 1000 * pipeline.voices.busy_s / conv.duration,
            "replay_wall_s": wall, "replay_cpu_s": cpu}


def print_faces(r: dict) -> None:
    after_first = [t for t in r["turns"] if not t["first"]]
    print(f"\n## faces: two talking heads and a listener, {r['duration']:.0f} s\n")
    print(f"- turns whose voice is tied to its own face after it: {sum(t['right'] for t in r['turns'])}/"
          f"{len(r['turns'])} (from each talker's second turn: {sum(t['right'] for t in after_first)}/"
          f"{len(after_first)})")
    print(f"- windows with a voice tied to a wrong face: {len(r['wrong'])}; final binding {r['binding']}; "
          f"{r['faces']} faces, {r['voices']} voices")
    print(f"- a face taken for the speaker in a silence: {r['speaking_in_silence']} of {r['silence_ticks']} ticks")
    print(f"- mouths: {r['mouth_reads_per_s']:.1f} reads per media s, {r['mouth_ms_per_read']:.1f} ms a read, "
          f"{r['mouth_ms_per_media_s']:.0f} ms per media s; voices {r['voice_ms_per_media_s']:.0f} ms per media s")
    print(f"- replayed as fast as possible in {r['replay_wall_s']:.1f} s ({r['replay_cpu_s']:.1f} CPU s)")


# ----------------------------------------------------------------------------------------------------------- live
def section_live() -> list[dict]:
    path, conv = conversation(4)
    rows = []
    for speakers in (True, False):
        progress(f"live: {conv.duration:.0f} s at real-time pace, people {'on' if speakers else 'off'}")
        engine = Engine(asr="tiny.en", device="cpu", speakers=speakers)
        started = time.monotonic()
        pipeline, windows, statuses, cpu = asyncio.run(replay(engine, path, realtime=True))
        wall = time.monotonic() - started
        engine.close()
        latency = [w.latency_s for w in windows if w.latency_s is not None]
        lags = [(s.media_time, s.lag_s) for s in statuses if s.state == "running" and s.media_time > 0]
        slope = float(np.polyfit([m for m, _ in lags], [lag for _, lag in lags], 1)[0] * 60) if len(lags) > 2 else None
        rows.append({"people": speakers, "windows": len(windows), "p50": pct(latency, .5), "p95": pct(latency, .95),
                     "max": max(latency, default=float("nan")), "lag_slope_s_per_min": slope,
                     "lag_max": max((lag for _, lag in lags), default=0.0), "cores": cpu / wall,
                     "dropped": pipeline.dropped_frames,
                     "mouth_reads": pipeline.mouths.reads if pipeline.mouths else 0})
    return rows


def print_live(rows: list[dict]) -> None:
    print("\n## live: the conversation (3 faces, 2 talking) four times over at real-time pace\n")
    print("| people | windows | window p50 / p95 / max | lag slope | lag max | CPU | dropped frames | mouth reads |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        slope = "—" if r["lag_slope_s_per_min"] is None else f"{r['lag_slope_s_per_min']:.3f} s/min"
        print(f"| {'followed' if r['people'] else '--no-speakers'} | {r['windows']} | {r['p50']:.2f} / "
              f"{r['p95']:.2f} / {r['max']:.2f} s | {slope} | {r['lag_max']:.2f} s | {r['cores']:.2f} cores | "
              f"{r['dropped']} | {r['mouth_reads']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="dialogue,faces,live")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sections = set(args.only.split(","))
    CACHE.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    if sections & {"dialogue", "faces"}:
        engine = Engine(asr="tiny.en", device="cpu", speakers=True)
        if "dialogue" in sections:
            results["dialogue"] = section_dialogue(engine)
            print_dialogue(results["dialogue"])
        if "faces" in sections:
            results["faces"] = section_faces(engine)
            print_faces(results["faces"])
        engine.close()
    if "live" in sections:
        results["live"] = section_live()
        print_live(results["live"])
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
