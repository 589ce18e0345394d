"""A browser's camera and microphone over WebRTC (aiortc) as a media source.

The browser sends an SDP offer through the websocket protocol (`webrtc_offer`); `WebRTCSource.from_offer` answers
it and becomes a `MediaSource` like a file or an RTSP camera: 16 kHz mono `AudioChunk`s and `VideoFrame`s sampled
at the pipeline's fps, on media time taken from the tracks' own RTP timestamps.

The receive loop only converts and queues: 48 kHz Opus is decoded by aiortc's receiver thread and resampled here
(a few microseconds per 20 ms frame), video frames are only converted to RGB when the sampler keeps them (2 per
second), so it never waits on inference. The stream ends when the browser hangs up (reason `stopped`), or when no
media has arrived for `give_up_s` or the connection fails (reason `source_lost`); the peer connection is always
closed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aioice.ice
import aioice.mdns
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media import AudioChunk, VideoFrame
from stream.sources import (
    AudioConverter,
    FrameSampler,
    MediaSource,
    SourceError,
    SourceInfo,
)

log = logging.getLogger(__name__)

RTP_WRAP = 1 << 32
AUDIO_RESYNC_S = 0.25  # a jump in the audio's own timestamps larger than this is a gap (lost packets), not jitter
ITEM_QUEUE = 512  # converted items waiting for the pipeline (about 5 s of audio at 10 chunks/s plus frames)


def parse_ice_server(spec: str) -> RTCIceServer:
    """`stun:HOST:PORT`, or `turn:HOST:PORT,USERNAME,CREDENTIAL` (the --ice-server option)."""
    url, *auth = spec.split(",")
    if not url.startswith(("stun:", "turn:", "turns:")) or len(auth) not in (0, 2):
        raise ValueError(f"--ice-server {spec!r}: expected stun:HOST:PORT or turn:HOST:PORT,USERNAME,CREDENTIAL")
    return RTCIceServer(urls=url, username=auth[0] if auth else None, credential=auth[1] if auth else None)


_loopback_only = False  # set by gather_ice_on: remote candidates that are not loopback are then unreachable
_gathers_on_loopback = False  # set by gather_ice_on: loopback targets are then the browser on this machine

# Remote ICE candidates taken from one offer. A browser offers a handful per media section: a host candidate per
# interface and address family (or one mDNS name), one or two server-reflexive ones, one relay per TURN server;
# and a bundled offer (what browsers send) is checked on its first section's candidates only. The server checks
# every candidate it takes from each of its own addresses, with retransmissions, so these bound what one offer can
# make it send.
MAX_CANDIDATES_PER_MEDIA = 8
MAX_CANDIDATES_PER_OFFER = 16
_CANDIDATE_TYPES = ("host", "srflx", "relay")  # what aioice accepts from SDP; it rejects any other
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")


def gather_ice_on(addresses: list[str]) -> None:
    """Gather host ICE candidates on these local addresses only (process-wide).

    aioice has no option for this: it always offers every interface but loopback. A browser on the same machine
    (`--allow-loopback-in-peer-connection`) and the tests need 127.0.0.1, and nothing else should be offered then.
    With loopback addresses only, the browser's other candidates are dropped from its offer too, so no check is
    ever sent anywhere but loopback."""
    global _loopback_only, _gathers_on_loopback
    chosen = list(addresses)
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [
        a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]
    _loopback_only = bool(chosen) and all(ipaddress.ip_address(a).is_loopback for a in chosen)
    _gathers_on_loopback = any(ipaddress.ip_address(a).is_loopback for a in chosen)


def _never_a_target(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Addresses a server must never send a connectivity check to, whoever names them: no address at all
    (0.0.0.0/8, ::), multicast (a whole LAN answers; no option needed to send there), IPv4's reserved 240/4 with the
    broadcast 255.255.255.255 and IPv6 outside its unicast ranges (::ffff:… IPv4-mapped ones included, which would
    sidestep these checks), link-local (169.254.169.254 is the cloud's metadata service; a browser's link-local
    address is no use to a server anyway), and loopback unless the server gathers on loopback itself (a remote
    browser's loopback is the server's own: its local services). A subnet's broadcast address cannot be told from
    a host's without the subnet, but the kernel refuses to send there from a socket without SO_BROADCAST."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return True
    if address.is_loopback:
        return not _gathers_on_loopback
    return (address.is_unspecified or address.is_multicast or address.is_reserved or address.is_link_local
            or address in _THIS_NETWORK)


def _candidate_target(line: str) -> tuple[int, tuple] | None:
    """(priority, what identifies its target) of an `a=candidate:` line the server may check, else None."""
    fields = line[len("a=candidate:"):].split()
    if len(fields) < 8 or fields[2].lower() != "udp" or fields[6] != "typ" or fields[7] not in _CANDIDATE_TYPES:
        return None  # malformed, or TCP (aioice gathers and pairs UDP only)
    try:
        component, priority, port = int(fields[1]), int(fields[3]), int(fields[5])
    except ValueError:
        return None
    if component not in (1, 2) or not 0 < port < 65536:  # the components: RTP, and RTCP without rtcp-mux
        return None
    host = fields[4].lower()
    if aioice.mdns.is_mdns_hostname(host):  # a browser hiding its address: resolved on the server's LAN
        if _loopback_only:
            return None
    else:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:  # another name: aioice cannot use it
            return None
        if _never_a_target(address) or (_loopback_only and not address.is_loopback):
            return None
        host = str(address)
    return priority, (component, host, port)


def _bounded_candidates(sdp: str) -> str:
    """The offer with only the remote candidates the server may check: usable targets (see _never_a_target), each
    target once, and the MAX_CANDIDATES_PER_MEDIA of highest priority in each media section, MAX_CANDIDATES_PER_OFFER
    in all (sections in the offer's order). The other lines are untouched."""
    lines = sdp.splitlines()
    sections: list[list[tuple[int, int]]] = []  # per media section: (priority, line index) of its usable candidates
    seen: set[tuple] = set()
    for index, line in enumerate(lines):
        if line.startswith("m="):
            sections.append([])
            seen = set()
        elif line.startswith("a=candidate:") and sections:  # at session level a candidate means nothing
            usable = _candidate_target(line)
            if usable is not None and usable[1] not in seen:
                seen.add(usable[1])
                sections[-1].append((usable[0], index))
    kept: set[int] = set()
    for candidates in sections:
        room = min(MAX_CANDIDATES_PER_MEDIA, MAX_CANDIDATES_PER_OFFER - len(kept))
        by_priority = sorted(candidates, key=lambda candidate: -candidate[0])  # stable: ties in the offer's order
        kept.update(index for _, index in by_priority[:room])
    offered = sum(line.startswith("a=candidate:") for line in lines)
    if len(kept) < offered:
        log.debug("WebRTC offer: %d of its %d ICE candidates kept", len(kept), offered)
    return "\r\n".join(line for index, line in enumerate(lines)
                        if not line.startswith("a=candidate:") or index in kept) + "\r\n"


class _TrackClock:
    """A track's media time from its own RTP timestamps (unwrapped), anchored where the track's first frame
    arrived relative to the stream's first frame: audio and video keep their own clocks, lined up once.

    A timestamp that jumps back more than MAX_STEP_BACK_S or ahead more than MAX_STEP_AHEAD_S (a sender that
    restarted its clock) re-anchors the clock at the frame's arrival, so media time never runs backwards."""

    MAX_STEP_BACK_S = 1.0
    MAX_STEP_AHEAD_S = 10.0

    def __init__(self, wall_origin: float):
        self.wall_origin = wall_origin
        self._offset_s = 0.0
        self._first: int | None = None
        self._last = 0  # unwrapped timestamp of the latest frame

    def time_of(self, frame, now: float) -> float:
        pts = int(frame.pts or 0) % RTP_WRAP
        if self._first is None:
            self._anchor(pts, now)
        else:
            step = (pts - self._last) % RTP_WRAP
            if step >= RTP_WRAP // 2:
                step -= RTP_WRAP  # a late frame steps back
            step_s = float(step * frame.time_base)
            if -self.MAX_STEP_BACK_S <= step_s <= self.MAX_STEP_AHEAD_S:
                self._last += step
            else:
                self._anchor(pts, now)
        assert self._first is not None  # anchored at the first frame
        return self._offset_s + float((self._last - self._first) * frame.time_base)

    def _anchor(self, pts: int, now: float) -> None:
        self._offset_s = max(0.0, now - self.wall_origin)
        self._first = self._last = pts


_END = object()


class WebRTCSource(MediaSource):
    """The remote audio and video tracks of one RTCPeerConnection."""

    kind = "webrtc"
    realtime = True

    def __init__(self, pc: RTCPeerConnection, *, name: str = "browser", sample_fps: float = 2.0,
                 connect_timeout_s: float = 15.0, give_up_s: float = 5.0, first_frame_timeout_s: float = 5.0):
        self.pc = pc
        self.name = name
        self.sample_fps = sample_fps
        self.connect_timeout_s = connect_timeout_s
        self.give_up_s = give_up_s
        self.first_frame_timeout_s = first_frame_timeout_s
        self.tracks: dict[str, MediaStreamTrack] = {}
        self.info: SourceInfo | None = None
        self._items: asyncio.Queue = asyncio.Queue(ITEM_QUEUE)
        self._readers: list[asyncio.Task] = []
        self._settled = asyncio.Event()  # the connection is up, failed or closed
        self._first_frame = asyncio.Event()
        self._frame_size: tuple[int, int] | None = None
        self._lost: str | None = None
        self._wall_origin: float | None = None
        self._closed = False
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_connection_state)

    # -- signalling --------------------------------------------------------------------------------------------
    @classmethod
    async def from_offer(cls, sdp: str, *, ice_servers: list[RTCIceServer] | None = None,
                         **options) -> tuple[WebRTCSource, str]:
        """Answer a browser's SDP offer: (the source, the SDP answer with its ICE candidates).

        Raises SourceError('bad_offer') for an offer that cannot be read or sends neither audio nor video; the peer
        connection is closed then."""
        # An explicit (possibly empty) list: aiortc would otherwise reach out to a public STUN server.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=list(ice_servers or [])))
        source = cls(pc, **options)
        try:
            sdp = _bounded_candidates(sdp)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            if not source.tracks:
                raise SourceError("bad_offer",
                                  "the offer sends neither audio nor video: share a camera or a microphone")
            await pc.setLocalDescription(await pc.createAnswer())
        except SourceError:
            await pc.close()
            raise
        except Exception as exc:  # noqa: BLE001 - aiortc raises many kinds for a malformed SDP; all mean a bad offer
            await pc.close()
            reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            raise SourceError("bad_offer", f"the SDP offer cannot be used: {reason}") from None
        return source, pc.localDescription.sdp

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind in ("audio", "video") and track.kind not in self.tracks:
            self.tracks[track.kind] = track

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        log.info("%s: WebRTC connection %s", self.name, state)
        if state in ("connected", "failed", "closed"):
            self._settled.set()
        if state == "failed":
            self._lose("the browser's WebRTC connection failed")
        elif state == "closed" and not self._closed:
            self._finish()

    def _lose(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
            self._put_now(_END)

    def _finish(self) -> None:
        self._put_now(_END)

    def _put_now(self, item) -> bool:
        try:
            self._items.put_nowait(item)
            return True
        except asyncio.QueueFull:
            if item is _END:  # the end must get through: make room by dropping the oldest waiting item
                self._items.get_nowait()
                self._items.put_nowait(item)
                return True
            return False

    # -- media -------------------------------------------------------------------------------------------------
    async def open(self) -> SourceInfo:
        for track in self.tracks.values():
            self._readers.append(asyncio.create_task(self._read(track), name=f"{self.name}-{track.kind}-rx"))
        try:
            await asyncio.wait_for(self._settled.wait(), self.connect_timeout_s)
        except TimeoutError:
            pass
        if self.pc.connectionState != "connected":
            raise SourceError("unreachable", f"the browser's WebRTC connection did not come up within "
                                             f"{self.connect_timeout_s:.0f} s (ICE or DTLS failed)")
        if "video" in self.tracks:  # the first frame tells the camera's size; a camera that sends none stays None
            try:
                await asyncio.wait_for(self._first_frame.wait(), self.first_frame_timeout_s)
            except TimeoutError:
                pass
        width, height = self._frame_size or (None, None)
        self.info = SourceInfo(kind=self.kind, name=self.name, has_audio="audio" in self.tracks,
                               has_video="video" in self.tracks, duration=None, width=width, height=height)
        return self.info

    def _clock(self, now: float) -> _TrackClock:
        if self._wall_origin is None:
            self._wall_origin = now
        return _TrackClock(self._wall_origin)

    async def _read(self, track: MediaStreamTrack) -> None:
        clock: _TrackClock | None = None
        audio = AudioConverter(resync_s=AUDIO_RESYNC_S) if track.kind == "audio" else None
        frames = FrameSampler(self.frame_rate) if track.kind == "video" else None
        try:
            while True:
                # an audio track's av.AudioFrame or a video track's av.VideoFrame: aiortc types recv() for any track
                frame: Any = await track.recv()
                now = time.monotonic()
                clock = clock or self._clock(now)
                t = clock.time_of(frame, now)
                if audio is not None:
                    for chunk in audio.push(frame, t):
                        await self._items.put(chunk)  # audio is never dropped: wait for room
                else:
                    if not self._first_frame.is_set():
                        self._frame_size = (frame.width, frame.height)
                        self._first_frame.set()
                    assert frames is not None  # a track is audio or video
                    sampled = frames.sample(frame, t)
                    if sampled is not None and not self._put_now(sampled):
                        self.dropped_frames += 1
        except MediaStreamError:  # the track ended: the browser hung up or the connection closed
            pass
        finally:
            if audio is not None:
                for chunk in audio.flush():
                    self._put_now(chunk)
            if all(reader.done() or reader is asyncio.current_task() for reader in self._readers):
                self._finish()

    async def __aiter__(self) -> AsyncIterator[AudioChunk | VideoFrame]:
        if self.info is None:
            await self.open()
        while True:
            try:
                item = await asyncio.wait_for(self._items.get(), self.give_up_s)
            except TimeoutError:
                raise SourceError("source_lost", f"no media from the browser for {self.give_up_s:.0f} s") from None
            if item is _END:
                if self._lost is not None:
                    raise SourceError("source_lost", self._lost)
                self.end_reason = "stopped"  # the browser hung up
                return
            yield item

    async def close(self) -> None:
        self._closed = True
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        await self.pc.close()
