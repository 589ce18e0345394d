"""`vidsent analyze FILE...`: each file replayed as fast as possible through the live pipeline, its window timeline
and verdict printed and written as JSON and CSV; a bad file is reported and the rest go on."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import time
from pathlib import Path

from app import compose
from app.options import add_pipeline_arguments
from protocol import person_name

CSV_FIELDS = ["file", "index", "t_start", "t_end", "text_score", "audio_score", "visual_score", "fused_score",
              "fused_label", "graded", "rolling_score", "rolling_label", "language", "language_p", "transcript"]


def csv_rows(result: dict):
    for w in result["windows"]:
        row = {"file": result["file"], "index": w["index"], "t_start": w["t_start"], "t_end": w["t_end"],
               "fused_score": w["fused"]["score"], "fused_label": w["fused"]["label"], "graded": w["fused"]["graded"],
               "rolling_score": w["rolling"]["score"], "rolling_label": w["rolling"]["label"],
               "language": w.get("language"), "language_p": w.get("language_p"), "transcript": w["transcript"]}
        for m, s in w["modalities"].items():
            row[f"{m}_score"] = s["score"]
        yield row


def write_csv(path: str, results: list[dict]) -> None:
    """One row per window of each result ({file, windows}), the columns CSV_FIELDS, in UTF-8 (transcripts keep
    their own script)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for result in results:
            writer.writerows(csv_rows(result))


def fmt_score(score) -> str:
    return "  —  " if score is None else f"{score:.2f}"


# -- people (window `people`, the end summary's `people`) ---------------------------------------------------------
PERSON_MODALITIES = ("text", "audio", "visual")
PEOPLE_CSV_FIELDS = ["file", "index", "t_start", "t_end", "person_id", "person", "speaker", "seconds", "speaking",
                     "text_score", "audio_score", "visual_score", "fused_score", "fused_label", "rolling_score",
                     "rolling_label", "text_reason", "audio_reason", "visual_reason"]


def json_number(value) -> float | None:
    """A JSON number (not a bool), else None: what a history or a server sent is read, never trusted."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def json_int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def json_object(value) -> dict:
    return value if isinstance(value, dict) else {}


def person_modalities(modalities) -> str:
    """"T 0.31 A  —   V 0.62": a person's text, audio (voice) and visual (face) scores, — where missing."""
    verdicts = json_object(modalities)
    return " ".join(f"{m[0].upper()} {fmt_score(json_number(json_object(verdicts.get(m)).get('score')))}"
                    for m in PERSON_MODALITIES)


def person_summary_line(person: dict) -> str:
    """One person of an end summary (or of `analyze`'s result): their overall verdict, the means of their modalities,
    their seconds of speech, windows and when they were seen. A summary written before people had their own verdict
    (no `fused`) shows the face's mean valence instead."""
    fused = person.get("fused")
    if isinstance(fused, dict):
        label = person.get("label") or fused.get("label") or "—"
        verdict = f"{label} ({fmt_score(json_number(fused.get('score')))})" + (
            ", uncertain" if fused.get("uncertain") else "")
        verdict += f" | {person_modalities(person.get('modalities'))}"
    else:
        emotion = person.get("top_emotion")
        verdict = f"face {fmt_score(json_number(person.get('score')))}" + (
            f" ({emotion})" if isinstance(emotion, str) and emotion else "")
    facts = []
    seconds, windows = json_number(person.get("seconds")), json_int(person.get("windows"))
    if seconds:
        facts.append(f"{seconds:.1f} s spoken")
    if windows is not None:
        facts.append(f"{windows} window{'' if windows == 1 else 's'}")
    first, last = json_number(person.get("first_seen")), json_number(person.get("last_seen"))
    if first is not None and last is not None:
        facts.append(f"seen {first:.1f}–{last:.1f} s")
    return f"    {person_name(person)}: {verdict}" + (f" | {', '.join(facts)}" if facts else "")


def person_summary_lines(people, limit: int = 50) -> list[str]:
    """A line per person of a summary's `people` (the first `limit`, then how many more)."""
    people = [p for p in people if isinstance(p, dict)] if isinstance(people, list) else []
    lines = [person_summary_line(p) for p in people[:limit]]
    if len(people) > limit:
        lines.append(f"    +{len(people) - limit} more")
    return lines


def people_csv_rows(result: dict):
    """One row per person per window of a result ({file, windows}), the columns PEOPLE_CSV_FIELDS (a missing
    modality: its score empty, its reason in its *_reason column). Windows without `people` give no row."""
    for w in result["windows"]:
        people = w.get("people")
        for p in people if isinstance(people, list) else []:
            if not isinstance(p, dict):
                continue
            fused, rolling = json_object(p.get("fused")), json_object(p.get("rolling"))
            row = {"file": result["file"], "index": w.get("index"), "t_start": w.get("t_start"),
                   "t_end": w.get("t_end"), "person_id": p.get("id"), "person": p.get("person"),
                   "speaker": p.get("speaker"), "seconds": p.get("seconds"), "speaking": p.get("speaking"),
                   "fused_score": fused.get("score"), "fused_label": fused.get("label"),
                   "rolling_score": rolling.get("score"), "rolling_label": rolling.get("label")}
            modalities = json_object(p.get("modalities"))
            for m in PERSON_MODALITIES:
                verdict = json_object(modalities.get(m))
                row[f"{m}_score"] = verdict.get("score")
                if verdict.get("score") is None:
                    row[f"{m}_reason"] = verdict.get("reason")
            yield row


def write_people_csv(path: str, results: list[dict]) -> None:
    """One row per person per window of each result ({file, windows}), the columns PEOPLE_CSV_FIELDS, in UTF-8.
    Thumbnails are left out."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=PEOPLE_CSV_FIELDS)
        writer.writeheader()
        for result in results:
            writer.writerows(people_csv_rows(result))


FAST_MOUTH_FPS = 5.0


def fast_analysis_config(config):
    """`analyze --fast`: one sampled frame per 2 s hop instead of four (each 4 s window still pools two; kept when
    --fps sets another rate than the default), mouths read at FAST_MOUTH_FPS (unless --mouth-fps says), and the
    speech transcribed whole as faster-whisper's own transcribe() does it (speech.WholeFileASR), not in streaming
    passes; if the whole-file decode fails, 20-second passes on full 30 s windows. main_analyze also drops the
    text's key words. The windows, models and verdict rules stay the same."""
    from dataclasses import replace

    from engine import PipelineConfig

    fps = 0.5 if config.sample_fps == PipelineConfig.sample_fps else config.sample_fps
    # mouths at 5 fps instead of 8 (voices still tied to their faces in 22 of 24 turns: benchmarks/active_speaker.py)
    mouth_fps = FAST_MOUTH_FPS if config.mouth_fps == PipelineConfig.mouth_fps else config.mouth_fps
    return replace(config, sample_fps=fps, mouth_fps=mouth_fps, asr_fast_step_s=20.0, asr_whole_file=True)


def _favour_whisper(engine) -> None:
    """`analyze --fast` is bound by Whisper. The scoring (its thread and the audio encoder's CTranslate2 worker),
    the event loop and the decoding threads it starts from now on run at nice +10, so they fill Whisper's idle
    moments instead of slowing its passes. Whisper's threads started with the models and keep their priority."""
    from engine.workers import lower_thread_priority

    engine.lower_scoring_priority(10)
    lower_thread_priority(10)


def main_analyze(args) -> int:
    from engine import analyze_file

    try:
        config = compose.pipeline_config(args)
    except ValueError as exc:
        print(f"vidsent analyze: {exc}", file=sys.stderr)
        return 2
    pages = None
    if args.report:  # where each file's page goes, refused before any model loads when it cannot be
        from commands.report import report_paths

        try:
            pages = report_paths(args.report, args.files)
        except ValueError as exc:
            print(f"vidsent analyze: {exc}", file=sys.stderr)
            return 2
    if args.fast:
        config = fast_analysis_config(config)
        args.text_evidence = False  # the key words cost about ten text embeddings per window
    engine = compose.load_engine(args)
    if args.fast:
        _favour_whisper(engine)
    results, failed = [], 0
    try:
        for path in args.files:
            started = time.monotonic()
            result = asyncio.run(analyze_file(path, engine, config))
            took = time.monotonic() - started
            results.append(result)
            if "error" in result and not result["windows"]:
                failed += 1
                print(f"✗ {path}: {result['error']['message']} [{result['error']['code']}]")
                continue
            mods = " ".join(f"{m} {fmt_score(s['score'])}" for m, s in result["modalities"].items())
            languages = " ".join(f"{code} {share:.0%}" for code, share in result.get("languages", {}).items())
            if languages:
                mods += f" | speech: {languages}"
            print(f"✓ {path}: {result['duration']:.1f} s, {len(result['windows'])} windows → "
                  f"{result['label']} ({fmt_score(result['score'])}, {result['graded']}) | {mods} | {took:.1f} s")
            for line in person_summary_lines(result.get("people")):
                print(line)
    finally:
        engine.close()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    if args.csv:
        write_csv(args.csv, results)
        print(f"wrote {args.csv}")
    if args.people_csv:
        write_people_csv(args.people_csv, results)
        print(f"wrote {args.people_csv}")
    unwritten = 0
    if pages:
        from commands.report import write_reports

        unwritten = write_reports(pages, results)  # a page for each file, the ones that failed included
    if failed:
        print(f"{failed} of {len(args.files)} file(s) could not be analysed", file=sys.stderr)
    return 1 if failed or unwritten else 0


def add_analyze_arguments(parser: argparse.ArgumentParser) -> None:
    """`vidsent analyze`'s options."""
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--json", metavar="OUT", help="write every file's window timeline and verdict as JSON")
    parser.add_argument("--csv", metavar="OUT", help="write one CSV row per window")
    parser.add_argument("--people-csv", metavar="OUT",
                        help="write one CSV row per person per window (each face and voice with their own scores)")
    parser.add_argument("--report", metavar="PATH",
                        help="write each file's analysis as a self-contained HTML page that opens offline: PATH for "
                             "one file; a folder (made when missing) for several, one FILE-NAME.html per file")
    parser.add_argument("--fast", action="store_true",
                         help="throughput over detail: a frame every 2 s (unless --fps sets another rate), mouths "
                              "read at 5 fps (unless --mouth-fps does), 20-second speech-recognition passes and no "
                              "text key words (the same windows, models and verdicts otherwise)")
    add_pipeline_arguments(parser)
