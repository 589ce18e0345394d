"""Who gets in and how much they may do: the token, the browser Origin check, per-client limits, and the sources a
client may point the server at. A real server on loopback; the pipeline runs fake scorers (no models needed)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from protocol import parse_message
from service.access import Access, resolve_token
from service.hub import StreamHub
from testkit.data import VIDEOS, need_data
from testkit.fakes import ScriptedSource, fake_engine
from testkit.servers import RunningServer, http_get, make_hub, reply

TOKEN = "s3cret-token-for-tests"


def hub(media_dir=None, **kwargs) -> StreamHub:
    """The fake engine's hub over `media_dir` (the real clips by default), one RTSP camera allowed."""
    return make_hub(media_dir=media_dir or VIDEOS, rtsp_hosts=["127.0.0.1:8554"], **kwargs)


def test_a_token_is_required_off_loopback_unless_insecure():
    assert resolve_token("127.0.0.1", None, False) == (None, False)
    assert resolve_token("0.0.0.0", "given", False) == ("given", False)
    token, generated = resolve_token("0.0.0.0", None, False)
    assert generated and len(token) >= 32
    assert resolve_token("0.0.0.0", None, True) == (None, False)


async def test_the_token_guards_the_websocket_the_dashboard_and_the_stream_list(caplog):
    caplog.set_level(logging.DEBUG)
    async with RunningServer(hub(), Access(token=TOKEN)) as server:
        base = server.url.replace("ws://", "http://")
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            with pytest.raises(InvalidStatus) as info:
                async with connect(server.url, additional_headers=headers):
                    pass
            assert info.value.response.status_code == 401
        async with connect(server.url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
            assert parse_message(await ws.recv()).type == "hello"
        async with connect(f"{server.url}/?token={TOKEN}") as ws:
            assert parse_message(await ws.recv()).type == "hello"
        status, _, body = await http_get(f"{base}/health")
        assert status == 200 and json.loads(body) == {"ok": True, "protocol": 1}  # nothing about streams
        status, _, body = await http_get(f"{base}/health", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and json.loads(body)["streams"] == []
        assert (await http_get(f"{base}/"))[0] == 401
        assert (await http_get(f"{base}/dashboard/app.js"))[0] == 401
        status, headers, body = await http_get(f"{base}/?token={TOKEN}")
        assert status == 200 and b"<html" in body.lower()
        cookie = headers["Set-Cookie"].split(";")[0]
        assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
        assert (await http_get(f"{base}/dashboard/app.js", {"Cookie": cookie}))[0] == 200
        async with connect(server.url, additional_headers={"Cookie": cookie}) as ws:  # the dashboard's websocket
            assert parse_message(await ws.recv()).type == "hello"
    assert TOKEN not in caplog.text, "the token must never be logged"


async def test_a_cross_site_page_cannot_drive_the_server():
    async with RunningServer(hub(), Access(allowed_origins=("https://dash.example.com",))) as server:
        host = server.url.removeprefix("ws://")
        with pytest.raises(InvalidStatus) as info:
            async with connect(server.url, origin="http://evil.example.com"):
                pass
        assert info.value.response.status_code == 403
        for origin in (f"http://{host}", "https://dash.example.com"):
            async with connect(server.url, origin=origin) as ws:
                assert parse_message(await ws.recv()).type == "hello"


async def test_limits_give_their_error_codes_and_spare_the_other_clients():
    need_data("videos", "vna_original_2.mp4")
    access = Access(max_clients=2, max_client_streams=1, max_requests_per_s=5)
    async with RunningServer(hub(), access) as server:
        async with connect(server.url) as first, connect(server.url) as second:
            await first.recv(), await second.recv()
            with pytest.raises(InvalidStatus) as info:  # a third client
                async with connect(server.url):
                    pass
            assert info.value.response.status_code == 503
            started = await reply(first, {"type": "start", "source": "vna_original_2.mp4", "stream": "one"})
            assert started.type == "subscribed"
            refused = await reply(first, {"type": "start", "source": "vna_original_2.mp4", "stream": "two"})
            assert refused.type == "error" and refused.code == "client_stream_limit"
            # the other client's allowance is its own
            assert (await reply(second, {"type": "start", "source": "vna_original_2.mp4", "stream": "mine"})).type \
                == "subscribed"
            await first.send(json.dumps({"type": "stop", "stream": "one"}))
            for _ in range(30):  # a flood: past the burst, requests are refused with rate_limited
                await first.send(json.dumps({"type": "list"}))
            codes = []
            async with asyncio.timeout(10):
                while len(codes) < 30:
                    message = parse_message(await first.recv())
                    if message.type == "streams" or getattr(message, "code", None) == "rate_limited":
                        codes.append(message.type if message.type == "streams" else message.code)
            assert codes.count("rate_limited") >= 10 and codes.count("streams") >= 5
            assert (await reply(second, {"type": "list"})).type == "streams"  # the other client is not limited
            await second.send(json.dumps({"type": "stop", "stream": "mine"}))


@pytest.mark.parametrize("source", [
    "../outside.mp4", "/etc/passwd", "file:///etc/passwd", "http://127.0.0.1:9/a.mp4", "https://127.0.0.1/a.mp4",
    "udp://127.0.0.1:1234", "tcp://127.0.0.1:1234", "concat:vna_0001.mp4|vna_0008.mp4", "subfile:,,start,0,end,0,,:x",
    "pipe:0", "data:video/mp4;base64,AAAA", "rtsp://127.0.0.2:8554/cam", "rtsp://127.0.0.1:9999/cam",
    "rtsp://user:pw@10.0.0.1/cam", "rtsp://127.0.0.1:port/cam", "rtsp://user:pw@127.0.0.1:x/cam", "bad\x00name.mp4",
])
async def test_the_server_never_opens_a_source_off_its_lists(source):
    async with RunningServer(hub()) as server:
        async with connect(server.url) as ws:
            await ws.recv()
            message = await reply(ws, {"type": "start", "source": source})
    assert message.type == "error" and message.code == "not_allowed", message
    assert "pw" not in message.message


async def test_a_symlink_out_of_the_media_folder_is_refused(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    (tmp_path / "secret.mp4").write_bytes(b"\x00" * 16)
    os.symlink(tmp_path / "secret.mp4", media / "looks_inside.mp4")
    os.symlink(tmp_path, media / "folder")
    async with RunningServer(hub(media)) as server:
        async with connect(server.url) as ws:
            await ws.recv()
            for source in ("looks_inside.mp4", "folder/secret.mp4"):
                message = await reply(ws, {"type": "start", "source": source})
                assert message.type == "error" and message.code == "not_allowed", (source, message)
                assert str(tmp_path) not in message.message
            listed = await reply(ws, {"type": "list_media"})
    assert listed.files == []  # links that lead out are not even listed


class SourceThatBreaksInternally(ScriptedSource):
    """A bug deep inside a source, with a server path in its text: the client must learn neither."""

    async def __aiter__(self):
        async for item in super().__aiter__():
            if getattr(item, "t", 0.0) >= 1.0:
                raise RuntimeError("index out of range in /srv/vidsent/secret/internals.py")
            yield item


async def test_errors_name_no_server_paths_and_the_log_holds_no_traceback(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    need_data("videos", "vna_mosi_2.6.mp4")
    media = tmp_path / "media"
    (media / "sub").mkdir(parents=True)
    (media / "notes.mp4").write_text("not a video\n")
    (media / "empty.mp4").write_bytes(b"")
    shutil.copy(VIDEOS / "vna_mosi_2.6.mp4", media / "clip.mp4")
    the_hub = make_hub(fake_engine(fail=("text", "audio", "visual")), media)
    async with RunningServer(the_hub) as server:
        async with connect(server.url) as ws:
            await ws.recv()
            said = []
            for source in ("missing.mp4", "sub/missing.mp4", "notes.mp4", "empty.mp4", "sub"):
                await ws.send(json.dumps({"type": "start", "source": source, "realtime": False}))
                async with asyncio.timeout(20):  # the stream starts, fails to open: its error, then its end
                    while (message := parse_message(await ws.recv())).type != "end":
                        if message.type == "error":
                            said.append((source, message))
            assert [(s, m.code) for s, m in said] == [
                ("missing.mp4", "not_found"), ("sub/missing.mp4", "not_found"), ("notes.mp4", "not_media"),
                ("empty.mp4", "empty_file"), ("sub", "not_a_file")]
            for source, message in said:
                assert source in message.message and str(tmp_path) not in message.message, message
            # every scorer raising: the windows mark each modality missing, the stream runs to its end
            await ws.send(json.dumps({"type": "start", "source": "clip.mp4", "realtime": False, "stream": "f"}))
            messages = [m async for m in _until_end(ws, "f")]
            windows = [m for m in messages if m.type == "window"]
            assert windows and messages[-1].summary["reason"] == "eof"
            assert all(not w.modalities[m]["available"] and "scorer failed" in w.modalities[m]["reason"]
                       for w in windows for m in ("text", "audio", "visual"))
            # a bug inside a source: an `internal` error that names no internals
            the_hub.start("broken", "broken", source=SourceThatBreaksInternally(3.0))
            await ws.send(json.dumps({"type": "subscribe", "stream": "broken"}))
            messages = [m async for m in _until_end(ws, "broken")]
    errors = [m for m in messages if m.type == "error"]
    assert [e.code for e in errors] == ["internal"] and "/srv" not in errors[0].message
    assert "RuntimeError" in errors[0].message and messages[-1].summary["reason"] == "error"
    logged = "\n".join(caplog.text.splitlines())
    assert "Traceback" not in logged and not any(r.exc_info for r in caplog.records if r.levelno >= logging.INFO)
    assert "stream broken failed: RuntimeError" in logged  # the operator still learns what broke


async def _until_end(ws, stream: str):
    async with asyncio.timeout(30):
        async for raw in ws:
            message = parse_message(raw)
            if getattr(message, "stream", None) == stream:
                yield message
                if message.type == "end":
                    return
