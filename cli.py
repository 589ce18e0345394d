"""The `vidsent` command: a thin door over the same pipeline and model code as the server.

    vidsent serve                      start the websocket server (same as `python server.py`)
    vidsent watch SOURCE               print a stream's rolling sentiment live (in-process, or via --server)
    vidsent analyze FILE... --json OUT replay files as fast as possible; full window timeline + overall verdict
    vidsent history list|show|export   read back the streams a server kept (windows, transcript, alerts, ends)
    vidsent embed | train | evaluate   build embedding caches, train heads, evaluate modalities and fusion

Each command's body is a module of `commands/` (or `training/`, or server.py for `serve`), imported only when that
command runs: `vidsent analyze` never loads the websocket server.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports transformers

from app.options import add_pipeline_arguments, add_server_arguments  # noqa: E402

# name: (help, module whose `add_<name>_arguments` defines its options, or None, and the module and function run)
COMMANDS = {
    "watch": ("print a stream's rolling sentiment live", "commands.watch", "commands.watch:main_watch"),
    "analyze": ("analyse files (as fast as possible) into JSON/CSV timelines", "commands.analyze",
                "commands.analyze:main_analyze"),
    "history": ("read back what a server kept of its streams", "commands.history", "commands.history:main_history"),
}
MODEL_COMMANDS = ("embed", "train", "evaluate")  # training/<name>.py: add_<name>_arguments, main_<name>


def _run(target: str):
    """The command function `module:function`, imported when the command runs."""
    def run(args: argparse.Namespace) -> int:
        module, function = target.split(":")
        return getattr(importlib.import_module(module), function)(args)
    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidsent", description="Real-time multimodal sentiment of video streams")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the websocket server")
    add_server_arguments(serve)
    add_pipeline_arguments(serve)
    serve.set_defaults(func=_run("server:main_serve"))

    for name, (help_text, options_module, target) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        getattr(importlib.import_module(options_module), f"add_{name}_arguments")(command)
        command.set_defaults(func=_run(target))

    for name in MODEL_COMMANDS:
        module = importlib.import_module(f"training.{name}")
        command = sub.add_parser(name, help=(module.__doc__ or name).strip().splitlines()[0])
        getattr(module, f"add_{name}_arguments")(command)
        command.set_defaults(func=_run(f"training.{name}:main_{name}"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from models.runtime import DeviceUnavailable

    try:
        return args.func(args) or 0
    except DeviceUnavailable as exc:
        print(f"vidsent: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
