"""An allow-listed camera that answers with an RTSP redirect cannot send the server anywhere else: FFmpeg reaches the
camera only through vidsent's loopback relay, which refuses any 3xx reply. The redirect's target is never
contacted, and the error is the same whether or not anything listens there (no port scanning through a camera).
Also the relay's reading of the camera's bytes, which must match FFmpeg's own."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from websockets.asyncio.client import connect

from protocol import parse_message
from stream.rtsp_relay import RtspReplyScanner, ffmpeg_status_codes, relayed_url
from stream.sources import RtspSource, SourceError, SourceEvent, open_source
from testkit.data import need_data
from testkit.rtsp import require_rtsp_server
from testkit.rtsp_server import start_rtsp_server, stop
from testkit.servers import RunningServer, free_port, make_hub

OPTIONS = {"open_timeout_s": 2.0, "read_timeout_s": 2.0}


class Listener:
    """A plain TCP listener on loopback that counts the connections it gets (and says nothing)."""

    def __init__(self, port: int = 0):
        self.port = port
        self.connections = 0

    async def __aenter__(self) -> Listener:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()


class RedirectingCamera:
    """A fake RTSP camera that answers every request with `302 Moved` to `location`, echoing its CSeq; `chunk`:
    send the reply this many bytes at a time; `tls`: speak rtsps. With `first_to_port`, its first connection is
    passed through to a real RTSP server on that port instead, until `cut()`: a camera that redirects only once the
    stream reconnects."""

    def __init__(self, location: str, chunk: int | None = None, tls: ssl.SSLContext | None = None,
                 first_to_port: int | None = None):
        self.location = location
        self.chunk = chunk
        self.tls = tls
        self.first_to_port = first_to_port
        self.requests: list[bytes] = []
        self._passed: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> RedirectingCamera:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.cut()
        self._server.close()
        await self._server.wait_closed()

    def cut(self) -> None:
        for writer in self._passed:
            writer.close()

    async def _pass_through(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.first_to_port)
        self._passed += [writer, server_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()

        pipes = [asyncio.create_task(pipe(reader, server_writer)), asyncio.create_task(pipe(server_reader, writer))]
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for task in pipes:
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        self.cut()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.first_to_port is not None and not self._passed:
            return await self._pass_through(reader, writer)
        try:
            while request := await reader.readuntil(b"\r\n\r\n"):
                self.requests.append(request)
                cseq = next((line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                             if line.lower().startswith(b"cseq:")), b"0")
                reply = (b"RTSP/1.0 302 Moved\r\nCSeq: " + cseq + b"\r\nLocation: " + self.location.encode()
                         + b"\r\n\r\n")
                for start in range(0, len(reply), self.chunk or len(reply)):
                    writer.write(reply[start:start + (self.chunk or len(reply))])
                    await writer.drain()
                    if self.chunk:
                        await asyncio.sleep(0.001)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def open_error(url: str) -> SourceError:
    source = RtspSource(url, **OPTIONS)
    with pytest.raises(SourceError) as info:
        await source.open()
    await source.close()
    return info.value


async def redirected_open(target_port: int, chunk: int | None) -> str:
    """Open a camera that redirects to the target port: the error's text, with the camera's own port masked."""
    async with RedirectingCamera(f"rtsp://admin:hunter2@127.0.0.1:{target_port}/x", chunk) as camera:
        error = await open_error(f"rtsp://user:secret@127.0.0.1:{camera.port}/cam")
    assert camera.requests and camera.requests[0].startswith(b"OPTIONS ")
    assert error.code == "not_allowed", error
    assert "redirect" in error.message and "give the final URL" in error.message
    assert f"127.0.0.1:{target_port}/x" in error.message
    assert "secret" not in error.message and "hunter2" not in error.message
    return error.message.replace(f":{camera.port}/", ":CAMERA/")


@pytest.mark.parametrize("chunk", [None, 1])
async def test_a_redirecting_camera_is_refused_and_its_target_never_contacted(chunk):
    target_port = free_port()
    async with Listener(target_port) as target:  # something listens where the camera redirects
        text_when_open = await redirected_open(target_port, chunk)
    assert target.connections == 0, "FFmpeg followed the redirect"
    text_when_closed = await redirected_open(target_port, chunk)  # and now nothing does
    # whether the target's port is open or closed, the client learns nothing from the error
    assert text_when_open == text_when_closed


async def server_error(camera_port: int) -> tuple[str, str]:
    """Start the camera's URL as a stream of a real server that allow-lists exactly the camera: the error's code and
    message."""
    hub = make_hub(media_dir=None, rtsp_hosts=[f"127.0.0.1:{camera_port}"], rtsp_options=OPTIONS)
    async with RunningServer(hub) as server, connect(server.url) as ws:
        assert parse_message(await ws.recv()).type == "hello"
        await ws.send(json.dumps({"type": "start", "source": f"rtsp://127.0.0.1:{camera_port}/cam", "stream": "cam"}))
        errors = []
        async with asyncio.timeout(30):
            while (message := parse_message(await ws.recv())).type != "end":
                if message.type == "error":
                    errors.append(message)
    assert len(errors) == 1, errors
    return errors[0].code, errors[0].message


async def test_the_server_refuses_an_allow_listed_camera_that_redirects_off_the_list():
    target_port = free_port()
    async with Listener(target_port) as target, RedirectingCamera(f"rtsp://127.0.0.1:{target_port}/x") as camera:
        code, open_text = await server_error(camera.port)
        camera_port = camera.port
    assert code == "not_allowed" and "does not follow RTSP redirects" in open_text
    assert target.connections == 0
    async with RedirectingCamera(f"rtsp://127.0.0.1:{target_port}/x") as camera:
        code, closed_text = await server_error(camera.port)
    assert code == "not_allowed"
    assert open_text.replace(f":{camera_port}/", ":CAMERA/") == closed_text.replace(f":{camera.port}/", ":CAMERA/")


async def test_a_camera_that_is_not_there_is_still_clearly_unreachable():
    error = await open_error(f"rtsp://user:secret@127.0.0.1:{free_port()}/cam")
    assert error.code == "unreachable" and "Connection refused" in error.message and "secret" not in error.message
    error = await open_error("rtsp://no-such-camera.invalid/cam")
    assert error.code == "unreachable" and "did not resolve" in error.message


def test_bad_rtsp_urls_are_refused_before_anything_opens():
    for url in ("rtsp://127.0.0.1:notaport/cam", "rtsp:///cam"):
        with pytest.raises(SourceError) as info:
            open_source(url)
        assert info.value.code == "bad_url"


def test_ffmpeg_is_given_the_relay_with_the_same_credentials_path_and_query():
    assert relayed_url("rtsps://u:p%40ss@cam.example:7000/live/ch1?subtype=0&x=1", 4321) \
        == "rtsp://u:p%40ss@127.0.0.1:4321/live/ch1?subtype=0&x=1"
    assert relayed_url("rtsp://[::1]/a", 9) == "rtsp://127.0.0.1:9/a"


# ------------------------------------------------------------------ the relay's reading of the camera's bytes

REDIRECT = b"RTSP/1.0 302 Moved\r\nCSeq: 2\r\nLocation: rtsp://10.0.0.9:22/x\r\n\r\n"
OK = b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nPublic: OPTIONS, DESCRIBE\r\n\r\n"


def frame(payload: bytes, channel: int = 0) -> bytes:
    return b"$" + bytes([channel]) + len(payload).to_bytes(2, "big") + payload


def feed_in_pieces(data: bytes, size: int) -> tuple[RtspReplyScanner, bytes]:
    scanner = RtspReplyScanner()
    passed = b"".join(scanner.feed(data[i:i + size]) for i in range(0, len(data), size))
    return scanner, passed


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
def test_interleaved_frames_that_look_like_a_redirect_pass_untouched(size):
    stream = OK + frame(REDIRECT) + frame(b"\x80\x60" + REDIRECT * 3, channel=1) + OK + frame(b"")
    scanner, passed = feed_in_pieces(stream, size)
    assert passed == stream and scanner.redirect_status is None


@pytest.mark.parametrize("size", [1, 2, 5, 1000])
def test_a_redirect_split_over_many_reads_is_recognised_and_none_of_it_passes(size):
    stream = OK + frame(b"media") + REDIRECT + OK
    scanner, passed = feed_in_pieces(stream, size)
    assert scanner.redirect_status == 302 and scanner.redirect_complete
    assert scanner.location == b"rtsp://10.0.0.9:22/x"
    assert passed == OK + frame(b"media")


def test_a_status_line_is_held_until_its_code_is_known():
    scanner = RtspReplyScanner()
    assert scanner.feed(b"RTSP/1.0 20") == b""
    assert scanner.feed(b"0 OK\r\nCSeq: 1") == b"RTSP/1.0 200 OK\r\nCSeq: 1"
    scanner = RtspReplyScanner()
    assert scanner.feed(b"RTSP/1.0 30") == b""
    assert scanner.feed(b"0 Multiple Choices\r\n") == b"" and scanner.redirect_status == 300


@pytest.mark.parametrize("stream,redirect", [
    (b"RTSP/1.0 302 Moved\nLocation: x\n\n", 302),  # bare newlines end lines for FFmpeg too
    (b"  RTSP/1.0 \t +0302 Moved\r\n\r\n", 302),  # atoi's reading of the code
    (b"RTSP/1.0 4294967598 Moved\r\n\r\n", 302),  # ... and its overflow into an int
    (b"RTS\rP/1.0 3\r02 Moved\r\n\r\n", 302),  # FFmpeg drops \r anywhere in a line
    (b"RTSP/1.0 200 OK\r\nContent-Length: 100\r\ncontent-length: 0\r\n\r\n" + REDIRECT, 302),  # the last one
    (b"RTSP/1.0 200 OK\r\nContent-Length: 64\r\n\r\n" + REDIRECT, None),  # a body is not a message
    (b"\r\r" + frame(REDIRECT), None),  # a `$` after only \r starts a frame
    (b"RTSP/1.0 200 OK\r\n" + frame(b"x\n\nRTSP/1.0 302 Moved\n\n") + b"CSeq: 1\r\n\r\n", None),  # mid-header
    (b"REDIRECT 302 RTSP/1.0\r\nCSeq: 5\r\n\r\n", None),  # a request from the server, not a reply
    (b"\0RTSP/1.0 302 Moved\r\n", None),  # a C string: an empty line, the end of an empty message
    (b"RTSP/1.0 200\0 302\r\n\r\n", None),
    (b"RTSP/1.0" + b" " * 5000 + b"302 Moved\r\n\r\n", None),  # past the 4095 bytes FFmpeg keeps of a line
])
def test_the_relay_reads_replies_as_ffmpeg_does(stream, redirect):
    scanner, passed = feed_in_pieces(stream, 1)
    assert scanner.redirect_status == redirect
    if redirect is None:
        assert passed == stream


def test_status_codes_as_ffmpeg_reads_them():
    assert ffmpeg_status_codes(b"RTSP/1.0 200 OK") == {200}
    assert ffmpeg_status_codes(b"RTSP/2.0 301") == {301}
    assert ffmpeg_status_codes(b"HTTP/1.0 302 Found") == set()
    assert ffmpeg_status_codes(b"RTSP/1.0 -4294966994") == {302}
    assert ffmpeg_status_codes(b"RTSP/1.0 99999999999999999999999") == {-1}  # strtol saturates, then the int wraps


def self_signed_context() -> ssl.SSLContext:
    """A TLS server context with a throwaway self-signed certificate for 127.0.0.1."""
    import datetime
    import ipaddress
    import tempfile

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "camera")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as folder:
        cert_file, key_file = Path(folder, "cert.pem"), Path(folder, "key.pem")
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        context.load_cert_chain(cert_file, key_file)
    return context


async def test_an_rtsps_camera_is_reached_over_tls_and_its_redirect_refused():
    pytest.importorskip("cryptography")
    async with Listener() as target, \
            RedirectingCamera(f"rtsps://127.0.0.1:{target.port}/x", tls=self_signed_context()) as camera:
        error = await open_error(f"rtsps://127.0.0.1:{camera.port}/cam")
    assert camera.requests and camera.requests[0].startswith(b"OPTIONS ")  # the relay spoke TLS to it
    assert error.code == "not_allowed" and target.connections == 0


@pytest.mark.slow  # the real RTSP server, at real-time pace
async def test_a_camera_that_redirects_when_the_stream_reconnects_ends_the_stream():
    clip = need_data("videos", "vna_0008.mp4")
    require_rtsp_server()
    proc, url = start_rtsp_server(clip, loop=True)
    server_port = urlsplit(url).port
    events: list[str] = []
    items = 0
    try:
        async with Listener() as target, \
                RedirectingCamera(f"rtsp://127.0.0.1:{target.port}/x", first_to_port=server_port) as camera:
            source = RtspSource(f"rtsp://127.0.0.1:{camera.port}/clip", give_up_s=30.0, backoff_s=(0.1, 0.5),
                                **OPTIONS)
            with pytest.raises(SourceError) as info:
                async with asyncio.timeout(60):
                    async for item in source:
                        if isinstance(item, SourceEvent):
                            events.append(item.state)
                        else:
                            items += 1
                            if items == 20:
                                camera.cut()  # the camera drops the stream, and redirects when it is asked again
            await source.close()
    finally:
        stop(proc)
    assert items >= 20 and "reconnecting" in events
    assert info.value.code == "not_allowed" and "redirect" in info.value.message
    assert target.connections == 0
