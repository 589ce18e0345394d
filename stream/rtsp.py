"""A live RTSP camera as a media source: every open and read under a timeout, reconnects with backoff until it gives
up, media time continued across reconnects, and FFmpeg reaching the camera only through the loopback relay that
refuses redirects (stream/rtsp_relay.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlsplit

import av

from stream.base import MediaSource, SourceError, SourceEvent, SourceInfo, redact_url
from stream.decoding import Decoder, close_decoder, describe_source, open_container
from stream.rtsp_relay import RefusedRedirect, RtspRelay, camera_address, relayed_url

log = logging.getLogger(__name__)


def _close_when_opened(opening: asyncio.Future) -> None:
    """Closes the decoder an abandoned open returned (off the loop: closing waits for FFmpeg)."""
    if not opening.cancelled() and opening.exception() is None:
        asyncio.get_running_loop().run_in_executor(None, opening.result().close)


class RtspSource(MediaSource):
    """A live RTSP stream read over TCP with PyAV. Every open and read has a timeout; a dropped connection is retried
    with exponential backoff until `give_up_s` passes without media, then the source ends with
    SourceError('source_lost').

    Media time continues across reconnects from where the last connection stopped, so windows stay contiguous.

    FFmpeg reaches the camera only through an RtspRelay on loopback (one per source, kept across reconnects), which
    connects to the URL's own host and port and refuses RTSP redirects: a camera that redirects ends the source with
    SourceError('not_allowed').
    """

    kind = "rtsp"
    realtime = True

    def __init__(self, url: str, *, sample_fps: float = 2.0, open_timeout_s: float = 5.0, read_timeout_s: float = 5.0,
                 give_up_s: float = 30.0, backoff_s: tuple[float, float] = (0.5, 8.0)):
        if urlsplit(url).scheme not in ("rtsp", "rtsps"):
            raise SourceError("bad_url", f"not an RTSP URL: {redact_url(url)}")
        try:
            self._camera = camera_address(url)
        except ValueError:
            raise SourceError("bad_url", f"no usable host and port in {redact_url(url)}") from None
        self.url = url
        self.sample_fps = sample_fps
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.give_up_s = give_up_s
        self.backoff_s = backoff_s
        self._decoder: Decoder | None = None
        self._relay: RtspRelay | None = None
        self.info: SourceInfo | None = None

    def _redirect_error(self, refused: RefusedRedirect) -> SourceError:
        target = ""
        if refused.location:
            try:
                shown = redact_url(refused.location)
            except ValueError:
                shown = "not a URL"
            # printable ASCII only, cut after redaction (a cut could hide credentials from it)
            target = " (" + "".join(c for c in shown if " " <= c <= "~")[:200] + ")"
        return SourceError("not_allowed", f"{redact_url(self.url)} redirected to another address{target}; vidsent does "
                                          "not follow RTSP redirects: give the final URL")

    def _connect_blocking(self, relay: RtspRelay, time_offset: float) -> Decoder:
        assert relay.port is not None  # _connect started the relay
        try:
            container = open_container(relayed_url(self.url, relay.port), options={"rtsp_transport": "tcp"},
                                        timeout=(self.open_timeout_s, self.read_timeout_s))
        except (av.error.FFmpegError, OSError) as exc:
            if relay.refused is not None:
                raise self._redirect_error(relay.refused) from exc
            # the exception's text repeats the URL, credentials included: keep only its reason. FFmpeg only saw the
            # relay close; the relay knows why the camera could not be reached.
            reason = relay.upstream_failure() or getattr(exc, "strerror", None) or type(exc).__name__
            raise SourceError("unreachable", f"cannot open {redact_url(self.url)}: {reason}") from exc
        try:
            return Decoder(container, self.frame_rate, time_offset=time_offset)
        except SourceError:
            container.close()
            raise

    async def _connect(self, time_offset: float) -> Decoder:
        if self._relay is None:
            host, port, tls = self._camera
            relay = RtspRelay(host, port, tls=tls, connect_timeout_s=self.open_timeout_s)
            await relay.start()
            self._relay = relay
        relay = self._relay
        try:
            await asyncio.wait_for(relay.resolve(), self.open_timeout_s)
        except (TimeoutError, OSError) as exc:
            reason = "its host name did not resolve in time" if isinstance(exc, asyncio.TimeoutError) else \
                f"its host name did not resolve ({getattr(exc, 'strerror', None) or type(exc).__name__})"
            raise SourceError("unreachable", f"cannot open {redact_url(self.url)}: {reason}") from exc
        # PyAV's own timeout interrupts a stuck open; the outer wait is a second guard in case it does not.
        loop = asyncio.get_running_loop()
        opening = loop.run_in_executor(None, self._connect_blocking, relay, time_offset)
        try:
            return await asyncio.wait_for(asyncio.shield(opening), timeout=self.open_timeout_s * 2 + 5)
        except (TimeoutError, asyncio.CancelledError):
            # a stop (or the guard) came first: the open goes on in its thread, and what it opens is closed after it
            opening.add_done_callback(_close_when_opened)
            raise

    async def _close_relay(self) -> None:
        relay, self._relay = self._relay, None
        if relay is not None:
            await relay.close()

    async def open(self) -> SourceInfo:
        try:
            self._decoder = await self._connect(0.0)
        except BaseException:
            await self._close_relay()
            raise
        self.info = describe_source(self._decoder, "rtsp", redact_url(self.url), live=True)
        return self.info

    async def __aiter__(self):
        if self._decoder is None:
            await self.open()
        decoder = self._decoder
        last_media = time.monotonic()
        attempt = 0
        try:
            while True:
                if decoder is None:
                    if time.monotonic() - last_media > self.give_up_s:
                        raise SourceError("source_lost",
                                          f"{redact_url(self.url)} gave no media for {self.give_up_s:.0f} s")
                    attempt += 1
                    delay = min(self.backoff_s[1], self.backoff_s[0] * 2 ** (attempt - 1))
                    yield SourceEvent("reconnecting", f"reconnecting in {delay:.1f} s")
                    await asyncio.sleep(delay)
                    try:
                        decoder = await self._connect(self._last_t)
                        self._decoder = decoder
                        yield SourceEvent("reconnected", f"reconnected after {attempt} attempt(s)")
                        attempt = 0
                    except (TimeoutError, SourceError) as exc:
                        if isinstance(exc, SourceError) and exc.code == "not_allowed":
                            raise  # the camera now redirects: trying again would not change that
                        log.info("RTSP reconnect %d failed: %s", attempt, exc)
                    continue
                try:
                    batch = await asyncio.wait_for(asyncio.to_thread(decoder.read_batch),
                                                   timeout=self.read_timeout_s * 2 + 5)
                except (TimeoutError, av.error.FFmpegError, OSError, SourceError) as exc:
                    log.info("RTSP read failed: %s", exc)
                    batch = None
                if batch is None:  # the server hung up or stopped sending
                    if self._relay is not None and self._relay.refused is not None:
                        raise self._redirect_error(self._relay.refused)
                    self._last_t = decoder.last_t
                    # a read may still hang in its worker thread until FFmpeg's own timeout: close after it, and
                    # do not wait for that to reconnect
                    asyncio.get_running_loop().run_in_executor(None, decoder.close)
                    decoder = self._decoder = None
                    continue
                last_media = time.monotonic()
                self._last_t = decoder.last_t
                for item in batch:
                    yield item
        finally:
            if decoder is not None:
                await close_decoder(decoder)
            await self._close_relay()

    _last_t = 0.0

    async def close(self) -> None:
        if self._decoder is not None:
            await close_decoder(self._decoder)
        await self._close_relay()
