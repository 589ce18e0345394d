"""Every stream's windows, final transcript segments, alerts, errors and end summary, kept in an embedded SQLite file.

The server registers `History.observe` as a StreamHub observer: it runs on the event loop, so it only puts the
message (already serialised) on a bounded queue and returns; one writer thread owns the database, writes in
batches (WAL mode) and applies the retention (age, then size: the oldest runs go first). When the queue is full a
message is counted and dropped with a warning rather than ever blocking the loop. `close()` writes everything still
queued, so a SIGTERM loses nothing.

Each run of a stream is one row of `streams`, with a `run` id that grows over the file's life: a stream id such as
"cam" may be used again after its stream ended, and each use is a new run (the latest is what `show STREAM` means).

Schema:
    streams(run INTEGER PRIMARY KEY, stream, source, started, ended, reason)   wall times: Unix seconds
    messages(id INTEGER PRIMARY KEY, run → streams, seq, type, media_time, wall, body)
        body: the message's JSON exactly as clients got it; media_time: its t_end (the end's duration); seq: the
        order messages were observed in, which `recent` uses to join a replay to the live messages without a seam.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from protocol import EndMessage, Message, StatusMessage, TranscriptMessage

log = logging.getLogger("vidsent.history")

HISTORY_FILE = "history.sqlite3"
KEEP_S = 7 * 24 * 3600.0
MAX_BYTES = 1 << 30
QUEUE_SIZE = 10_000  # messages waiting for the writer; at ~10 a second per stream, minutes of a stalled disk
BATCH = 500  # messages written per transaction at most
PRUNE_EVERY_S = 60.0
STORED_TYPES = frozenset({"window", "transcript", "alert", "error", "end"})  # transcripts: final ones only
REPLAYED_TYPES = ("window", "transcript", "alert")  # what a late subscriber gets first (`since`)

SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    run INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    source TEXT,
    started REAL NOT NULL,
    ended REAL,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS streams_by_stream ON streams (stream, run);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    run INTEGER NOT NULL REFERENCES streams (run) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    media_time REAL,
    wall REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_run ON messages (run, type, media_time);
CREATE INDEX IF NOT EXISTS messages_by_wall ON messages (wall);
"""


def default_path() -> Path:
    """$VIDSENT_DATA_DIR, else $XDG_DATA_HOME/vidsent, else ~/.local/share/vidsent; the file history.sqlite3."""
    base = os.environ.get("VIDSENT_DATA_DIR")
    if not base:
        xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        base = str(Path(xdg) / "vidsent")
    return Path(base) / HISTORY_FILE


class NotAHistory(sqlite3.DatabaseError):
    """The file is not a vidsent history: not SQLite at all, damaged, or another program's database."""

    def __init__(self, path: Path | str, why: str):
        super().__init__(f"{path} is not a vidsent history ({why})")


TABLE_COLUMNS = {"streams": {"run", "stream", "source", "started", "ended", "reason"},
                 "messages": {"id", "run", "seq", "type", "media_time", "wall", "body"}}


def _check_schema(db: sqlite3.Connection, path: Path | str, *, empty_ok: bool = False) -> None:
    """Raises NotAHistory unless the file holds vidsent's tables (or nothing at all, with empty_ok: a new file)."""
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if empty_ok and not tables - {"sqlite_sequence"}:
            return
        for table, columns in TABLE_COLUMNS.items():
            if table not in tables:
                raise NotAHistory(path, f"it has no {table} table" if tables else "an empty database or file")
            missing = columns - {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            if missing:
                raise NotAHistory(path, f"its {table} table lacks the column(s) {', '.join(sorted(missing))}")
    except NotAHistory:
        raise
    except sqlite3.DatabaseError as exc:  # not SQLite, or a damaged header or schema page
        raise NotAHistory(path, str(exc)) from None


def _connect(path: Path | str, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:  # a URI: a '?', '#' or '%' in the path must be quoted
        db = sqlite3.connect(f"file:{quote(str(Path(path).resolve()))}?mode=ro", uri=True, timeout=10)
    else:  # the writer's connection: opened here, then used by its thread alone
        db = sqlite3.connect(path, timeout=10, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA foreign_keys = ON")
    return db


@dataclass(frozen=True)
class _Entry:
    """One observed message on its way to the writer. kind: a stored message type, "begin" (a run starts) or
    "source" (the run's source became known)."""

    seq: int
    stream: str
    kind: str
    wall: float
    media_time: float | None = None
    body: str | None = None
    detail: str | None = None  # source: the name; end: the reason


_CLOSE = object()


def _media_time(message: Message) -> float | None:
    if isinstance(message, EndMessage):
        return message.summary.get("duration")
    for name in ("t_end", "media_time"):
        value = getattr(message, name, None)
        if isinstance(value, (int, float)):
            return float(value)
    return None


class History:
    """The writer: `observe` from the event loop, `close` on shutdown. `recent` serves late subscribers."""

    def __init__(self, path: Path | str, keep_s: float = KEEP_S, max_bytes: int = MAX_BYTES,
                 queue_size: int = QUEUE_SIZE, clock: Callable[[], float] = time.time,
                 prune_every_s: float = PRUNE_EVERY_S):
        self.path = Path(path)
        self.keep_s, self.max_bytes, self.prune_every_s = keep_s, max_bytes, prune_every_s
        self.clock = clock
        self.dropped = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = self._open()
        self._seq = db.execute("SELECT coalesce(max(seq), 0) FROM messages").fetchone()[0]
        self._written_seq = self._seq
        self._written = threading.Condition()
        self._queue: queue.Queue = queue.Queue(queue_size)
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, args=(db,), name="history-writer", daemon=True)
        self._writer.start()

    def _open(self) -> sqlite3.Connection:
        db = _connect(self.path)
        try:
            _check_schema(db, self.path, empty_ok=True)  # never add tables to another program's database
        except NotAHistory:
            db.close()
            raise
        # before anything creates the file, so that deleted runs give their pages back (see _prune)
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # WAL: a power cut may lose the last commits, never corrupts
        db.executescript(SCHEMA)
        # runs a previous process never ended (it was killed): end them at their last message
        db.execute("UPDATE streams SET reason = 'interrupted', ended = coalesce("
                   "(SELECT max(wall) FROM messages WHERE messages.run = streams.run), started) WHERE ended IS NULL")
        db.commit()
        return db

    # -- on the event loop ---------------------------------------------------------------------------------------

    def observe(self, message: Message) -> None:
        """A StreamHub observer: never blocks, never raises for a full queue."""
        kind, detail = message.type, None
        if isinstance(message, StatusMessage):
            if message.state == "starting":
                kind = "begin"
            elif message.state == "running" and message.source:
                kind, detail = "source", message.source.get("name")
            else:
                return
        elif kind not in STORED_TYPES or (isinstance(message, TranscriptMessage) and not message.final):
            return
        elif isinstance(message, EndMessage):
            detail = message.summary.get("reason")
        stream = getattr(message, "stream", None)
        if stream is None:  # an error about a request, not a stream
            return
        stored = kind in STORED_TYPES
        entry = _Entry(self._seq + 1, stream, kind, self.clock(), _media_time(message) if stored else None,
                       message.dumps() if stored else None, detail)
        self._put(entry)

    def _put(self, entry: _Entry) -> None:
        if self._closed:
            return
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("history writer is behind (%d queued): %d message(s) not stored so far",
                            self._queue.qsize(), self.dropped)
            return
        self._seq = entry.seq  # only an entry that got in takes a number: the writer's count can catch up with it

    def recent(self, stream: str, since_s: float) -> Coroutine[None, None, list[str]]:
        """To await: the JSON of the last `since_s` media seconds of `stream`'s current run (windows, final
        transcripts, alerts), in order, up to and including the last message observed when this is *called* (not
        awaited): what is published after the call is not in it (the caller holds those back and sends them next)."""
        upto = self._seq
        return asyncio.to_thread(self._recent, stream, since_s, upto)

    # -- off the loop --------------------------------------------------------------------------------------------

    def wait_written(self, seq: int, timeout: float = 10.0) -> bool:
        with self._written:
            return self._written.wait_for(lambda: self._written_seq >= seq, timeout)

    def _recent(self, stream: str, since_s: float, upto: int) -> list[str]:
        if not self.wait_written(upto):
            log.warning("history writer is behind: a replay of %s may miss its last messages", stream)
        with HistoryReader(self.path) as reader:
            run = reader.run_of(stream)
            if run is None:
                return []
            marks = ",".join("?" * len(REPLAYED_TYPES))
            rows = reader.db.execute(
                f"SELECT body FROM messages WHERE run = ? AND seq <= ? AND type IN ({marks}) AND media_time >= "
                f"(SELECT max(media_time) FROM messages WHERE run = ? AND seq <= ? AND type IN ({marks})) - ? "
                f"ORDER BY id", (run["run"], upto, *REPLAYED_TYPES, run["run"], upto, *REPLAYED_TYPES, since_s))
            return [row["body"] for row in rows]

    def close(self) -> None:
        """Writes everything queued, ends runs still open (reason "interrupted") and closes the file."""
        if self._closed:
            return
        self._closed = True
        if self._writer.is_alive():
            self._queue.put(_CLOSE)  # blocks only while the queue is full: the writer is draining it
            self._writer.join()

    def _write_loop(self, db: sqlite3.Connection) -> None:
        open_runs: dict[str, int] = {}
        self._prune(db)
        next_prune = time.monotonic() + self.prune_every_s
        try:
            while True:
                try:
                    batch = [self._queue.get(timeout=max(0.0, next_prune - time.monotonic()))]
                except queue.Empty:
                    batch = []
                while batch and batch[-1] is not _CLOSE and len(batch) < BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                closing = bool(batch) and batch[-1] is _CLOSE
                entries = [e for e in batch if e is not _CLOSE]
                if entries:
                    self._write(db, entries, open_runs)
                if closing:
                    self._end_runs(db, open_runs.values(), self.clock(), "interrupted")
                    break
                if time.monotonic() >= next_prune:
                    self._prune(db)
                    next_prune = time.monotonic() + self.prune_every_s
        finally:
            db.close()

    def _write(self, db: sqlite3.Connection, entries: list[_Entry], open_runs: dict[str, int]) -> None:
        try:
            with db:
                for e in entries:
                    run = open_runs.get(e.stream)
                    if e.kind == "begin" or run is None:
                        if run is not None:  # the same id began again with no end: its stream crashed
                            self._end_runs(db, [run], e.wall, "interrupted")
                        run = db.execute(
                            "INSERT INTO streams (stream, started) VALUES (?, ?)", (e.stream, e.wall)).lastrowid
                        assert run is not None  # an INSERT's row id
                        open_runs[e.stream] = run
                    if e.kind == "source":
                        db.execute("UPDATE streams SET source = ? WHERE run = ?", (e.detail, run))
                    elif e.body is not None:
                        db.execute("INSERT INTO messages (run, seq, type, media_time, wall, body) "
                                   "VALUES (?, ?, ?, ?, ?, ?)", (run, e.seq, e.kind, e.media_time, e.wall, e.body))
                    if e.kind == "end":
                        db.execute("UPDATE streams SET ended = ?, reason = ? WHERE run = ?", (e.wall, e.detail, run))
                        del open_runs[e.stream]
        except sqlite3.Error as exc:
            log.error("history: %d message(s) could not be stored: %s", len(entries), exc)
        finally:
            with self._written:
                self._written_seq = entries[-1].seq
                self._written.notify_all()

    @staticmethod
    def _end_runs(db: sqlite3.Connection, runs, wall: float, reason: str) -> None:
        with db:
            db.executemany("UPDATE streams SET ended = ?, reason = ? WHERE run = ? AND ended IS NULL",
                           [(wall, reason, run) for run in runs])

    def used_bytes(self, db: sqlite3.Connection) -> int:
        page_size, pages, free = (db.execute(f"PRAGMA {name}").fetchone()[0]
                                  for name in ("page_size", "page_count", "freelist_count"))
        return (pages - free) * page_size

    def _prune(self, db: sqlite3.Connection) -> None:
        """Deletes what is older than keep_s, then, while the file holds more than max_bytes, whole ended runs,
        oldest first (and if only live runs are left, their oldest messages)."""
        try:
            cutoff = self.clock() - self.keep_s
            with db:
                db.execute("DELETE FROM streams WHERE ended < ?", (cutoff,))
                db.execute("DELETE FROM messages WHERE wall < ?", (cutoff,))
            while self.used_bytes(db) > self.max_bytes:
                with db:
                    oldest = db.execute("SELECT run FROM streams WHERE ended IS NOT NULL "
                                        "ORDER BY run LIMIT 1").fetchone()
                    if oldest is not None:
                        db.execute("DELETE FROM streams WHERE run = ?", (oldest[0],))
                    elif not db.execute("DELETE FROM messages WHERE id IN "
                                        "(SELECT id FROM messages ORDER BY id LIMIT 1000)").rowcount:
                        break
            db.executescript("PRAGMA incremental_vacuum;")  # execute() would free one page per call
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            log.error("history: retention failed: %s", exc)


class HistoryReader:
    """Reads a history file (never writes: safe next to a running server)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if self.path.is_dir():
            raise NotAHistory(self.path, "a directory")
        if not self.path.is_file():
            raise FileNotFoundError(f"no history at {self.path}")
        self.db = _connect(self.path, readonly=True)
        try:
            _check_schema(self.db, self.path)
        except NotAHistory:
            self.db.close()
            raise

    def __enter__(self) -> HistoryReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def runs(self, stream: str | None = None) -> list[dict]:
        """[{run, stream, source, started, ended, reason, windows}], oldest first; every stream's with stream None."""
        where, args = ("WHERE stream = ?", (stream,)) if stream is not None else ("", ())  # "" matches no run
        rows = self.db.execute(
            "SELECT run, stream, source, started, ended, reason, (SELECT count(*) FROM messages m "
            f"WHERE m.run = s.run AND m.type = 'window') AS windows FROM streams s {where} ORDER BY run", args)
        return [dict(row) for row in rows]

    def run_of(self, stream: str, run: int | None = None) -> dict | None:
        """The latest run of `stream`, or its run number `run`."""
        runs = [r for r in self.runs(stream) if run is None or r["run"] == run]
        return runs[-1] if runs else None

    def messages(self, run: int, types: tuple[str, ...] | None = None) -> Iterator[dict]:
        """The run's stored messages as clients got them, in order."""
        args: tuple[str, ...]
        where, args = "", ()
        if types:
            where, args = f" AND type IN ({','.join('?' * len(types))})", types
        for row in self.db.execute(f"SELECT body FROM messages WHERE run = ?{where} ORDER BY id", (run, *args)):
            yield json.loads(row["body"])
