"""How the server logs: readable lines by default, one JSON object per line with `--log-json` (for log shippers)."""

from __future__ import annotations

import json
import logging
import time

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Held at WARNING unless verbose: aioice logs each ICE candidate pair's every check state at INFO (the offer's
# candidates times the server's addresses, for every WebRTC offer), aiortc each RTP packet at DEBUG.
CHATTY_LOGGERS = ("aioice", "aiortc")


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "message"[, "stream"][, "exc"]}: ts in UTC ISO 8601 with milliseconds."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if hasattr(record, "stream"):  # log.info(..., extra={"stream": id})
            entry["stream"] = record.stream
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class OneLineErrors(logging.Filter):
    """Without -v a record's exception shows as one `Type: message` at the end of its line, never as a traceback:
    whatever a client sends, and whatever a library logs about it, cannot fill the log with tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(exc).__name__}: {str(exc)[:200]})"
            record.args = None
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


def configure_logging(json_lines: bool = False, verbose: bool = False) -> None:
    """The process's logging for `vidsent serve`: INFO (DEBUG with verbose) to stderr, as text or JSON lines;
    tracebacks only with verbose."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    if not verbose:
        handler.addFilter(OneLineErrors())
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)
