"""The `vidsent` command: thin doors over the same pipeline and model code.

    vidsent serve                      start the websocket server (same as `python server.py`)
    vidsent watch SOURCE               print a stream's rolling sentiment live (in-process, or via --server)
    vidsent analyze FILE... --json OUT replay files as fast as possible; full window timeline + overall verdict
    vidsent history list|show|export   read back the streams a server kept (windows, transcript, alerts, ends)
    vidsent embed | train | evaluate   build embedding caches, train heads, evaluate modalities and fusion
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import server as server_module  # noqa: E402 - the environment must be set before models import transformers


def _load_engine(args):
    print(f"loading models (asr={args.asr}, device={args.device}) …", file=sys.stderr, flush=True)
    started = time.monotonic()
    engine = server_module.build_engine(args)
    print(f"models ready in {time.monotonic() - started:.1f} s (device {engine.device})", file=sys.stderr, flush=True)
    return engine


# -- analyze ---------------------------------------------------------------------------------------------------

CSV_FIELDS = ["file", "index", "t_start", "t_end", "text_score", "audio_score", "visual_score", "fused_score",
              "fused_label", "graded", "rolling_score", "rolling_label", "transcript"]


def _csv_rows(result: dict):
    for w in result["windows"]:
        row = {"file": result["file"], "index": w["index"], "t_start": w["t_start"], "t_end": w["t_end"],
               "fused_score": w["fused"]["score"], "fused_label": w["fused"]["label"], "graded": w["fused"]["graded"],
               "rolling_score": w["rolling"]["score"], "rolling_label": w["rolling"]["label"],
               "transcript": w["transcript"]}
        for m, s in w["modalities"].items():
            row[f"{m}_score"] = s["score"]
        yield row


def _write_csv(path: str, results: list[dict]) -> None:
    """One row per window of each result ({file, windows}), the columns CSV_FIELDS."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for result in results:
            writer.writerows(_csv_rows(result))


def _fmt(score) -> str:
    return "  —  " if score is None else f"{score:.2f}"


def fast_analysis_config(config):
    """`analyze --fast`: one sampled frame per 2 s hop instead of four (each 4 s window still pools two; kept when
    --fps sets another rate than the default), and the speech transcribed whole as faster-whisper's own transcribe()
    does it (stream.asr.WholeFileASR), not in streaming passes; if the whole-file decode fails, 20-second passes on
    full 30 s windows. main_analyze also drops the text's key words. The windows, models and verdict rules stay
    the same."""
    from dataclasses import replace

    from pipeline import PipelineConfig

    fps = 0.5 if config.sample_fps == PipelineConfig.sample_fps else config.sample_fps
    return replace(config, sample_fps=fps, asr_fast_step_s=20.0, asr_whole_file=True)


def _favour_whisper(engine) -> None:
    """`analyze --fast` is bound by Whisper. The scoring (its thread and the audio encoder's CTranslate2 worker),
    the event loop and the decoding threads it starts from now on run at nice +10, so they fill Whisper's idle
    moments instead of slowing its passes. Whisper's threads started with the models and keep their priority."""
    from workers import lower_thread_priority

    engine.lower_scoring_priority(10)
    lower_thread_priority(10)


def main_analyze(args) -> int:
    from pipeline import analyze_file

    try:
        config = server_module.pipeline_config(args)
    except ValueError as exc:
        print(f"vidsent analyze: {exc}", file=sys.stderr)
        return 2
    if args.fast:
        config = fast_analysis_config(config)
        args.text_evidence = False  # the key words cost about ten text embeddings per window
    engine = _load_engine(args)
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
            mods = " ".join(f"{m} {_fmt(s['score'])}" for m, s in result["modalities"].items())
            print(f"✓ {path}: {result['duration']:.1f} s, {len(result['windows'])} windows → "
                  f"{result['label']} ({_fmt(result['score'])}, {result['graded']}) | {mods} | {took:.1f} s")
    finally:
        engine.close()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {args.json}")
    if args.csv:
        _write_csv(args.csv, results)
        print(f"wrote {args.csv}")
    if failed:
        print(f"{failed} of {len(args.files)} file(s) could not be analysed", file=sys.stderr)
    return 1 if failed else 0


# -- watch -----------------------------------------------------------------------------------------------------

class LivePrinter:
    """Prints one line per window and keeps a status line at the bottom of a terminal."""

    def __init__(self, stream=sys.stdout):
        self.out = stream
        self.tty = stream.isatty()
        self.status = ""

    def _line(self, text: str) -> None:
        if self.tty:
            self.out.write("\r\033[K" + text + "\n" + self.status)
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def __call__(self, message) -> None:
        from protocol import AlertMessage, EndMessage, ErrorMessage, StatusMessage, TranscriptMessage, WindowMessage

        if isinstance(message, WindowMessage):
            mods = " ".join(f"{m[0].upper()} {_fmt(s['score'])}" for m, s in message.modalities.items())
            rolling = message.rolling
            self._line(f"[{message.t_start:6.1f}–{message.t_end:6.1f}s] rolling {_fmt(rolling['score'])} "
                       f"{(rolling['label'] or '—'):8} {(rolling['graded'] or ''):16} | {mods} | "
                       f"{message.transcript[:60]}")
        elif isinstance(message, TranscriptMessage) and message.final:
            self._line(f"  » {message.text}")
        elif isinstance(message, StatusMessage):
            self.status = (f"status: {message.state} · media {message.media_time:.1f} s · lag {message.lag_s:.1f} s · "
                           f"dropped frames {message.dropped_frames} {message.detail}")
            if self.tty:
                self.out.write("\r\033[K" + self.status)
                self.out.flush()
            elif message.detail:
                self._line(self.status)
        elif isinstance(message, ErrorMessage):
            self._line(f"error [{message.code}]: {message.message}")
        elif isinstance(message, AlertMessage):
            if message.state == "raised":
                self._line(f"⚠ alert {message.rule}: {message.signal} {_fmt(message.value)} since "
                           f"{message.t_start:.1f} s")
            else:
                why = message.detail or f"{message.signal} {_fmt(message.value)}"
                self._line(f"✓ alert {message.rule} cleared at {message.t_end:.1f} s ({why})")
        elif isinstance(message, EndMessage):
            s = message.summary
            self.status = ""
            self._line(f"end ({s.get('reason')}): {s.get('windows', 0)} windows, overall {s.get('label')} "
                       f"({_fmt(s.get('score'))}, {s.get('graded')})")


async def _watch_in_process(args, printer: LivePrinter) -> int:
    from monitor.alerts import AlertMonitor, AlertRuleError, load_rules
    from pipeline import StreamPipeline
    from stream.sources import SourceError, open_source

    config = server_module.pipeline_config(args)
    try:
        rules = load_rules(args.alert, args.alerts)
        source = open_source(args.source, realtime=not args.fast, sample_fps=config.sample_fps)
    except AlertRuleError as exc:
        print(f"vidsent watch: {exc}", file=sys.stderr)
        return 2
    except SourceError as exc:
        print(f"vidsent watch: {exc.message}", file=sys.stderr)
        return 1
    engine = _load_engine(args)
    alerts = AlertMonitor(rules, publish=lambda stream, message: printer(message)) if rules else None

    def emit(message):
        if alerts is not None:
            alerts.observe(message)
        printer(message)
    try:
        pipeline = StreamPipeline("watch", source, engine, config, emit=emit)
        run = asyncio.create_task(pipeline.run())
        try:
            end = await asyncio.shield(run)
        except asyncio.CancelledError:
            pipeline.stop()
            end = await run
    finally:
        engine.close()
    return 0 if end.summary["reason"] in ("eof", "stopped") else 1


async def _watch_remote(args, printer: LivePrinter) -> int:
    from client.ws_client import VidsentClient
    from protocol import EndMessage, ErrorMessage

    async with VidsentClient(args.server, token=args.token) as client:
        if args.subscribe:
            stream = await client.subscribe(args.source)
        else:
            stream = await client.start(args.source, realtime=not args.fast)
        async for message in client.messages():
            printer(message)
            if isinstance(message, EndMessage) and message.stream == stream:
                return 0 if message.summary.get("reason") in ("eof", "stopped") else 1
            if isinstance(message, ErrorMessage) and message.stream in (None, stream) and message.code != "internal":
                if message.stream is None:
                    return 1
    return 1


def main_watch(args) -> int:
    from websockets.exceptions import InvalidHandshake

    from client.ws_client import VidsentError

    printer = LivePrinter()
    runner = _watch_remote if args.server else _watch_in_process
    try:
        return asyncio.run(runner(args, printer))
    except KeyboardInterrupt:
        return 130
    except (OSError, ConnectionError) as exc:
        print(f"vidsent watch: cannot reach {args.server}: {exc}", file=sys.stderr)
        return 1
    except VidsentError as exc:  # the server refused the request
        print(f"vidsent watch: {exc}", file=sys.stderr)
        return 1
    except InvalidHandshake as exc:  # e.g. HTTP 401: no or a wrong --token; 403: origin; 503: too many clients
        print(f"vidsent watch: {args.server} refused the connection: {exc}", file=sys.stderr)
        return 1


# -- history ---------------------------------------------------------------------------------------------------

def _when(wall: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall)) if wall else "—"


def _print_runs(runs: list[dict]) -> None:
    columns = ("run", "stream", "source", "started", "ended", "reason", "windows")
    table = [columns] + [(str(r["run"]), r["stream"], r["source"] or "—", _when(r["started"]), _when(r["ended"]),
                          r["reason"] or "running", str(r["windows"])) for r in runs]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _show_run(run: dict, messages: list[dict]) -> None:
    from protocol import SERVER_MESSAGES, parse_message

    print(f"run {run['run']}: stream {run['stream']} ({run['source'] or 'source unknown'}), "
          f"{_when(run['started'])} → {_when(run['ended'])} ({run['reason'] or 'running'})")
    printer = LivePrinter()
    for message in messages:
        if message["type"] in SERVER_MESSAGES:
            printer(parse_message(message))


def _export_run(run: dict, messages: list[dict], json_out: Path | None, csv_out: Path | None) -> int:
    writers = []
    if json_out:
        writers.append((json_out, lambda: json_out.write_text(
            json.dumps({**run, "messages": messages}, indent=2, ensure_ascii=False) + "\n")))
    if csv_out:
        windows = [m for m in messages if m["type"] == "window"]
        writers.append((csv_out, lambda: _write_csv(str(csv_out), [{"file": run["source"] or run["stream"],
                                                                    "windows": windows}])))
    for out, write in writers:
        try:
            write()
        except OSError as exc:  # a missing folder, a directory, no permission, a full disk
            print(f"vidsent history export: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"wrote {out}")
    return 0


def _history_action(args, reader) -> int:
    if args.action == "list":
        _print_runs(reader.runs(args.stream))
        return 0
    run = reader.run_of(args.stream, args.run)
    if run is None:
        which = f"run {args.run} of stream" if args.run is not None else "stream"
        print(f"vidsent history: no {which} {args.stream!r} in {reader.path}", file=sys.stderr)
        return 1
    messages = list(reader.messages(run["run"]))
    if args.action == "show":
        _show_run(run, messages)
        return 0
    return _export_run(run, messages, args.json, args.csv)


def main_history(args) -> int:
    """Every failure is one line on stderr: 2 for a bad argument (argparse's code), 1 for a history that cannot be
    read (missing, not a vidsent history, damaged), a stream or run it does not hold, or an export not written."""
    import sqlite3

    from monitor.history import HistoryReader, NotAHistory, default_path

    path = args.history or default_path()
    if args.action == "export" and not (args.csv or args.json):
        print("vidsent history export: give --csv OUT and/or --json OUT", file=sys.stderr)
        return 2
    try:
        with HistoryReader(path) as reader:
            code = _history_action(args, reader)
        sys.stdout.flush()  # a closed pipe shows here, not as "Exception ignored" at the exit
        return code
    except BrokenPipeError:  # stdout's reader left (`| head`): stop quietly, and let the exit not flush into it again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (FileNotFoundError, NotAHistory) as exc:
        print(f"vidsent history: {exc}", file=sys.stderr)
        return 1
    except (OSError, sqlite3.Error) as exc:  # no permission; a damaged page found while reading
        print(f"vidsent history: cannot read {path}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # a stored row that is not what vidsent writes
        logging.getLogger("vidsent.history").debug("unreadable history entry", exc_info=True)  # the traceback: -v
        print(f"vidsent history: {path} holds an entry that cannot be read ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return 1


STREAM_ID_RULE = "1-64 letters, digits, '-', '_' or '.'"  # what the protocol accepts (protocol.parse_request)


def _stream_id(text: str) -> str:
    """argparse type: a stream id the server could have used. Anything else matches no run (and "" matched all)."""
    if not 0 < len(text) <= 64 or not all(c.isalnum() or c in "-_." for c in text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a stream id ({STREAM_ID_RULE})")
    return text


def _run_number(text: str) -> int:
    try:
        run = int(text)
    except ValueError:
        run = 0
    if run < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a run number (1 or more, as `history list` shows)")
    return run


def _file_path(text: str) -> Path:
    """argparse type: a non-empty path (an empty --history silently meant the default file)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path")
    return Path(text)


def _add_history_command(sub) -> None:
    history = sub.add_parser("history", help="read back the streams a server kept (list, show, export)")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--history", metavar="PATH", default=None, type=_file_path,
                       help="the history file (default: the server's, history.sqlite3 in $VIDSENT_DATA_DIR, else "
                            "$XDG_DATA_HOME/vidsent or ~/.local/share/vidsent)")
    one_run = argparse.ArgumentParser(add_help=False, parents=[where])
    one_run.add_argument("stream", type=_stream_id, help="a stream id")
    one_run.add_argument("--run", type=_run_number, default=None, metavar="N",
                         help="that run (the numbers `history list` shows; default the stream's latest)")
    actions = history.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", parents=[where], help="every run kept: stream, source, times, windows")
    listing.add_argument("stream", nargs="?", default=None, type=_stream_id, help="only this stream id's runs")
    actions.add_parser("show", parents=[one_run], help="a run's window timeline and transcript, as `watch` prints")
    export = actions.add_parser("export", parents=[one_run], help="a run's windows as CSV or its messages as JSON")
    export.add_argument("--csv", metavar="OUT", type=_file_path,
                        help="one row per window (the columns of `analyze --csv`)")
    export.add_argument("--json", metavar="OUT", type=_file_path,
                        help="the run and every stored message, as clients got them")
    history.set_defaults(func=main_history)


# -- entry point -----------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidsent", description="Real-time multimodal sentiment of video streams")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the websocket server")
    server_module.add_server_arguments(serve)
    server_module.add_pipeline_arguments(serve)
    serve.set_defaults(func=server_module.main_serve)

    watch = sub.add_parser("watch", help="print a stream's rolling sentiment live")
    watch.add_argument("source", help="a media file, an rtsp:// URL, or (with --server --subscribe) a stream id")
    watch.add_argument("--server", metavar="WS_URL", help="watch through a running server, e.g. ws://127.0.0.1:8765")
    watch.add_argument("--subscribe", action="store_true", help="SOURCE is the id of a stream already running")
    watch.add_argument("--fast", action="store_true", help="replay a file as fast as possible, not at real-time pace")
    watch.add_argument("--token", default=os.environ.get("VIDSENT_TOKEN"),
                       help="the server's token (default $VIDSENT_TOKEN)")
    watch.add_argument("--alert", action="append", default=[], metavar="RULE",
                       help="print an alert when a signal crosses a threshold, e.g. 'rolling<0.3 for 10s' (in-process "
                            "watch; a server's alerts are printed anyway)")
    watch.add_argument("--alerts", metavar="FILE.toml", help="alert rules as [[alert]] tables")
    server_module.add_pipeline_arguments(watch)
    watch.set_defaults(func=main_watch)

    analyze = sub.add_parser("analyze", help="analyse files (as fast as possible) into JSON/CSV timelines")
    analyze.add_argument("files", nargs="+", metavar="FILE")
    analyze.add_argument("--json", metavar="OUT", help="write every file's window timeline and verdict as JSON")
    analyze.add_argument("--csv", metavar="OUT", help="write one CSV row per window")
    analyze.add_argument("--fast", action="store_true",
                         help="throughput over detail: a frame every 2 s (unless --fps sets another rate), 20-second "
                              "speech-recognition passes and no text key words (the same windows, models and "
                              "verdicts otherwise)")
    server_module.add_pipeline_arguments(analyze)
    analyze.set_defaults(func=main_analyze)

    _add_history_command(sub)
    _add_model_commands(sub)
    return parser


def _add_model_commands(sub) -> None:
    from models.training import embed, evaluate, train

    for name, module, adder, runner in (
        ("embed", embed, "add_embed_arguments", "main_embed"),
        ("train", train, "add_train_arguments", "main_train"),
        ("evaluate", evaluate, "add_evaluate_arguments", "main_evaluate"),
    ):
        doc = (module.__doc__ or name).strip().splitlines()[0]
        command = sub.add_parser(name, help=doc)
        getattr(module, adder)(command)
        command.set_defaults(func=getattr(module, runner))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from models.assets import DeviceUnavailable

    try:
        return args.func(args) or 0
    except DeviceUnavailable as exc:
        print(f"vidsent: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
