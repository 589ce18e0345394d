"""The vidsent server's door: `python server.py [options]` (the same as `vidsent serve`).

It only puts the process together from its options (app/compose.py) and runs it (service/serving.py); the server
itself is the `service` package: who may do what (service/access.py), the running streams and their fan-out to
clients (service/hub.py), the dashboard's files (service/static.py) and the protocol on the port
(service/handler.py). Each stream's processing is an `engine.StreamPipeline`.

    python server.py [--host 127.0.0.1] [--port 8765] [--media-dir DIR] [--allow-rtsp HOST[:PORT]] ...
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3

from app import compose
from app.options import add_pipeline_arguments, add_server_arguments
from models.runtime import DeviceUnavailable
from monitor.alerts import load_rules
from monitor.logs import configure_logging
from service.access import LOOPBACK_HOSTS, Access, SourcePolicy, resolve_token
from service.hub import StreamHub
from service.serving import serve_forever

log = logging.getLogger("vidsent.server")


def main_serve(args: argparse.Namespace) -> int:
    configure_logging(json_lines=args.log_json, verbose=getattr(args, "verbose", False))
    try:
        config = compose.pipeline_config(args)
        webrtc_options = compose.webrtc_settings(args)
        policy = SourcePolicy(args.media_dir, args.allow_rtsp)
        alert_rules = load_rules(args.alert, args.alerts, args.alert_webhook)
        history = compose.open_history(args)
    except (ValueError, OSError, sqlite3.Error) as exc:
        log.error("%s", exc)
        return 2
    try:
        token, generated = resolve_token(args.host, args.token, args.insecure)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    if generated:
        # printed once, never logged: the operator hands it to the clients
        print(f"vidsent: no --token given for {args.host}; clients must present this one: {token}", flush=True)
    elif token is None and args.host not in LOOPBACK_HOSTS:
        log.warning("binding to %s without a token (--insecure): anyone who reaches the port may use it", args.host)
    access = Access(token=token, allowed_origins=tuple(o.rstrip("/") for o in args.allow_origin),
                    max_clients=args.max_clients, max_client_streams=args.max_client_streams,
                    max_requests_per_s=args.max_requests_per_s, allowed_hosts=tuple(args.allow_host),
                    stop_policy=args.stop_policy)
    for host, port in sorted(policy.rtsp_hosts, key=str):
        if port is None:
            log.warning("--allow-rtsp %s allows every port of that host: give HOST:PORT to allow one", host)
    log.info("loading models (asr=%s, device=%s)", args.asr, args.device)
    try:
        engine = compose.build_engine(args)
    except DeviceUnavailable as exc:
        log.error("%s", exc)
        return 2
    hub = StreamHub(engine, config, policy, args.max_streams,
                    rtsp_options={"open_timeout_s": args.rtsp_timeout, "read_timeout_s": args.rtsp_timeout,
                                  "give_up_s": args.rtsp_give_up},
                    webrtc_options=webrtc_options, history=history, alert_rules=alert_rules)
    try:
        asyncio.run(serve_forever(args.host, args.port, hub, access=access))
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc.strerror or exc)
        return 1
    finally:
        engine.close()
        if history is not None:
            history.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="server.py", description="vidsent websocket server")
    add_server_arguments(parser)
    add_pipeline_arguments(parser)
    return main_serve(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
