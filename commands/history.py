"""`vidsent history list|show|export`: what a server kept of its streams, read back."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from commands.analyze import write_csv, write_people_csv
from commands.watch import LivePrinter
from protocol import STREAM_ID


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


def _export_run(run: dict, messages: list[dict], json_out: Path | None, csv_out: Path | None,
                people_csv_out: Path | None = None) -> int:
    writers: list[tuple[Path, Callable[[], object]]] = []
    if json_out:
        writers.append((json_out, lambda: json_out.write_text(
            json.dumps({**run, "messages": messages}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")))
    windows = [m for m in messages if m["type"] == "window"]
    timeline = [{"file": run["source"] or run["stream"], "windows": windows}]
    if csv_out:
        writers.append((csv_out, lambda: write_csv(str(csv_out), timeline)))
    if people_csv_out:
        writers.append((people_csv_out, lambda: write_people_csv(str(people_csv_out), timeline)))
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
    return _export_run(run, messages, args.json, args.csv, args.people_csv)


def main_history(args) -> int:
    """Every failure is one line on stderr: 2 for a bad argument (argparse's code), 1 for a history that cannot be
    read (missing, not a vidsent history, damaged), a stream or run it does not hold, or an export not written."""
    import sqlite3

    from monitor.history import HistoryReader, NotAHistory, default_path

    path = args.history or default_path()
    if args.action == "export" and not (args.csv or args.json or args.people_csv):
        print("vidsent history export: give --csv OUT, --people-csv OUT and/or --json OUT", file=sys.stderr)
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


STREAM_ID_RULE = "1-64 of A-Z a-z 0-9 - _ ."  # what the protocol accepts (protocol.STREAM_ID)


def _stream_id(text: str) -> str:
    """argparse type: a stream id the server could have used. Anything else matches no run (and "" matched all)."""
    if not STREAM_ID.fullmatch(text):
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


def add_history_arguments(history: argparse.ArgumentParser) -> None:
    """`vidsent history`'s actions and options."""
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
    export = actions.add_parser("export", parents=[one_run],
                                help="a run's windows (or its people) as CSV or its messages as JSON")
    export.add_argument("--csv", metavar="OUT", type=_file_path,
                        help="one row per window (the columns of `analyze --csv`)")
    export.add_argument("--people-csv", metavar="OUT", type=_file_path,
                        help="one row per person per window (the columns of `analyze --people-csv`)")
    export.add_argument("--json", metavar="OUT", type=_file_path,
                        help="the run and every stored message, as clients got them")
