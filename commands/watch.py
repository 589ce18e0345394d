"""`vidsent watch SOURCE`: one stream's windows, transcript and alerts printed live with a status line, run
in-process or through a running server."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import cast

from app import compose
from app.options import add_alert_arguments, add_pipeline_arguments, add_token_argument
from commands.analyze import fmt_score


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
        from protocol import (
            AlertMessage,
            EndMessage,
            ErrorMessage,
            ModalityVerdict,
            StatusMessage,
            TranscriptMessage,
            WindowMessage,
        )

        if isinstance(message, WindowMessage):
            # every value of Modalities is a ModalityVerdict: a TypedDict's items() only says `object`
            verdicts = cast("dict[str, ModalityVerdict]", message.modalities)
            mods = " ".join(f"{m[0].upper()} {fmt_score(s['score'])}" for m, s in verdicts.items())
            rolling = message.rolling
            spoken = f"[{message.language}] " if message.language and message.transcript else ""
            grade = "uncertain" if rolling.get("uncertain") else (rolling["graded"] or "")
            self._line(f"[{message.t_start:6.1f}–{message.t_end:6.1f}s] rolling {fmt_score(rolling['score'])} "
                       f"{(rolling['label'] or '—'):8} {grade:16} | {mods} | "
                       f"{spoken}{message.transcript[:60]}")
        elif isinstance(message, TranscriptMessage) and message.final:
            spoken = f"[{message.language}] " if message.language else ""
            self._line(f"  » {spoken}{message.text}")
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
                self._line(f"⚠ alert {message.rule}: {message.signal} {fmt_score(message.value)} since "
                           f"{message.t_start:.1f} s")
            else:
                why = message.detail or f"{message.signal} {fmt_score(message.value)}"
                self._line(f"✓ alert {message.rule} cleared at {message.t_end:.1f} s ({why})")
        elif isinstance(message, EndMessage):
            s = message.summary
            self.status = ""
            languages = ", ".join(f"{code} {share:.0%}" for code, share in (s.get("languages") or {}).items())
            doubts = "; ".join(s.get("fused", {}).get("doubts") or [])
            self._line(f"end ({s.get('reason')}): {s.get('windows', 0)} windows, overall {s.get('label')} "
                       f"({fmt_score(s.get('score'))}, {s.get('graded')})" + (f"; speech: {languages}" if languages
                                                                             else "")
                       + (f"; uncertain: {doubts}" if doubts else ""))


async def _watch_in_process(args, printer: LivePrinter) -> int:
    from engine import StreamPipeline
    from monitor.alerts import AlertMonitor, AlertRuleError, load_rules
    from stream.sources import SourceError, open_source

    config = compose.pipeline_config(args)
    try:
        rules = load_rules(args.alert, args.alerts)
        source = open_source(args.source, realtime=not args.fast, sample_fps=config.sample_fps)
    except AlertRuleError as exc:
        print(f"vidsent watch: {exc}", file=sys.stderr)
        return 2
    except SourceError as exc:
        print(f"vidsent watch: {exc.message}", file=sys.stderr)
        return 1
    engine = compose.load_engine(args)
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
            # without --language, the server's own
            stream = await client.start(args.source, realtime=not args.fast, language=args.language)
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


def add_watch_arguments(parser: argparse.ArgumentParser) -> None:
    """`vidsent watch`'s options."""
    parser.add_argument("source", help="a media file, an rtsp:// URL, or (with --server --subscribe) a stream id")
    parser.add_argument("--server", metavar="WS_URL", help="watch through a running server, e.g. ws://127.0.0.1:8765")
    parser.add_argument("--subscribe", action="store_true", help="SOURCE is the id of a stream already running")
    parser.add_argument("--fast", action="store_true", help="replay a file as fast as possible, not at real-time pace")
    add_token_argument(parser, "the server's token (default $VIDSENT_TOKEN)")
    add_alert_arguments(parser, "print an alert (in-process watch; a server's alerts are printed anyway)")
    add_pipeline_arguments(parser)
