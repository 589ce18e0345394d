"""The websocket server end to end, on real media: windows in order covering each file, fan-out, clean errors."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from protocol import parse_message
from service.hub import Subscriber
from testkit.data import DATA, VIDEOS, need_data
from testkit.servers import RunningServer, collect, make_hub, start


def check_timeline(windows, duration: float) -> None:
    assert windows, "no windows"
    assert [w.index for w in windows] == list(range(len(windows)))
    assert windows[0].t_start == 0.0
    for a, b in zip(windows, windows[1:]):
        assert a.t_start < b.t_start and b.t_start <= a.t_end, "windows out of order or leaving a gap"
    assert windows[-1].t_end == pytest.approx(duration, abs=0.6)
    for w in windows:
        for m in w.modalities.values():
            assert set(m) >= {"score", "label", "available", "reason"}
            if m["available"]:
                assert 0.0 <= m["score"] <= 1.0
            else:
                assert m["score"] is None and m["reason"]
        if w.fused["score"] is not None:
            assert 0.0 <= w.fused["score"] <= 1.0 and 0.0 <= w.rolling["score"] <= 1.0


async def test_every_real_video_replays_through_the_server(engine):
    need_data("videos")
    files = sorted(p for p in VIDEOS.iterdir() if p.is_file())
    assert len(files) >= 10
    async with RunningServer(make_hub(engine, DATA, rtsp_hosts=["127.0.0.1"])) as server:
        async with connect(server.url) as ws:
            assert parse_message(await ws.recv()).type == "hello"
            for path in files:
                stream = await start(ws, f"videos/{path.name}")
                messages = await collect(ws, stream)
                end = messages[-1]
                assert end.type == "end" and end.summary["reason"] == "eof", (path.name, end)
                windows = [m for m in messages if m.type == "window"]
                check_timeline(windows, end.summary["duration"])
                assert end.summary["source"]["has_video"]


async def test_two_clients_on_one_stream_get_the_same_windows(engine):
    need_data("videos", "vna_0001.mp4")
    async with RunningServer(make_hub(engine, DATA, rtsp_hosts=["127.0.0.1"])) as server:
        async with connect(server.url) as first, connect(server.url) as second:
            await first.recv(), await second.recv()  # hello
            stream = await start(first, "videos/vna_0001.mp4", realtime=True, stream="shared")
            await second.send(json.dumps({"type": "subscribe", "stream": stream}))
            a, b = await asyncio.gather(collect(first, stream), collect(second, stream))
    windows_a = [m.to_json() for m in a if m.type == "window"]
    windows_b = [m.to_json() for m in b if m.type == "window"]
    assert windows_a and windows_a == windows_b
    latencies = [w["latency_s"] for w in windows_a]
    assert all(lat is not None and lat >= 0 for lat in latencies)


@pytest.mark.parametrize("request_json,code", [
    ({"type": "start", "source": "../../../etc/passwd"}, "not_allowed"),
    ({"type": "start", "source": "/etc/passwd"}, "not_allowed"),
    ({"type": "start", "source": "http://example.com/a.mp4"}, "not_allowed"),
    ({"type": "start", "source": "rtsp://10.1.2.3/cam"}, "not_allowed"),
    ({"type": "start", "source": "videos/does_not_exist.mp4"}, None),  # starts, then errors: see below
    ({"type": "subscribe", "stream": "nope"}, "no_such_stream"),
    ({"type": "dance"}, "bad_request"),
    ({"type": "start"}, "bad_request"),
    ({"type": "start", "source": "x.mp4", "stream": "bad id!"}, "bad_request"),
])
async def test_bad_requests_get_clear_errors_and_the_server_carries_on(engine, request_json, code):
    async with RunningServer(make_hub(engine, DATA, rtsp_hosts=["127.0.0.1"])) as server:
        async with connect(server.url) as ws:
            await ws.recv()
            await ws.send(json.dumps(request_json))
            message = parse_message(await asyncio.wait_for(ws.recv(), 10))
            if code is None:  # a missing file inside the media folder: the stream starts and ends with not_found
                assert message.type == "subscribed"
                messages = await collect(ws, message.stream, 20)
                errors = [m for m in messages if m.type == "error"]
                assert [e.code for e in errors] == ["not_found"] and messages[-1].type == "end"
            else:
                assert message.type == "error" and message.code == code and message.message
            await ws.send("{not json")
            message = parse_message(await asyncio.wait_for(ws.recv(), 10))
            assert message.type == "error" and message.code == "bad_request"
            await ws.send(json.dumps({"type": "list"}))
            assert parse_message(await asyncio.wait_for(ws.recv(), 10)).type == "streams"


async def test_a_client_that_never_reads_is_dropped_without_stalling_the_stream():
    class StuckSocket:
        closed_with = None

        async def send(self, text):
            await asyncio.Event().wait()  # never returns: the client stopped reading

        async def close(self, code, reason):
            self.closed_with = (code, reason)

    ws = StuckSocket()
    client = Subscriber(ws)
    results = [client.offer(f'{{"n":{i}}}') for i in range(2000)]  # returns at once, never blocks
    await asyncio.sleep(0.05)
    assert results.count(False) > 0 and client.too_slow
    assert ws.closed_with and ws.closed_with[0] == 1013
    await client.close()
