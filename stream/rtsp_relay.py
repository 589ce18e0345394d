"""A loopback relay between FFmpeg's RTSP client and one allow-listed camera, that refuses RTSP redirects.

FFmpeg follows a `3xx` reply to OPTIONS or DESCRIBE to whatever `Location:` names, and has no option to stop it: an
allow-listed camera could send the server to any host and port, and the error (refused, timed out, not RTSP) would
tell the client whether that port is open. Checking the camera ourselves before FFmpeg connects would not help (it
can answer our probe with 200 and FFmpeg with 302). So FFmpeg talks to the camera only through this relay: it
connects to 127.0.0.1:<relay port> (same path, query and credentials, so digest and basic auth still work), the relay
opens its own TCP (or TLS, for rtsps) connection to the camera's host and port — the address the allow-list was
checked on, never another — and forwards bytes both ways. On the way back it reads the camera's bytes as FFmpeg
does (`RtspReplyScanner`): a reply with a 3xx status is never passed on; the relay notes it (`RtspRelay.refused`)
and closes both sides, so FFmpeg fails without having seen it.

Request URIs are not rewritten: FFmpeg names the relay's address in them, which RTSP servers route by path alone
(rewriting them would break digest auth, whose hash covers the URI FFmpeg sent).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

RTSP_DEFAULT_PORT = 554
RTSPS_DEFAULT_PORT = 322  # FFmpeg's default for rtsps:
RELAY_HOST = "127.0.0.1"
READ_SIZE = 65536
# FFmpeg keeps this many bytes of a line (MAX_URL_SIZE - 1), reading and dropping the rest up to the newline
LINE_KEPT = 4095
# ... and of the status code's word: 1024-byte buffer in older releases, MAX_URL_SIZE in newer ones; both are checked
STATUS_WORD_KEPT = (1023, 4095)
# a status line is held back until its code is known: at most this much of it (carriage returns, which FFmpeg skips,
# are the only way to make it longer than LINE_KEPT)
MAX_HELD = 64 * 1024
REDIRECT_HEADER_WAIT_S = 1.0  # how long to wait for the rest of a refused reply's header, for its Location
MAX_REDIRECT_HEADER = 16 * 1024
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1  # strtol's range (a 64-bit long)


class RtspFramingError(Exception):
    """The camera sent something the relay cannot judge safely (a status line padded past MAX_HELD)."""


def _c_strtol(text: bytes) -> int:
    """C's strtol(text, NULL, 10): leading white space, a sign, digits; saturates at the range of a long."""
    match = re.match(rb"[ \t\n\v\f\r]*([+-]?)0*([0-9]*)", text)
    assert match is not None  # every part of the pattern may be empty: it matches any text
    sign, digits = match.group(1), match.group(2)
    if not digits:
        return 0
    value = int(digits) if len(digits) <= 20 else LONG_MAX + 1  # more digits than a long holds: saturate
    value = -value if sign == b"-" else value
    return max(LONG_MIN, min(LONG_MAX, value))


def _c_int(value: int) -> int:
    """A long stored into a C int (wraps modulo 2**32, as gcc and clang do)."""
    return (value + 2**31) % 2**32 - 2**31


def _get_word(text: bytes, pos: int = 0) -> tuple[bytes, int]:
    """FFmpeg's get_word: skip spaces and tabs, then the bytes up to the next space or tab."""
    while pos < len(text) and text[pos] in b" \t":
        pos += 1
    start = pos
    while pos < len(text) and text[pos] not in b" \t":
        pos += 1
    return text[start:pos], pos


def ffmpeg_status_codes(status_line: bytes) -> set[int]:
    """The status code FFmpeg reads from a message's first line (its `\\r` bytes dropped, cut at a NUL): none for a
    request from the server. One code per buffer size FFmpeg has used for the word."""
    first, pos = _get_word(status_line)
    if not first.startswith(b"RTSP/"):
        return set()
    word, _ = _get_word(status_line, pos)
    return {_c_int(_c_strtol(word[:kept])) for kept in STATUS_WORD_KEPT}  # atoi: (int) strtol


class RtspReplyScanner:
    """Reads what an RTSP server sends the way FFmpeg's client does (libavformat/rtsp.c, ff_rtsp_read_reply while it
    connects) and passes on everything but a reply with a 3xx status.

    The stream is a sequence of interleaved frames (`$`, channel, 16-bit length, payload) and messages (lines ending
    in `\\n`, then a body of Content-Length bytes). Like FFmpeg: `\\r` anywhere in a line is ignored, so `$` after
    only `\\r` still starts a frame; a frame may come at the start of any header line; a line keeps LINE_KEPT bytes
    and ends at a NUL as a C string does, and one that is empty that way ends the header; the status code is the
    second word of the first line when the first word starts with "RTSP/" (atoi, with its overflow); the last
    Content-Length line counts (strtol, stored in an int). Messages from the camera are requests when their first
    word does not start with "RTSP/": they are passed on.

    `feed(data)` returns the bytes that may go on to FFmpeg now. A message's first line is held back until its status
    is known; once a 3xx status is seen nothing more is passed on, `redirect_status` is set, and the rest of that
    header is read for its `location`; `redirect_complete` once the header has ended.
    """

    def __init__(self) -> None:
        self._state = "line"  # "line", "frame_header", "frame" (payload left to pass) or "body"
        self._remaining = 0  # bytes left of the frame's payload or the message's body
        self._frame_header = bytearray()
        self._line = bytearray()  # the current line's bytes other than \r (LINE_KEPT + 1 at most)
        self._line_started = False  # a byte other than \r has been read on this line: a `$` is then plain text
        self._line_count = 0  # lines of the current message read so far
        self._content_length = 0
        self._status_known = False  # the current message's status is known (its first line was judged)
        self._held = bytearray()  # the first line, not passed on until its status is known
        self._out: list[bytes] = []
        self.redirect_status: int | None = None
        self.location: bytes | None = None  # the refused reply's Location value, as FFmpeg would have used it
        self.redirect_complete = False

    def feed(self, data: bytes) -> bytes:
        pos, end = 0, len(data)
        while pos < end:
            if self._state in ("frame", "body"):
                take = min(self._remaining, end - pos)
                self._emit(data[pos:pos + take])
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = "line"  # after a frame, the same line goes on; after a body, a new message
            elif self._state == "frame_header":
                part = data[pos:pos + 3 - len(self._frame_header)]
                self._frame_header += part
                self._emit(part)
                pos += len(part)
                if len(self._frame_header) == 3:
                    self._remaining = int.from_bytes(self._frame_header[1:], "big")
                    self._frame_header.clear()
                    self._state = "frame" if self._remaining else "line"
            else:
                pos = self._read_line(data, pos)
        out, self._out = b"".join(self._out), []
        return out

    def _read_line(self, data: bytes, pos: int) -> int:
        """Reads from data[pos:] within the current line; returns where it stopped."""
        if not self._line_started:
            start = pos
            while pos < len(data) and data[pos] == 0x0D:  # \r
                pos += 1
            self._emit(data[start:pos])
            if pos == len(data):
                return pos
            if data[pos] == 0x24:  # $
                self._emit(data[pos:pos + 1])
                self._state = "frame_header"
                return pos + 1
            self._line_started = True
        newline = data.find(b"\n", pos)
        stop = len(data) if newline < 0 else newline
        if len(self._line) <= LINE_KEPT:
            self._line += data[pos:stop].replace(b"\r", b"")[:LINE_KEPT + 1 - len(self._line)]
        self._emit(data[pos:stop])
        if self._line_count == 0 and not self._status_known and len(self._line) > LINE_KEPT:
            self._judge_status(self._text())  # FFmpeg reads and drops the rest of the line: the code is known now
        if newline < 0:
            return stop
        self._emit(b"\n")
        self._end_line()
        return newline + 1

    def _text(self) -> bytes:
        return bytes(self._line[:LINE_KEPT]).split(b"\0", 1)[0]

    def _judge_status(self, status_line: bytes) -> None:
        self._status_known = True
        codes = [code for code in ffmpeg_status_codes(status_line) if 300 <= code < 400]
        if codes:
            self.redirect_status = codes[0]
            self._held.clear()
        else:
            self._out.append(bytes(self._held))
            self._held.clear()

    def _end_line(self) -> None:
        text = self._text()
        self._line.clear()
        self._line_started = False
        if self._line_count == 0 and not self._status_known:
            self._judge_status(text)
        if not text:  # the empty line that ends the header
            if self.redirect_status is not None:
                self.redirect_complete = True
            self._remaining, self._content_length = self._content_length, 0
            self._state = "body" if self._remaining > 0 else "line"
            self._line_count = 0
            self._status_known = False
            return
        if self._line_count > 0:
            lowered = text.lower()
            if lowered.startswith(b"content-length:"):
                self._content_length = _c_int(_c_strtol(text[len(b"content-length:"):]))
            elif lowered.startswith(b"location:") and self.redirect_status is not None:
                self.location = text[len(b"location:"):].lstrip(b" \t")
        self._line_count += 1

    def _emit(self, data: bytes) -> None:
        if not data or self.redirect_status is not None:
            return
        if self._line_count == 0 and self._line_started and not self._status_known:
            self._held += data
            if len(self._held) > MAX_HELD:
                raise RtspFramingError("a status line longer than the relay holds")
        else:
            self._out.append(data)


@dataclass(frozen=True)
class RefusedRedirect:
    status: int
    location: str | None  # as the camera sent it (credentials too: redact before showing); None if it sent none


def camera_address(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) the relay connects to for an rtsp:// or rtsps:// URL: the host and port the allow-list judges
    (urlsplit's reading of the URL), with FFmpeg's default ports. Raises ValueError for a bad port or no host."""
    parts = urlsplit(url)
    tls = parts.scheme.lower() == "rtsps"
    port = parts.port  # ValueError for a port that is not a number or out of range
    if not parts.hostname:
        raise ValueError("no host")
    return parts.hostname, port or (RTSPS_DEFAULT_PORT if tls else RTSP_DEFAULT_PORT), tls


def relayed_url(url: str, relay_port: int) -> str:
    """The URL FFmpeg opens: plain rtsp to the relay on loopback, with the original credentials, path and query."""
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    return urlunsplit(("rtsp", f"{userinfo}{at}{RELAY_HOST}:{relay_port}", parts.path, parts.query, parts.fragment))


def _connect_failure(exc: BaseException) -> str:
    """Why a connection to the camera failed, in words like FFmpeg's own (no addresses)."""
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "Connection timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or type(exc).__name__})"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return type(exc).__name__


class _Connection:
    """One FFmpeg connection through the relay: whether it reached the camera, and if not why."""

    def __init__(self) -> None:
        self.connected = False
        self.failure: str | None = None


class RtspRelay:
    """A listener on 127.0.0.1:<port> (`start()`, then `port`) that relays each connection to one camera, on the
    running event loop. `close()` ends the listener and every relayed connection."""

    def __init__(self, host: str, port: int, *, tls: bool = False, connect_timeout_s: float = 5.0):
        self.host, self.camera_port, self.tls = host, port, tls
        self.connect_timeout_s = connect_timeout_s
        self.port: int | None = None
        self.refused: RefusedRedirect | None = None  # set (and kept) once the camera answered with a redirect
        self._last: _Connection | None = None
        self._addresses: list[str] = [host]
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, RELAY_HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def resolve(self) -> None:
        """Look the camera's host name up, before FFmpeg's worker thread waits on the relay: a look-up inside the
        relay would queue for the default executor behind threads that wait for the relay. Raises OSError."""
        try:
            ipaddress.ip_address(self.host)
            return
        except ValueError:
            pass
        infos = await asyncio.get_running_loop().getaddrinfo(self.host, self.camera_port, type=socket.SOCK_STREAM)
        # an AF_INET/AF_INET6 address's host is a str; typeshed's sockaddr union also has an int-first form
        self._addresses = list(dict.fromkeys(
            info[4][0] for info in infos)) or [self.host]  # type: ignore[misc]  # typeshed: host may be an int

    def upstream_failure(self) -> str | None:
        """Why the latest relayed connection did not reach the camera (None if it did, or none was made)."""
        last = self._last
        if last is None or last.connected:
            return None
        return last.failure or "Connection timed out"  # still connecting when FFmpeg gave up

    async def close(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()

    async def _open_camera(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        context = None
        if self.tls:
            context = ssl.create_default_context()
            # FFmpeg's TLS client verifies no certificate unless told to (tls_verify=0), and vidsent never told it:
            # the relay keeps that parity.
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        error: BaseException | None = None
        for address in self._addresses:
            try:
                return await asyncio.open_connection(address, self.camera_port, ssl=context,
                                                     server_hostname=self.host if context else None)
            except OSError as exc:  # ssl.SSLError is one too
                error = exc
        raise error if error is not None else OSError("no address")

    async def _relay(self, ffmpeg_reader: asyncio.StreamReader, ffmpeg_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # a connection handler runs as a task
        self._tasks.add(task)
        connection = self._last = _Connection()
        camera_writer: asyncio.StreamWriter | None = None
        try:
            try:
                camera_reader, camera_writer = await asyncio.wait_for(self._open_camera(), self.connect_timeout_s)
            except (TimeoutError, OSError) as exc:
                connection.failure = _connect_failure(exc)
                return
            connection.connected = True
            assert camera_writer is not None  # opened just above
            pipes = [asyncio.create_task(self._to_camera(ffmpeg_reader, camera_writer)),
                     asyncio.create_task(self._from_camera(camera_reader, ffmpeg_writer))]
            try:
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
        except asyncio.CancelledError:  # the relay closes: the stream callback's task ends quietly
            pass
        finally:
            for writer in (ffmpeg_writer, camera_writer):
                if writer is not None:
                    writer.close()
            self._tasks.discard(task)

    @staticmethod
    async def _to_camera(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(READ_SIZE):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass

    async def _from_camera(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        scanner = RtspReplyScanner()
        try:
            while data := await reader.read(READ_SIZE):
                forward = scanner.feed(data)
                if forward:
                    writer.write(forward)
                    await writer.drain()
                if scanner.redirect_status is not None:
                    self.refused = RefusedRedirect(scanner.redirect_status, None)
                    await self._read_redirect_header(reader, scanner)
                    location = scanner.location.decode("latin-1") if scanner.location is not None else None
                    self.refused = RefusedRedirect(scanner.redirect_status, location)
                    return
        except RtspFramingError:
            log.info("RTSP relay: closing a connection to %s:%d that sent an unreadable reply", self.host,
                     self.camera_port)
        except ConnectionError:
            pass

    @staticmethod
    async def _read_redirect_header(reader: asyncio.StreamReader, scanner: RtspReplyScanner) -> None:
        """The rest of a refused reply's header, for its Location: a short wait and a few KiB at most."""
        read = 0
        try:
            async with asyncio.timeout(REDIRECT_HEADER_WAIT_S):
                while not scanner.redirect_complete and read < MAX_REDIRECT_HEADER:
                    data = await reader.read(4096)
                    if not data:
                        return
                    read += len(data)
                    scanner.feed(data)
        except (TimeoutError, ConnectionError, RtspFramingError):
            pass
