"""The command-line options that several commands share, each defined once: the models' (--device, --asr,
--heads), the pipeline's (--fusion, --window, --hop, --half-life, --fps) and the server's."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from monitor.history import KEEP_S, MAX_BYTES
from service.access import MAX_STREAMS, STOP_POLICIES, Access

ASR_MODELS = ("tiny.en", "base")


def add_model_arguments(parser, *, asr: bool = True, heads: bool = True, threads: bool = False,
                        asr_help: str = "Whisper model for speech (default tiny.en)") -> None:
    """The options every command that loads models shares, defined once: --device, --asr (with --no-speakers),
    --heads, --threads."""
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where models run: auto (a GPU when torch sees one), cpu or cuda")
    if asr:
        parser.add_argument("--asr", default="tiny.en", choices=ASR_MODELS, help=asr_help)
        parser.add_argument("--no-speakers", dest="speakers", action="store_false",
                            help="do not follow who is speaking nor whose mouth moves (the voice encoder, the face "
                                 "mesh and their thread are not loaded): people are their faces alone")
    if heads:
        parser.add_argument("--heads", type=Path, default=None, metavar="DIR",
                            help="folder of trained heads (default: the shipped models/default_heads)")
    if threads:
        parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    parser.add_argument("--media-dir", default=None,
                        help="folder whose files clients may start as streams (nothing outside it)")
    parser.add_argument("--allow-rtsp", action="append", default=[], metavar="HOST[:PORT]",
                        help="an RTSP host (any port) or host:port clients may start streams from (repeatable)")
    parser.add_argument("--max-streams", type=int, default=MAX_STREAMS, help="streams the server runs at most")
    add_token_argument(parser, "the token clients must present (Authorization: Bearer, ?token=, or the dashboard's "
                               "cookie); default $VIDSENT_TOKEN; off loopback one is generated when none is given")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="a host name clients reach the server by (its DNS name, behind a proxy: the Host they "
                             "send), besides its bound address and loopback (repeatable); requests naming any other "
                             "host get 421, which stops DNS rebinding")
    parser.add_argument("--stop-policy", choices=STOP_POLICIES, default="anyone",
                        help="who may stop a stream: anyone (any client, the default) or starter (only the client "
                             "that started it while that client is connected, then anyone)")
    parser.add_argument("--insecure", action="store_true",
                        help="allow binding off loopback without a token (anyone who reaches the port may use it)")
    parser.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                        help="a web origin (e.g. https://dash.example.com) whose pages may use the websocket, "
                             "besides the server's own (repeatable)")
    parser.add_argument("--max-clients", type=int, default=Access.max_clients, help="concurrent websocket clients")
    parser.add_argument("--max-client-streams", type=int, default=Access.max_client_streams,
                        help="streams one client may have started and still running")
    parser.add_argument("--max-requests-per-s", type=float, default=Access.max_requests_per_s,
                        help="requests a second one client may send (bursts of twice that)")
    parser.add_argument("--rtsp-timeout", type=float, default=5.0, help="RTSP connect/read timeout in seconds")
    parser.add_argument("--rtsp-give-up", type=float, default=30.0,
                        help="end an RTSP stream after this many seconds without media (reconnecting meanwhile)")
    parser.add_argument("--ice-server", action="append", default=[], metavar="URL",
                        help="a STUN/TURN server for WebRTC: stun:HOST:PORT or turn:HOST:PORT,USER,CREDENTIAL "
                             "(repeatable; default none: host candidates only, nothing is contacted)")
    parser.add_argument("--ice-host", action="append", default=[], metavar="ADDR",
                        help="gather WebRTC host candidates only on this local address (repeatable; e.g. 127.0.0.1 "
                             "for a browser on this machine; default: every interface but loopback)")
    parser.add_argument("--webrtc-give-up", type=float, default=5.0,
                        help="end a browser's stream after this many seconds without media from it")
    add_alert_arguments(parser, "raise an `alert`")
    parser.add_argument("--alert-webhook", metavar="URL", help="POST every --alert rule's alerts to this URL as JSON")
    parser.add_argument("--log-json", action="store_true",
                        help="log one JSON object per line (ts, level, logger, message, stream) instead of text")
    parser.add_argument("--history", default=None, metavar="PATH|off",
                        help="the SQLite file each stream's windows, transcript, alerts and end are kept in (default "
                             "history.sqlite3 in $VIDSENT_DATA_DIR, else $XDG_DATA_HOME/vidsent or "
                             "~/.local/share/vidsent); off keeps nothing")
    parser.add_argument("--history-keep", type=float, default=KEEP_S / 86400, metavar="DAYS",
                        help="delete history older than this (default 7 days)")
    parser.add_argument("--history-max-mb", type=float, default=MAX_BYTES / 2**20, metavar="MB",
                        help="over this size the oldest runs are deleted first (default 1024)")
    parser.add_argument("--scorers", default="local", metavar="local|auto|ray://HOST:PORT",
                        help="where the scorers run: local (this process, the default), auto (a Ray Serve "
                             "application on this machine's Ray, started when none runs) or ray://HOST:PORT (a Ray "
                             "cluster's head: its replicas batch the windows of every ingest server); needs "
                             "pip install 'ray[serve]==2.60.0'")
    parser.add_argument("--scorer-replicas", type=int, default=1, metavar="N",
                        help="scorer replicas of the Ray application (with --scorers auto|ray://...; default 1)")


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--fusion", default="weighted", choices=["weighted", "vote", "product", "stacking"])
    parser.add_argument("--window", type=float, default=4.0, help="window length in seconds (default 4)")
    parser.add_argument("--hop", type=float, default=2.0, help="window hop in seconds (default 2)")
    parser.add_argument("--half-life", type=float, default=6.0, help="rolling EMA half-life in seconds (default 6)")
    parser.add_argument("--fps", type=float, default=2.0, help="frames sampled per second for the visual scorer")
    parser.add_argument("--mouth-fps", type=float, default=8.0,
                        help="frames read per second for the mouths of the faces in view, to tie each voice to its "
                             "face (default 8; 0 or --fps or less: only the visual scorer's frames)")
    parser.add_argument("--language", default=None, type=language_choice, metavar="auto|xx[,yy…]",
                        help="the language(s) speech is in: auto (identified, and followed when it changes; "
                             "default), one ISO 639-1 code (es), or the allowed set (en,es)")


def language_choice(text: str) -> str:
    """--language's value in its normal form ('auto', 'es', 'en,es'); argparse reports what is wrong with it."""
    from speech.language import LanguageChoice

    try:
        return str(LanguageChoice.parse(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_token_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    """--token: the server's shared token (serve: the one to require; watch --server: the one to present)."""
    parser.add_argument("--token", default=os.environ.get("VIDSENT_TOKEN"), help=help_text)


def add_alert_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """--alert RULE (repeatable) and --alerts FILE.toml: the alert rules of monitor/alerts.py."""
    parser.add_argument("--alert", action="append", default=[], metavar="RULE",
                        help=f"{what} when a signal crosses a threshold, e.g. 'rolling<0.3 for 10s' (signals: "
                             "rolling, fused, text, audio, visual; repeatable)")
    parser.add_argument("--alerts", metavar="FILE.toml",
                        help="alert rules as [[alert]] tables (when, name, clear_margin, webhook)")
