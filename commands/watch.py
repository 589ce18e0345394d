"""`vidsent watch SOURCE`: one stream's windows, transcript and alerts printed live with a status line, run
in-process or through a running server."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import OrderedDict
from typing import cast

from app import compose
from app.options import add_alert_arguments, add_pipeline_arguments, add_token_argument
from commands.analyze import fmt_score, json_number, json_object, person_modalities, person_summary_lines
from protocol import PERSON_ID, person_id_name, person_name, voice_name

MAX_PEOPLE_SHOWN = 8  # person lines under a window; past that "+N more"
NAMES_KEPT = 256  # person ids whose latest name is remembered (to name them in alerts)


def person_window_line(person: dict) -> str:
    """One person of a window: name, rolling score and label (or "uncertain"), T/A/V scores, seconds spoken, and
    "speaking" where their face is likely the one talking. Never their thumbnail."""
    rolling = json_object(person.get("rolling"))
    label = "uncertain" if rolling.get("uncertain") else (rolling.get("label") or "—")
    line = (f"    {person_name(person):20} rolling {fmt_score(json_number(rolling.get('score')))} {label:9} | "
            f"{person_modalities(person.get('modalities'))}")
    extras = []
    seconds, speaking = json_number(person.get("seconds")), json_number(person.get("speaking"))
    if seconds is not None and seconds > 0:
        extras.append(f"{seconds:.1f} s spoken")
    if speaking is not None and speaking >= 0.5:
        extras.append("speaking")
    return line + (" | " + ", ".join(extras) if extras else "")


class LivePrinter:
    """Prints one line per window (and one per person in it) and keeps a status line at the bottom of a terminal."""

    def __init__(self, stream=None) -> None:
        self.out = stream if stream is not None else sys.stdout  # the one of now (a test's capture), not of import
        self.tty = self.out.isatty()
        self.status = ""
        self.names: OrderedDict[str, str] = OrderedDict()  # person id → their name as the latest window showed it

    def _person_lines(self, people) -> None:
        people = [p for p in people if isinstance(p, dict)] if isinstance(people, list) else []
        for person in people:
            if isinstance(person.get("id"), str):
                self.names[person["id"]] = person_name(person)
                self.names.move_to_end(person["id"])
        while len(self.names) > NAMES_KEPT:
            self.names.popitem(last=False)
        for person in people[:MAX_PEOPLE_SHOWN]:
            self._line(person_window_line(person))
        if len(people) > MAX_PEOPLE_SHOWN:
            self._line(f"    +{len(people) - MAX_PEOPLE_SHOWN} more")

    def _alert_person(self, message) -> tuple[str, str]:
        """A person-scoped alert: (" for NAME", what its detail adds beyond naming them); ("", detail) otherwise."""
        pid, detail = message.person, message.detail or ""
        if not isinstance(pid, str):
            return "", detail
        who, _, rest = detail.partition(": ")  # the monitor's detail: "NAME" or "NAME: why it cleared"
        if pid in self.names:
            name = self.names[pid]
        elif PERSON_ID.fullmatch(pid):
            name = person_id_name(pid)
        else:
            name = who or "someone"
        return f" for {name}", rest

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
            self._person_lines(message.people)
        elif isinstance(message, TranscriptMessage) and message.final:
            spoken = f"[{message.language}] " if message.language else ""
            voice = voice_name(message.speaker)
            self._line(f"  » {spoken}{voice + ': ' if voice else ''}{message.text}")
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
            who, detail = self._alert_person(message)
            if message.state == "raised":
                self._line(f"⚠ alert {message.rule}{who}: {message.signal} {fmt_score(message.value)} since "
                           f"{message.t_start:.1f} s")
            else:
                why = detail or f"{message.signal} {fmt_score(message.value)}"
                self._line(f"✓ alert {message.rule}{who} cleared at {message.t_end:.1f} s ({why})")
        elif isinstance(message, EndMessage):
            s = message.summary
            self.status = ""
            languages = ", ".join(f"{code} {share:.0%}" for code, share in (s.get("languages") or {}).items())
            doubts = "; ".join(s.get("fused", {}).get("doubts") or [])
            people = person_summary_lines(s.get("people"))
            if people:  # before the end line, which stays the last line (what a script reads with `tail -1`)
                self._line("people over the stream:")
                for line in people:
                    self._line(line)
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
