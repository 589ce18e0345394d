"""The holes an independent probe of `vidsent serve` found, each tried the way an attacker would: DNS rebinding
through the Host header, requests the parser choked on, static paths that raised, look-alike stream ids, a stream
that could not be stopped while its source was opening, paths the README said were refused, an empty token, and
who may stop whose stream. A real server on loopback with fake scorers (no models); the last test attacks a real
`vidsent serve` process and reads its default log for tracebacks."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import time

import pytest
from websockets.asyncio.client import connect

from protocol import MAX_REQUEST_BYTES, ProtocolError, parse_message, parse_request
from service.access import Access, SourcePolicy, resolve_token
from stream.sources import MediaSource, SourceInfo
from testkit.data import ROOT, VIDEOS, need_data
from testkit.servers import FAKE_SERVE, STREAM_MESSAGE_TYPES, RunningServer, free_port, make_hub, wait_listening
from testkit.servers import reply as reply_past

CLIP = "vna_mosi_2.6.mp4"


async def raw_http(port: int, request: bytes, timeout: float = 10) -> bytes:
    """What the server answers to these exact bytes: every response until it closes the connection, or the head of
    a 101 (an accepted websocket stays open)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(timeout):
            head = await reader.readuntil(b"\r\n\r\n")
            return head if b" 101 " in head.split(b"\r\n")[0] else head + await reader.read()
    finally:
        writer.close()


def get(path: str, host: str, *extra: str) -> bytes:
    return "\r\n".join([f"GET {path} HTTP/1.1", f"Host: {host}", *extra, "Connection: close", "", ""]).encode()


def upgrade(host: str, origin: str | None = None) -> bytes:
    headers = ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
               "Sec-WebSocket-Version: 13"]
    if origin:
        headers.append(f"Origin: {origin}")
    return "\r\n".join(["GET / HTTP/1.1", f"Host: {host}", *headers, "", ""]).encode()


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


async def reply(ws, request: dict | str):
    """The answer to a request, past the messages of streams already running and `subscribed`."""
    return await reply_past(ws, request, past=(*STREAM_MESSAGE_TYPES, "subscribed"))


# -- 1. DNS rebinding ------------------------------------------------------------------------------------------

async def test_a_page_that_rebinds_its_name_to_loopback_gets_nothing():
    """The rebinding page sends its own name as Host and a matching Origin: before the Host check it had the
    websocket, the dashboard, /health with the stream list and /metrics."""
    async with RunningServer(make_hub()) as server:
        port = server.port
        evil = f"attacker.example:{port}"
        assert status_of(await raw_http(port, upgrade(evil, f"http://{evil}"))) == 421
        for path in ("/", "/dashboard/app.js", "/health", "/metrics", "/favicon.ico"):
            assert status_of(await raw_http(port, get(path, evil))) == 421, path
        assert status_of(await raw_http(port, get("/health", ""))) in (400, 421)  # no name at all
        # the names the server is really reached by still work
        for name in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "localhost"):
            assert status_of(await raw_http(port, get("/health", name))) == 200, name
        assert status_of(await raw_http(port, upgrade(f"127.0.0.1:{port}", f"http://127.0.0.1:{port}"))) == 101


def test_the_host_check_follows_the_bound_address_and_allow_host():
    class Request:
        def __init__(self, host):
            self.headers = {"Host": host}

    def passes(bound: str, host: str, allowed=()) -> bool:
        return Access(bind_host=bound, allowed_hosts=allowed).host_allowed(Request(host))

    assert passes("127.0.0.1", "localhost:8765") and passes("127.0.0.1", "127.0.0.2:1")
    assert not passes("127.0.0.1", "attacker.example:8765") and not passes("127.0.0.1", "10.0.0.5:8765")
    assert not passes("127.0.0.1", "localhost.attacker.example") and not passes("127.0.0.1", "127.0.0.1.nip.io")
    assert passes("10.0.0.5", "10.0.0.5:8765") and not passes("10.0.0.5", "vidsent.lan:8765")
    assert passes("10.0.0.5", "vidsent.lan:8765", ("vidsent.lan",))
    assert passes("10.0.0.5", "VIDSENT.LAN.", ("vidsent.lan",))
    assert passes("0.0.0.0", "192.168.1.20:8765") and passes("0.0.0.0", "[fe80::1]:8765")
    assert not passes("0.0.0.0", "attacker.example:8765") and not passes("0.0.0.0", "a:b:c")


# -- 3. The request parser -------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    '{"type":["start"]}', '{"type":{}}', '{"type":1}', '{"type":null}',
    "[" * 20_000 + "]" * 20_000,  # about 40 KB nested 20,000 deep: RecursionError in json.loads
    '{"a":' * 5_000 + "1" + "}" * 5_000,
    json.dumps({"type": "list", "pad": "x" * (MAX_REQUEST_BYTES + 10)}),  # over 64 KiB, under the frame limit
    json.dumps({"type": "subscribe", "stream": "s1", "since": 2**63}),  # overflowed SQLite: no replay, no error
    json.dumps({"type": "subscribe", "stream": "s1", "since": 1e300}),
])
async def test_requests_that_broke_the_parser_get_bad_request_and_keep_the_connection(raw):
    async with RunningServer(make_hub()) as server:
        async with connect(server.url, max_size=None) as ws:
            await ws.recv()
            message = await reply(ws, raw)
            assert message.type == "error" and message.code == "bad_request", message
            assert (await reply(ws, {"type": "list"})).type == "streams"  # the connection is still there


def test_look_alike_stream_ids_are_refused():
    for stream in ("Ａ", "İ", "٣٤", "𝟘", "s\u200b1", "caf\u00e9", "a\nb", "s1\n", "x" * 65, ""):
        with pytest.raises(ProtocolError):
            parse_request(json.dumps({"type": "subscribe", "stream": stream}))
    for stream in ("s1", "cam-2_front.left", "A" * 64):
        assert parse_request(json.dumps({"type": "subscribe", "stream": stream}))["stream"] == stream


# -- 4. Static files -------------------------------------------------------------------------------------------

async def test_odd_static_paths_and_pipelined_requests_leave_no_traceback(caplog):
    caplog.set_level(logging.DEBUG)
    async with RunningServer(make_hub()) as server:
        port, host = server.port, f"127.0.0.1:{server.port}"
        for path in ("/dashboard/%00", "/dashboard/index.html%00.js", "/dashboard/" + "a" * 300,
                     "/dashboard/%ff%fe", "/dashboard/../server.py", "/dashboard/%2e%2e/server.py",
                     "/%2e%2e/README.md"):
            assert status_of(await raw_http(port, get(path, host))) == 404, path
        # two GETs in one packet: the first is answered, the second dropped with the connection
        two = get("/health", host).replace(b"Connection: close\r\n", b"") * 2
        answered = await raw_http(port, two)
        assert status_of(answered) == 200 and answered.count(b"HTTP/1.1 ") == 1
        assert status_of(await raw_http(port, get("/dashboard/app.js", host))) == 200  # the server is fine
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]
    assert "Traceback" not in caplog.text


# -- 6. A stream whose source is still opening ------------------------------------------------------------------

class NeverOpens(MediaSource):
    """A camera still connecting, a browser that never completes ICE: open() waits for ever."""

    kind = "rtsp"
    realtime = True

    def __init__(self):
        self.closed = False

    async def open(self) -> SourceInfo:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def __aiter__(self):
        yield  # pragma: no cover

    async def close(self) -> None:
        self.closed = True


async def test_stop_and_shutdown_end_a_stream_whose_source_is_still_opening():
    the_hub = make_hub()
    async with RunningServer(the_hub) as server:
        async with connect(server.url) as ws:
            await ws.recv()
            source = NeverOpens()
            the_hub.start("cam", "cam", source=source)
            await ws.send(json.dumps({"type": "subscribe", "stream": "cam"}))
            await asyncio.sleep(0.2)
            await ws.send(json.dumps({"type": "stop", "stream": "cam"}))
            async with asyncio.timeout(5):
                while (message := parse_message(await ws.recv())).type != "end":
                    pass
            assert message.summary["reason"] == "stopped" and source.closed  # within the 5 s guard: it never opens
        # the server's shutdown (SIGTERM) ends one that is opening with its `end` too
        source = NeverOpens()
        opening = the_hub.start("cam2", "cam2", source=source)
        await asyncio.sleep(0.2)
        began = time.monotonic()
    assert opening.ended is not None and opening.ended.summary["reason"] == "stopped" and source.closed
    assert time.monotonic() - began < 5


async def test_a_browser_that_never_completes_ice_can_be_stopped():
    pytest.importorskip("aiortc")
    from aiortc import RTCConfiguration, RTCPeerConnection

    from stream.webrtc import gather_ice_on

    gather_ice_on(["127.0.0.1"])
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()  # the browser is gone before ICE: the server's checks go nowhere
    the_hub = make_hub(webrtc_options={"ice_servers": []})
    async with RunningServer(the_hub) as server:
        async with connect(server.url) as ws:
            await ws.recv()
            answer = await reply(ws, {"type": "webrtc_offer", "sdp": sdp, "stream": "browser"})
            assert answer.type == "webrtc_answer", answer
            await ws.send(json.dumps({"type": "stop", "stream": "browser"}))
            async with asyncio.timeout(5):
                while (message := parse_message(await ws.recv())).type != "end":
                    pass
    assert message.summary["reason"] == "stopped"  # within the 5 s guard, long before ICE would give up


async def test_an_rtsp_camera_that_never_answers_can_be_stopped_while_connecting():
    import socket

    silent = socket.create_server(("127.0.0.1", 0))  # the kernel accepts the connection; nothing ever answers
    port = silent.getsockname()[1]
    the_hub = make_hub(rtsp_hosts=[f"127.0.0.1:{port}"], rtsp_options={"open_timeout_s": 20.0, "read_timeout_s": 20.0})
    try:
        async with RunningServer(the_hub) as server:
            async with connect(server.url) as ws:
                await ws.recv()
                await ws.send(json.dumps({"type": "start", "source": f"rtsp://127.0.0.1:{port}/cam", "stream": "cam"}))
                await asyncio.sleep(1.0)
                await ws.send(json.dumps({"type": "stop", "stream": "cam"}))
                async with asyncio.timeout(10):
                    while (message := parse_message(await ws.recv())).type != "end":
                        pass
        assert message.summary["reason"] == "stopped"  # within the 10 s guard, before the 20 s open timeout
    finally:
        silent.close()


def test_rtsps_without_a_port_is_judged_on_the_port_ffmpeg_connects_to():
    policy = SourcePolicy(None, ["cam:554", "other"])
    assert policy.rtsp_allowed("rtsp://cam/x") and not policy.rtsp_allowed("rtsps://cam/x")  # rtsps: 322
    assert policy.rtsp_allowed("rtsps://cam:554/x") and policy.rtsp_allowed("rtsps://other/x")


# -- 7. Paths --------------------------------------------------------------------------------------------------

async def test_paths_the_listing_would_never_name_are_refused_without_revealing_the_folder(tmp_path):
    need_data("videos", CLIP)
    media = tmp_path / "media"
    (media / "sub").mkdir(parents=True)
    shutil.copy(VIDEOS / CLIP, media / "clip.mp4")
    shutil.copy(VIDEOS / CLIP, media / ".hidden.mp4")
    (media / ".private").mkdir()
    shutil.copy(VIDEOS / CLIP, media / ".private" / "clip.mp4")
    async with RunningServer(make_hub(media_dir=media)) as server:
        async with connect(server.url) as ws:
            await ws.recv()
            refused = {}
            for source in (str(media / "clip.mp4"), str(media / "nothing.mp4"), "/no/such/folder/clip.mp4",
                           "sub/../clip.mp4", "./sub/../clip.mp4", ".hidden.mp4", ".private/clip.mp4",
                           "clip\x1b[2J.mp4"):
                refused[source] = await reply(ws, {"type": "start", "source": source})
            listed = await reply(ws, {"type": "list_media"})
    for source, message in refused.items():
        assert message.type == "error" and message.code == "not_allowed", (source, message)
        assert str(media) not in message.message.replace(source, "")
    # an absolute path gets the same answer whether it exists, lies inside the folder or not: no oracle
    answers = {refused[s].message for s in (str(media / "clip.mp4"), str(media / "nothing.mp4"),
                                            "/no/such/folder/clip.mp4")}
    assert len(answers) == 1
    assert "\x1b" not in refused["clip\x1b[2J.mp4"].message  # control characters are never echoed raw
    assert [f["path"] for f in listed.files] == ["clip.mp4"]


# -- the token and who may stop a stream -----------------------------------------------------------------------

def test_an_empty_token_is_refused_not_taken_as_none():
    for token in ("", "  "):
        with pytest.raises(ValueError, match="empty"):
            resolve_token("127.0.0.1", token, False)
    assert resolve_token("127.0.0.1", None, False) == (None, False)


async def test_with_stop_policy_starter_only_the_starter_stops_its_stream_while_connected():
    need_data("videos", CLIP)
    async with RunningServer(make_hub(), Access(stop_policy="starter")) as server:
        async with connect(server.url) as other:
            await other.recv()
            async with connect(server.url) as starter:
                await starter.recv()
                await starter.send(json.dumps({"type": "start", "source": CLIP, "stream": "mine"}))
                refused = await reply(other, {"type": "stop", "stream": "mine"})
                assert refused.type == "error" and refused.code == "not_allowed", refused
                assert (await reply(other, {"type": "list"})).streams[0]["state"] != "ended"
            # the starter has gone: anyone may stop it now (a camera's stream would otherwise run for ever)
            await other.send(json.dumps({"type": "subscribe", "stream": "mine"}))
            await other.send(json.dumps({"type": "stop", "stream": "mine"}))
            async with asyncio.timeout(10):
                while (message := parse_message(await other.recv())).type != "end":
                    assert message.type != "error", message
    assert message.summary["reason"] == "stopped"


# -- the real process and its default log ----------------------------------------------------------------------

@pytest.mark.slow  # a serve subprocess
async def test_a_real_serve_process_under_attack_logs_no_traceback(tmp_path):
    """The probe's inputs against `vidsent serve` as the command line runs it (fake scorers): every answer as
    documented, and its default log (no -v) holds no traceback; then SIGTERM ends it cleanly."""
    need_data("videos", CLIP)
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *FAKE_SERVE, "serve", "--port", str(port), "--media-dir",
        str(VIDEOS), "--history", "off", cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await wait_listening(process, port, timeout=60)
        host = f"127.0.0.1:{port}"
        assert status_of(await raw_http(port, get("/health", f"attacker.example:{port}"))) == 421
        for path in ("/dashboard/%00", "/dashboard/index.html%00.js", "/dashboard/" + "b" * 300):
            assert status_of(await raw_http(port, get(path, host))) == 404
        await raw_http(port, get("/health", host).replace(b"Connection: close\r\n", b"") * 3)
        async with connect(f"ws://{host}", max_size=None) as ws:
            await ws.recv()
            for raw in ('{"type":["start"]}', '{"type":{}}', "[" * 20_000,
                        json.dumps({"type": "list", "p": "x" * 70_000}),
                        json.dumps({"type": "start", "source": "/etc/passwd"}), json.dumps({"type": "stop"})):
                assert (await reply(ws, raw)).type == "error"
            await ws.send(json.dumps({"type": "start", "source": CLIP, "stream": "cam"}))
            await asyncio.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    log = (await process.stderr.read()).decode()
    assert code == 0 and "Traceback" not in log, log[-3000:]
    assert "attacker.example" not in log or "Traceback" not in log


def test_serve_refuses_an_empty_token():
    import subprocess

    done = subprocess.run([*FAKE_SERVE, "serve", "--port", "0",
                           "--token", "", "--history", "off"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "VIDSENT_TOKEN": ""})
    assert done.returncode == 2 and "empty" in done.stderr and "Traceback" not in done.stderr, done.stderr
