"""The history (monitor/history.py): what a server stored reads back exactly after a restart and a SIGTERM, late
subscribers get the stream's last seconds first with no seam, retention by age and by size, `vidsent history`, and
`--history off`. Fake engine (testkit/fakes.py), real clips where a server plays one."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from app.compose import open_history
from cli import build_parser
from commands.analyze import CSV_FIELDS
from engine import PipelineConfig, StreamPipeline
from monitor.history import History, HistoryReader, NotAHistory, default_path
from protocol import ProtocolError, StatusMessage, WindowMessage, parse_request
from service.hub import StreamHub
from testkit.data import ROOT, VIDEOS, need_data
from testkit.fakes import ScriptedSource, fake_engine
from testkit.servers import (
    FAKE_SERVE,
    RunningServer,
    free_port,
    make_hub,
    run_vidsent,
    vidsent_in_process,
    wait_listening,
)

CLIP = "vna_original_2.mp4"  # 12.3 s: 6 windows
STORED = ("window", "transcript", "alert", "error", "end")
DAY = 24 * 3600.0


def stored_part(received: list[dict]) -> list[dict]:
    """What the history keeps of what a client got: everything but status (and transcript guesses)."""
    return [m for m in received if m["type"] in STORED and (m["type"] != "transcript" or m["final"])]


async def receive_until_end(ws, stream: str, timeout: float = 60.0) -> list[dict]:
    """The JSON of every message of `stream` until its `end` (the `subscribed` reply included)."""
    out = []
    async with asyncio.timeout(timeout):
        async for raw in ws:
            message = json.loads(raw)
            if message.get("stream") == stream:
                out.append(message)
                if message["type"] == "end":
                    return out
    raise AssertionError(f"the connection closed before {stream} ended")


async def send_and_await_subscribed(ws, request: dict) -> None:
    await ws.send(json.dumps(request))
    async with asyncio.timeout(10):
        while (message := json.loads(await ws.recv()))["type"] != "subscribed":
            assert message["type"] != "error", message


def windows_of(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m["type"] == "window"]


def hub_with(history: History | None, engine=None) -> StreamHub:
    return make_hub(engine, history=history)


async def play_clip_to_its_end(history: History, stream: str) -> list[dict]:
    """One server life: a client starts the clip under `stream`, reads it to its end; then the server shuts down."""
    hub = hub_with(history)
    try:
        async with RunningServer(hub) as server:
            async with connect(server.url) as ws:
                await ws.recv()
                await send_and_await_subscribed(ws, {"type": "start", "source": CLIP, "stream": stream,
                                                     "realtime": False})
                return await receive_until_end(ws, stream)
    finally:
        hub.engine.close()


def fill(history: History, stream: str, seconds: float, **source) -> list[dict]:
    """A run of `stream` through the real pipeline (fake engine, scripted source) straight into the history."""
    got: list[dict] = []

    def emit(message):
        got.append(message.to_json())
        history.observe(message)

    engine = fake_engine()
    try:
        asyncio.run(StreamPipeline(stream, ScriptedSource(seconds, **source), engine, PipelineConfig(),
                                   emit=emit).run())
    finally:
        engine.close()
    return got


async def test_a_finished_stream_reads_back_exactly_after_the_server_restarts(tmp_path):
    need_data("videos", CLIP)
    path = tmp_path / "history.sqlite3"
    first = await play_clip_to_its_end(History(path), "cam")
    # a new server on the same file; the id "cam" is free again once its stream ended: a second run
    second = await play_clip_to_its_end(History(path), "cam")
    assert first[-1]["summary"]["reason"] == "eof" and len(windows_of(first)) == 6

    with HistoryReader(path) as reader:
        runs = reader.runs()
        assert [(r["run"], r["stream"], r["source"], r["reason"], r["windows"]) for r in runs] == [
            (1, "cam", CLIP, "eof", 6), (2, "cam", CLIP, "eof", 6)]
        assert all(r["started"] <= r["ended"] for r in runs) and runs[0]["ended"] <= runs[1]["started"]
        assert reader.run_of("cam")["run"] == 2 and reader.run_of("cam", 1)["run"] == 1
        assert list(reader.messages(1)) == stored_part(first)  # windows, final transcript, end: equal as JSON
        assert list(reader.messages(2)) == stored_part(second)
        assert list(reader.messages(1, ("window",))) == windows_of(first)


@pytest.mark.slow  # real-time pace
async def test_a_late_subscriber_gets_the_last_seconds_first_then_the_live_ones(tmp_path):
    need_data("videos", CLIP)
    hub = hub_with(History(tmp_path / "history.sqlite3"))
    try:
        async with RunningServer(hub) as server:
            async with connect(server.url) as owner, connect(server.url) as late, connect(server.url) as recent:
                for ws in (owner, late, recent):
                    await ws.recv()
                await send_and_await_subscribed(owner, {"type": "start", "source": CLIP, "stream": "cam"})
                seen: list[dict] = []
                async with asyncio.timeout(30):  # real-time pace: two windows are about 6 s of media in
                    while len(windows_of(seen)) < 2:
                        seen.append(json.loads(await owner.recv()))
                await late.send(json.dumps({"type": "subscribe", "stream": "cam", "since": 600}))
                await recent.send(json.dumps({"type": "subscribe", "stream": "cam", "since": 0.5}))
                owner_rest, late_got, recent_got = await asyncio.gather(
                    receive_until_end(owner, "cam"), receive_until_end(late, "cam"),
                    receive_until_end(recent, "cam"))
    finally:
        hub.engine.close()
    everything = [m for m in seen if m.get("stream") == "cam"] + owner_rest
    assert late_got[0]["type"] == "subscribed"
    # every window and committed word once, in order, the replayed ones first (before any status)
    assert windows_of(late_got) == windows_of(everything)
    assert [w["index"] for w in windows_of(late_got)] == list(range(6))
    finals = [m for m in everything if m["type"] == "transcript" and m["final"]]
    assert [m for m in late_got if m["type"] == "transcript" and m["final"]] == finals
    first_status = next(i for i, m in enumerate(late_got) if m["type"] == "status")
    assert [w["index"] for w in windows_of(late_got[:first_status])] == [0, 1]
    # since 0.5: only the last window(s) published before it joined, then the rest, contiguous
    indices = [w["index"] for w in windows_of(recent_got)]
    assert 0 < indices[0] <= 2 and indices == list(range(indices[0], 6))


async def test_a_replay_joins_a_fast_stream_without_a_gap_or_a_repeat(tmp_path):
    """Replayed as fast as possible, windows keep coming while the history is read for the late subscriber: they
    wait behind the replay, so nothing published at the seam is lost or sent twice."""
    hub = hub_with(History(tmp_path / "history.sqlite3"))
    try:
        async with RunningServer(hub) as server:
            async with connect(server.url) as late:
                await late.recv()
                live = hub.start("scripted", "fast", source=ScriptedSource(240.0))
                while live.pipeline is None or not live.last_status or live.last_status.state != "running":
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.05)
                await late.send(json.dumps({"type": "subscribe", "stream": "fast", "since": 1e6}))
                got = await receive_until_end(late, "fast")
    finally:
        hub.engine.close()
    indices = [w["index"] for w in windows_of(got)]
    assert indices == list(range(len(indices))) and got[-1]["summary"]["windows"] == len(indices)
    words = " ".join(m["text"] for m in got if m["type"] == "transcript" and m["final"]).split()
    assert len(words) == 240 and len(set(zip(words, range(len(words))))) == 240


async def test_a_replay_holds_what_was_observed_when_it_was_asked_for_not_later(tmp_path):
    history = History(tmp_path / "history.sqlite3")
    windows = [WindowMessage("cam", i, 2.0 * i, 2.0 * i + 4, {}, {"score": 0.5}, {"score": 0.5}, "") for i in range(3)]
    history.observe(StatusMessage("cam", "starting"))
    history.observe(windows[0])
    history.observe(windows[1])
    replay = history.recent("cam", 2.0)  # the seam is here, at the call
    history.observe(windows[2])
    assert await replay == [windows[0].dumps(), windows[1].dumps()]  # the last 2 s: t_end 4 and 6 of 6
    assert await history.recent("cam", 0.0) == [windows[2].dumps()]
    history.close()


def test_retention_by_age_deletes_what_is_older_than_keep(tmp_path):
    path = tmp_path / "history.sqlite3"
    now = time.time()
    clock = [now - 10 * DAY]
    history = History(path, clock=lambda: clock[0])
    fill(history, "old", 10.0)
    clock[0] = now - 2 * DAY
    fill(history, "recent", 10.0)
    history.close()
    with HistoryReader(path) as reader:
        assert [r["stream"] for r in reader.runs()] == ["old", "recent"]

    History(path, keep_s=7 * DAY).close()  # retention runs when the writer starts, then every minute
    with HistoryReader(path) as reader:
        assert [(r["run"], r["stream"]) for r in reader.runs()] == [(2, "recent")]
        assert reader.db.execute("SELECT count(*) FROM messages WHERE run = 1").fetchone()[0] == 0
        assert len(list(reader.messages(2, ("window",)))) == 4


@pytest.mark.slow  # four runs of 240 s of media through the pipeline
def test_retention_by_size_deletes_the_oldest_runs_first(tmp_path):
    path = tmp_path / "history.sqlite3"
    history = History(path)
    for n in range(4):
        fill(history, f"s{n}", 240.0)
    history.close()
    full = path.stat().st_size
    assert full > 400_000  # four runs of 119 windows each

    limit = full // 3
    History(path, max_bytes=limit).close()
    with HistoryReader(path) as reader:
        kept = [r["stream"] for r in reader.runs()]
        assert kept and kept == ["s0", "s1", "s2", "s3"][-len(kept):] and len(kept) < 4
        assert all(r["windows"] == 119 for r in reader.runs())  # whole runs go, never half of one
    assert path.stat().st_size <= limit  # the pages were given back to the file system


def test_observe_never_blocks_when_the_writer_is_stuck(tmp_path):
    history = History(tmp_path / "history.sqlite3", queue_size=50)
    stuck, entered = threading.Event(), threading.Event()
    write = history._write

    def stalled_disk(*args):
        entered.set()
        stuck.wait()
        write(*args)

    history._write = stalled_disk
    message = WindowMessage("cam", 0, 0.0, 4.0, {}, {"score": None}, {"score": None}, "")
    history.observe(message)
    assert entered.wait(5)  # the writer holds the first message: the queue fills from here
    # observe on a thread of its own: were a full queue to block it, it would wait for the writer, which waits for
    # `stuck`, and the thread would still be running after the guard (a hang guard, not a timing)
    observing = threading.Thread(target=lambda: [history.observe(message) for _ in range(1000)], daemon=True)
    observing.start()
    observing.join(60)
    assert not observing.is_alive(), "observe blocked on a full queue"
    assert history.dropped == 1000 - 50
    stuck.set()
    history.close()
    with HistoryReader(tmp_path / "history.sqlite3") as reader:
        assert reader.runs()[0]["windows"] == 51 and reader.runs()[0]["reason"] == "interrupted"


def test_the_default_file_is_in_the_data_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDSENT_DATA_DIR", str(tmp_path / "data"))
    history = open_history(build_parser().parse_args(["serve"]))
    history.close()
    assert history.path == tmp_path / "data" / "history.sqlite3" and history.path.is_file()
    assert history.keep_s == 7 * DAY and history.max_bytes == 1 << 30
    monkeypatch.delenv("VIDSENT_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_path() == tmp_path / "xdg" / "vidsent" / "history.sqlite3"
    assert open_history(build_parser().parse_args(["serve", "--history", "off"])) is None


def test_since_must_be_a_number_of_seconds():
    assert parse_request('{"type": "subscribe", "stream": "cam", "since": 90}')["since"] == 90
    for bad in ('-1', 'true', '"60"', 'NaN', 'Infinity'):
        with pytest.raises(ProtocolError):
            parse_request(f'{{"type": "subscribe", "stream": "cam", "since": {bad}}}')


@pytest.mark.slow  # five `vidsent` subprocesses
async def test_the_history_command_lists_shows_and_exports_runs(tmp_path):
    path = tmp_path / "history.sqlite3"
    history = History(path)
    older = await asyncio.to_thread(fill, history, "cam", 6.0)
    latest = await asyncio.to_thread(fill, history, "cam", 10.0)
    await asyncio.to_thread(fill, history, "lobby", 4.0, has_video=False)
    history.close()
    where = ("--history", str(path))

    code, out, err = await run_vidsent("history", "list", *where, timeout=60)
    assert code == 0, err
    header, *rows = [line.split() for line in out.splitlines()]
    assert header == ["run", "stream", "source", "started", "ended", "reason", "windows"]
    # date and time are two words each
    assert [(r[0], r[1], r[2], r[7], r[8]) for r in rows] == [
        ("1", "cam", "scripted", "eof", "2"), ("2", "cam", "scripted", "eof", "4"),
        ("3", "lobby", "scripted", "eof", "1")]

    code, out, err = await run_vidsent("history", "show", "cam", *where, timeout=60)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("run 2: stream cam (scripted)") and lines[0].endswith("(eof)")
    timeline = [line for line in lines if line.startswith("[")]
    assert [line[:16] for line in timeline] == [f"[{w['t_start']:6.1f}–{w['t_end']:6.1f}s]"
                                                for w in windows_of(latest)]
    finals = [m["text"] for m in latest if m["type"] == "transcript" and m["final"]]
    assert [line for line in lines if line.startswith("  » ")] == [f"  » {text}" for text in finals]
    assert lines[-1].startswith("end (eof): 4 windows")
    code, out, _ = await run_vidsent("history", "show", "cam", "--run", "1", *where, timeout=60)
    assert code == 0 and len([line for line in out.splitlines() if line.startswith("[")]) == len(windows_of(older))

    out_csv, out_json = tmp_path / "cam.csv", tmp_path / "cam.json"
    code, out, err = await run_vidsent("history", "export", "cam", "--csv", str(out_csv), "--json", str(out_json),
                                       *where, timeout=60)
    assert code == 0, err
    with open(out_csv, newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == CSV_FIELDS
        table = list(reader)
    assert [(r["file"], int(r["index"]), float(r["t_end"]), float(r["fused_score"])) for r in table] == [
        ("scripted", w["index"], w["t_end"], w["fused"]["score"]) for w in windows_of(latest)]
    exported = json.loads(out_json.read_text())
    assert exported["run"] == 2 and exported["reason"] == "eof" and exported["messages"] == stored_part(latest)

    code, _, err = await run_vidsent("history", "show", "nobody", *where, timeout=60)
    assert code == 1 and "no stream 'nobody'" in err and "Traceback" not in err


def history_command(capsys, *args: str) -> tuple[int, str, str]:
    """`vidsent history ARGS` in this process: (exit code, stdout, stderr); argparse's exit is its code."""
    return vidsent_in_process(capsys, "history", *args)


@pytest.fixture(scope="module")
def small_history(tmp_path_factory):
    """Two runs of "cam" and one of "lobby", written and closed (no WAL left beside it)."""
    path = tmp_path_factory.mktemp("history") / "history.sqlite3"
    history = History(path)
    for stream in ("cam", "cam", "lobby"):
        fill(history, stream, 6.0)
    history.close()
    return path


@pytest.mark.parametrize("args", [
    ("show", ""), ("export", "", "--json", "out.json"), ("list", ""), ("show", "cam cam"), ("show", "../cam"),
    ("show", "x" * 65), ("show", "cam", "--run", "0"), ("show", "cam", "--run", "-1"), ("show", "cam", "--run", "1.5"),
    ("show", "cam", "--history", ""), ("list", "--history", " "), ("export", "cam", "--json", ""),
    ("export", "cam", "--csv", ""), ("export", "cam")])
def test_the_history_command_refuses_bad_arguments_with_exit_code_2(capsys, small_history, args):
    # `show ""` used to show the newest run of any stream, `--history ""` to read the default file
    where = () if "--history" in args else ("--history", str(small_history))
    code, out, err = history_command(capsys, *args, *where)
    assert code == 2 and out == "", (code, out)
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("vidsent history"), err


def not_histories(good: Path, folder: Path) -> dict[str, Path]:
    """Files that are not a readable vidsent history, by what they are."""
    data = good.read_bytes()
    files = {"text": b"a text file\n", "empty": b"", "truncated header": data[:100],
             "truncated half way": data[:len(data) // 2],
             "pages after the first overwritten": data[:4096] + b"\xa5" * (len(data) - 4096)}
    paths = {}
    for kind, content in files.items():
        paths[kind] = folder / f"{kind}.sqlite3"
        paths[kind].write_bytes(content)
    paths["directory"] = folder / "a-directory"
    paths["directory"].mkdir()
    paths["missing"] = folder / "missing.sqlite3"
    for kind, sql in (("another schema", "CREATE TABLE streams (id, name); CREATE TABLE messages (x)"),
                      ("another program's tables", "CREATE TABLE songs (title, artist)")):
        paths[kind] = folder / f"{kind}.db"
        with sqlite3.connect(paths[kind]) as db:
            db.executescript(sql)
        db.close()
    paths["a stored message that is not JSON"] = folder / "bad-body.sqlite3"
    paths["a stored message that is not JSON"].write_bytes(data)
    with sqlite3.connect(paths["a stored message that is not JSON"]) as db:
        db.execute("UPDATE messages SET body = '{not json' WHERE id = (SELECT max(id) FROM messages)")
    db.close()
    return paths


def test_every_history_command_refuses_a_file_that_is_not_a_history_in_one_line(capsys, small_history, tmp_path):
    for kind, path in not_histories(small_history, tmp_path).items():
        for action in (("list",), ("show", "lobby"), ("export", "lobby", "--json", str(tmp_path / "out.json"))):
            if kind == "a stored message that is not JSON" and action[0] == "list":
                continue  # list reads no message
            code, out, err = history_command(capsys, *action, "--history", str(path))
            assert code == 1 and out == "", (kind, action, code, out)
            assert len(err.splitlines()) == 1 and err.startswith("vidsent history: ") and str(path) in err, (kind, err)
            assert not (tmp_path / "out.json").exists()
    # the command itself, as a user runs it: one line, no traceback
    text = tmp_path / "text.sqlite3"
    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "history", "list", "--history", str(text)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == "", done.stdout
    assert done.stderr == f"vidsent history: {text} is not a vidsent history (file is not a database)\n", done.stderr


def test_a_server_never_writes_its_tables_into_another_programs_database(tmp_path):
    path = tmp_path / "music.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE songs (title, artist)")
    db.close()
    with pytest.raises(NotAHistory, match="not a vidsent history"):
        History(path)
    with sqlite3.connect(path) as db:
        assert [row[0] for row in db.execute("SELECT name FROM sqlite_master")] == ["songs"]
    db.close()


def test_a_history_path_with_uri_characters_reads_back(capsys, small_history, tmp_path):
    odd = tmp_path / "what?#%20.sqlite3"  # the reader opens a file: URI, where these mean something
    odd.write_bytes(small_history.read_bytes())
    code, out, err = history_command(capsys, "list", "--history", str(odd))
    assert code == 0 and len(out.splitlines()) == 4, err


def test_history_export_reports_a_path_it_cannot_write(capsys, small_history, tmp_path):
    for out_path in (tmp_path / "no" / "such" / "folder.json", tmp_path):
        for option in ("--json", "--csv"):
            code, out, err = history_command(capsys, "export", "cam", option, str(out_path),
                                             "--history", str(small_history))
            assert code == 1 and out == "", (code, out)
            assert err.startswith(f"vidsent history export: cannot write {out_path}: ") and len(err.splitlines()) == 1


def test_history_list_into_a_closed_pipe_exits_quietly(small_history):
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `vidsent history list | head -0`
    try:
        done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "history", "list", "--history",
                               str(small_history)], cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(write_end)
    assert done.returncode == 1 and done.stderr == b"", done.stderr.decode()


async def serve(*args: str, data_dir) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *FAKE_SERVE, "serve", "--port", str(port), "--media-dir",
        str(VIDEOS), *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "VIDSENT_DATA_DIR": str(data_dir)})
    await wait_listening(process, port, timeout=60)
    return process, port


async def terminated(process) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(process.wait(), 15)
    return code, (await process.stderr.read()).decode()


@pytest.mark.slow  # real-time pace
async def test_sigterm_loses_nothing_the_clients_got(tmp_path):
    need_data("videos", CLIP)
    path = tmp_path / "history.sqlite3"
    process, port = await serve("--history", str(path), data_dir=tmp_path / "unused")
    try:
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            await ws.recv()
            await send_and_await_subscribed(ws, {"type": "start", "source": CLIP, "stream": "cam"})
            got: list[dict] = []
            async with asyncio.timeout(30):  # real-time pace: the stream is live, two windows in
                while len(windows_of(got)) < 2:
                    got.append(json.loads(await ws.recv()))
            (code, err), rest = await asyncio.gather(terminated(process), receive_until_end(ws, "cam"))
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 0 and "Traceback" not in err, err[-2000:]
    received = [m for m in got if m.get("stream") == "cam"] + rest
    with HistoryReader(path) as reader:
        (run,) = reader.runs()
        stored = list(reader.messages(run["run"]))
    assert stored == stored_part(received) and len(windows_of(stored)) >= 2
    assert run["reason"] == "stopped" and stored[-1]["summary"]["reason"] == "stopped"
    assert not (tmp_path / "unused").exists()


@pytest.mark.slow  # a serve subprocess
async def test_history_off_writes_nothing(tmp_path):
    need_data("videos", CLIP)
    data_dir = tmp_path / "data"
    process, port = await serve("--history", "off", data_dir=data_dir)
    try:
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            await ws.recv()
            await send_and_await_subscribed(ws, {"type": "start", "source": CLIP, "stream": "cam", "realtime": False})
            assert windows_of(await receive_until_end(ws, "cam"))
        code, err = await terminated(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 0 and "Traceback" not in err, err[-2000:]
    assert not data_dir.exists() and not list(tmp_path.iterdir())
