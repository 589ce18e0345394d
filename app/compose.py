"""The composition root: how a process is put together from its command-line options, in one place for every
door (`vidsent serve`, `watch`, `analyze`, `server.py`): the pipeline's configuration, the Engine (with its scorers
in-process or on a Ray cluster), the history, and the WebRTC settings."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from engine import Engine, PipelineConfig
from monitor.history import History
from monitor.history import default_path as default_history_path

log = logging.getLogger("vidsent.server")


def pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    return PipelineConfig(window_s=args.window, hop_s=args.hop, half_life_s=args.half_life, sample_fps=args.fps,
                          mouth_fps=getattr(args, "mouth_fps", PipelineConfig.mouth_fps),
                          language=getattr(args, "language", None) or "auto")


def webrtc_settings(args: argparse.Namespace) -> dict:
    """WebRTCSource options from the command line; with --ice-host, ICE gathers only on those addresses."""
    from stream.webrtc import gather_ice_on, parse_ice_server

    if args.webrtc_give_up <= 0:
        raise ValueError("--webrtc-give-up must be positive")
    ice_servers = [parse_ice_server(spec) for spec in args.ice_server]
    if args.ice_host:
        gather_ice_on(args.ice_host)
    return {"ice_servers": ice_servers, "give_up_s": args.webrtc_give_up}


def build_engine(args: argparse.Namespace) -> Engine:
    """The process's Engine; with --scorers auto|ray://HOST:PORT its scorers are a Ray Serve application (speech
    recognition stays here). Ray missing, unreachable or failing to deploy: one logged line and exit status 2."""
    scorers = None
    where = getattr(args, "scorers", "local")  # only `serve` has --scorers
    if where != "local":
        from engine.ray_scorers import RayScorersError, connect_ray_scorers

        try:
            scorers = connect_ray_scorers(where, device=args.device, heads_dir=args.heads, fusion=args.fusion,
                                          replicas=args.scorer_replicas)
        except RayScorersError as exc:
            log.error("%s", exc)
            raise SystemExit(2) from None
    return Engine(asr=args.asr, device=args.device, heads_dir=args.heads, fusion=args.fusion, scorers=scorers,
                  text_evidence=getattr(args, "text_evidence", True), speakers=getattr(args, "speakers", True))


def open_history(args: argparse.Namespace) -> History | None:
    """The server's History from --history, --history-keep and --history-max-mb (None for `--history off`)."""
    if args.history == "off":
        return None
    if args.history_keep <= 0 or args.history_max_mb <= 0:
        raise ValueError("--history-keep and --history-max-mb must be positive")
    path = Path(args.history) if args.history else default_history_path()
    log.info("history in %s (kept %g days, at most %g MiB)", path, args.history_keep, args.history_max_mb)
    return History(path, keep_s=args.history_keep * 86400, max_bytes=int(args.history_max_mb * 2**20))


def load_engine(args: argparse.Namespace) -> Engine:
    """build_engine for a command a person watches: what it loads and how long that took, on stderr."""
    print(f"loading models (asr={args.asr}, device={args.device}) …", file=sys.stderr, flush=True)
    started = time.monotonic()
    engine = build_engine(args)
    print(f"models ready in {time.monotonic() - started:.1f} s (device {engine.device})", file=sys.stderr, flush=True)
    return engine
