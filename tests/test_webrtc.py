"""WebRTC ingest end to end without a browser: an aiortc peer plays a real clip (Opus + VP8, as a browser sends)
into the server over loopback, through the websocket signalling, and the stream behaves like any other.
The same path with a real Chromium is in test_dashboard.py."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from websockets.asyncio.client import connect

import stream.webrtc
from monitor.logs import CHATTY_LOGGERS, configure_logging
from protocol import parse_message
from stream.webrtc import (
    MAX_CANDIDATES_PER_MEDIA,
    MAX_CANDIDATES_PER_OFFER,
    WebRTCSource,
    _TrackClock,
    gather_ice_on,
    parse_ice_server,
)
from testkit.data import VIDEOS, need_data
from testkit.reliability import own_threads, settled
from testkit.servers import RunningServer, collect
from testkit.webrtc import Peer, webrtc_hub

gather_ice_on(["127.0.0.1"])  # loopback only: nothing leaves this machine


async def send_offer(ws, sdp: str, stream: str | None = None):
    """The first reply to a webrtc_offer: webrtc_answer (then subscribed follows) or an error."""
    request = {"type": "webrtc_offer", "sdp": sdp}
    if stream:
        request["stream"] = stream
    await ws.send(json.dumps(request))
    while True:
        message = parse_message(await asyncio.wait_for(ws.recv(), 20))
        if message.type in ("webrtc_answer", "error"):
            return message


async def stream_peer(ws, peer: Peer, seconds: float, stream: str | None = None):
    """Offer, connect, send media for `seconds`, hang up: every message of the stream until its end."""
    answer = await send_offer(ws, await peer.offer(), stream)
    assert answer.type == "webrtc_answer", answer
    await peer.answer(answer.sdp)
    collector = asyncio.create_task(collect(ws, answer.stream, timeout=seconds + 60))
    await asyncio.sleep(seconds)
    await peer.close()
    return answer.stream, await collector


async def test_a_webrtc_peer_streams_a_real_clip_and_hangs_up(engine, looped_mosi):
    path = looped_mosi  # "I mean that was impressive." (CMU-MOSI +2.6), nine times over
    async with RunningServer(webrtc_hub(engine)) as server:
        async with connect(server.url) as ws:
            hello = parse_message(await ws.recv())
            assert hello.ice_servers == []
            threads, tasks = own_threads(), len(asyncio.all_tasks())
            stream, messages = await stream_peer(ws, Peer(path), seconds=11)
            assert not server.hub.streams
            # the peer connection's receiver threads and the stream's tasks are gone with the stream
            assert await settled(lambda: own_threads() == threads), own_threads()
            assert await settled(lambda: len(asyncio.all_tasks()) <= tasks), asyncio.all_tasks()
    kinds = [m.type for m in messages]
    assert kinds[0] == "subscribed" and kinds[-1] == "end"
    running = [m for m in messages if m.type == "status" and m.source]
    assert running and running[0].source["kind"] == "webrtc"
    assert running[0].source["has_audio"] and running[0].source["has_video"]
    assert (running[0].source["width"], running[0].source["height"]) == (480, 360)
    windows = [m for m in messages if m.type == "window"]
    assert len(windows) >= 3
    assert [w.index for w in windows] == list(range(len(windows)))
    assert all(w.modalities["visual"]["available"] for w in windows), windows[0].modalities["visual"]
    transcript = " ".join(m.text for m in messages if m.type == "transcript" and m.final).lower()
    assert "impressive" in transcript, transcript
    assert windows[-1].rolling["score"] > 0.5 and windows[-1].rolling["label"] == "positive", windows[-1].rolling
    assert all(w.latency_s is not None and w.latency_s >= 0 for w in windows)
    end = messages[-1]
    assert end.summary["reason"] in ("stopped", "source_lost") and end.summary["duration"] >= 8


@pytest.mark.parametrize("audio,video,missing", [(True, False, {"visual": "no video track"}),
                                                 (False, True, {"text": "no audio track", "audio": "no audio track"})])
async def test_an_offer_with_one_kind_of_track_marks_the_other_missing(engine, looped_mosi, audio, video, missing):
    path = looped_mosi
    async with RunningServer(webrtc_hub(engine)) as server:
        async with connect(server.url) as ws:
            await ws.recv()
            _, messages = await stream_peer(ws, Peer(path, audio=audio, video=video), seconds=6)
    windows = [m for m in messages if m.type == "window"]
    assert windows
    for w in windows:
        for modality, reason in missing.items():
            assert not w.modalities[modality]["available"] and w.modalities[modality]["reason"] == reason
        present = set(w.modalities) - set(missing)
        assert any(w.modalities[m]["available"] for m in present), w.modalities


async def data_channel_offer() -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("chat")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def test_bad_offers_get_clear_errors_and_leave_no_peer_connection(engine):
    need_data("videos", "vna_mosi_2.6.mp4")
    # the offer nobody completes below waits out the connection timeout: 4 s here, 15 s by default
    async with RunningServer(webrtc_hub(engine, connect_timeout_s=4.0)) as server:
        async with connect(server.url) as ws:
            await ws.recv()
            for sdp in ("garbage", "v=0\r\nthis is not sdp\r\n", await data_channel_offer()):
                reply = await send_offer(ws, sdp)
                assert reply.type == "error" and reply.code == "bad_offer" and reply.message, reply
                assert "Traceback" not in reply.message
            await ws.send(json.dumps({"type": "webrtc_offer"}))
            reply = parse_message(await asyncio.wait_for(ws.recv(), 10))
            assert reply.type == "error" and reply.code == "bad_request"
            assert not server.hub.streams
            # an offer nobody completes (no ICE from the peer) ends the stream instead of leaving it stuck
            peer = Peer(VIDEOS / "vna_mosi_2.6.mp4")
            answer = await send_offer(ws, await peer.offer(), "never-connects")
            assert answer.type == "webrtc_answer"
            source = server.hub.streams["never-connects"].pipeline.source
            await peer.close()
            messages = await collect(ws, "never-connects", timeout=40)
            assert [m.code for m in messages if m.type == "error"] == ["unreachable"]
            assert messages[-1].type == "end" and messages[-1].summary["reason"] == "error"
            assert source.pc.connectionState == "closed"


async def test_a_taken_stream_id_and_a_full_server_refuse_the_offer(engine, looped_mosi):
    path = looped_mosi
    hub = webrtc_hub(engine)
    hub.max_streams = 1
    async with RunningServer(hub) as server:
        async with connect(server.url) as ws:
            await ws.recv()
            first = Peer(path)
            answer = await send_offer(ws, await first.offer(), "cam")
            assert answer.type == "webrtc_answer" and answer.stream == "cam"
            await first.answer(answer.sdp)
            refusals = (("cam", "stream_exists"), ("other", "too_many_streams"), (None, "too_many_streams"))
            for stream_id, code in refusals:
                second = Peer(path)
                reply = await send_offer(ws, await second.offer(), stream_id)
                await second.close()
                assert reply.type == "error" and reply.code == code, reply
            await ws.send(json.dumps({"type": "stop", "stream": "cam"}))
            messages = await collect(ws, "cam", timeout=30)
            await first.close()
    assert messages[-1].summary["reason"] == "stopped"


async def aiortc_offer() -> tuple[RTCPeerConnection, str]:
    """A real offer as a browser sends it (audio and video, bundled, candidates gathered), and its peer."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(AudioStreamTrack())
    pc.addTrack(VideoStreamTrack())
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


def with_candidates(sdp: str, lines_per_media: list[str]) -> str:
    """The offer with these a=candidate lines added to each media section (before its end-of-candidates)."""
    out = []
    for line in sdp.splitlines():
        if line == "a=end-of-candidates":
            out += lines_per_media
        out.append(line)
    return "\r\n".join(out) + "\r\n"


def fabricated(count: int) -> list[str]:
    """Distinct loopback targets (these tests gather on loopback only, so the rest would be dropped anyway), with
    priorities below any real host candidate's."""
    return [f"a=candidate:f{i} 1 udp {1000 + i} 127.{1 + i // 250}.{i % 250}.1 {10000 + i} typ host"
            for i in range(count)]


def kept_candidates(sdp: str) -> list[list[str]]:
    """The a=candidate lines of each media section."""
    sections = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([])
        elif line.startswith("a=candidate:"):
            sections[-1].append(line)
    return sections


async def test_an_offer_of_900_candidates_is_checked_on_a_bounded_few_and_logs_no_pairs():
    # the probe: ~900 candidates in one 55 KB offer made the server check every one, a log line per pair and state
    records: list[logging.LogRecord] = []
    keep = logging.Handler()
    keep.emit = records.append
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    peer, offer = await aiortc_offer()
    source = None
    try:
        configure_logging()  # the server's default: INFO
        root.addHandler(keep)
        flooded = with_candidates(offer, fabricated(450))
        assert flooded.count("a=candidate:") >= 900 and len(flooded) > 50_000
        source, answer = await WebRTCSource.from_offer(flooded, ice_servers=[])
        taken = kept_candidates(source.pc.remoteDescription.sdp)
        assert all(len(section) <= MAX_CANDIDATES_PER_MEDIA for section in taken)
        assert sum(map(len, taken)) <= MAX_CANDIDATES_PER_OFFER
        transports = {t.receiver.transport.transport for t in source.pc.getTransceivers()}
        checked = [c for transport in transports for c in transport.getRemoteCandidates()]
        assert 0 < len(checked) <= MAX_CANDIDATES_PER_MEDIA  # bundled: the first section's candidates
        # the peer's own candidate has the highest priority: it is kept, and the connection comes up through it
        real = kept_candidates(offer)[0]
        assert real and all(line in taken[0] for line in real), (real, taken[0])
        await peer.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await source.open()
        assert source.pc.connectionState == "connected"
    finally:
        if source is not None:
            await source.close()
        await peer.close()
        root.handlers[:], root.level = saved[0], saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)
    names = {record.name for record in records}
    assert "stream.webrtc" in names, names  # the server's own lines still come
    assert not [r.getMessage() for r in records if r.name.startswith(CHATTY_LOGGERS)][:5]


def test_an_offer_keeps_only_candidates_a_server_may_check(monkeypatch):
    monkeypatch.setattr(stream.webrtc, "_loopback_only", False)
    monkeypatch.setattr(stream.webrtc, "_gathers_on_loopback", False)
    usable = ["a=candidate:1 1 udp 2122260223 192.168.1.20 50000 typ host generation 0",
              "a=candidate:2 1 UDP 2122262783 2001:db8::20 50002 typ host",
              "a=candidate:3 1 udp 2122194687 0a1b2c3d-4e5f-4a1b-8c2d-3e4f5a6b7c8d.local 50004 typ host",
              "a=candidate:4 1 udp 1686052607 203.0.113.7 61000 typ srflx raddr 192.168.1.20 rport 50000",
              "a=candidate:5 1 udp 41885439 198.51.100.9 3478 typ relay raddr 203.0.113.7 rport 61000",
              "a=candidate:6 2 udp 2122260222 192.168.1.20 50001 typ host"]  # RTCP without rtcp-mux
    never = ["a=candidate:7 1 udp 2122260223 224.0.0.251 5353 typ host",  # multicast (mDNS's group)
             "a=candidate:8 1 udp 2122260223 ff02::1 5000 typ host",
             "a=candidate:9 1 udp 2122260223 0.0.0.0 5000 typ host",  # no address
             "a=candidate:10 1 udp 2122260223 0.1.2.3 5000 typ host",
             "a=candidate:11 1 udp 2122260223 :: 5000 typ host",
             "a=candidate:12 1 udp 2122260223 255.255.255.255 5000 typ host",  # broadcast
             "a=candidate:13 1 udp 2122260223 240.0.0.1 5000 typ host",  # reserved
             "a=candidate:14 1 udp 2122260223 ::ffff:127.0.0.1 5000 typ host",  # IPv4-mapped
             "a=candidate:15 1 udp 2122260223 169.254.169.254 80 typ host",  # link-local: cloud metadata
             "a=candidate:16 1 udp 2122260223 fe80::1 5000 typ host",
             "a=candidate:17 1 udp 2122260223 127.0.0.1 22 typ host",  # the server's own loopback
             "a=candidate:18 1 udp 2122260223 ::1 5000 typ host",
             "a=candidate:19 1 udp 2122260223 192.168.1.21 0 typ host",  # port 0, out of range
             "a=candidate:20 1 udp 2122260223 192.168.1.21 65536 typ host",
             "a=candidate:21 1 tcp 1518280447 192.168.1.20 9 typ host tcptype active",  # aioice checks UDP only
             "a=candidate:22 1 udp 2122260223 192.168.1.20 50000 typ prflx",  # not in SDP; aioice refuses it
             "a=candidate:23 3 udp 2122260223 192.168.1.22 5000 typ host",  # no such component
             "a=candidate:24 1 udp 2122260223 example.com 5000 typ host",  # a name aioice cannot resolve
             "a=candidate:25 1 udp high 192.168.1.23 5000 typ host",  # malformed
             "a=candidate:26 1 udp 2122260223 192.168.1.24",
             "a=candidate:27 1 udp 2000000000 192.168.1.20 50000 typ host"]  # the same target again
    bounded = stream.webrtc._bounded_candidates
    session_level = ["a=candidate:0 1 udp 9 192.168.1.30 1 typ host"]
    assert kept_candidates(bounded(sdp_with(usable + never, usable + never, session=session_level))) == [
        usable, usable]
    # past the bound: the highest priorities, in the offer's order; the offer's total bounded too
    many = [f"a=candidate:{i} 1 udp {i} 10.0.{i // 200}.{i % 200 + 1} {5000 + i} typ host" for i in range(300)]
    kept = kept_candidates(bounded(sdp_with(many + usable, usable)))
    assert kept == [many[-(MAX_CANDIDATES_PER_MEDIA - len(usable)):] + usable, usable]
    kept = kept_candidates(bounded(sdp_with(many, many, many)))
    assert [len(section) for section in kept] == [MAX_CANDIDATES_PER_MEDIA, MAX_CANDIDATES_PER_OFFER
                                                  - MAX_CANDIDATES_PER_MEDIA, 0]
    # gathering on loopback only: only loopback targets, and loopback ones are fine then
    monkeypatch.setattr(stream.webrtc, "_loopback_only", True)
    monkeypatch.setattr(stream.webrtc, "_gathers_on_loopback", True)
    assert kept_candidates(bounded(sdp_with(usable + never))) == [[never[10], never[11]]]


def sdp_with(*sections: list[str], session: list[str] = ()) -> str:
    """A minimal offer whose media sections hold these lines (only the candidates matter here)."""
    lines = ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", *session]
    for candidates in sections:
        lines += ["m=audio 9 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 0.0.0.0", *candidates, "a=end-of-candidates"]
    return "\r\n".join(lines) + "\r\n"


def test_ice_server_option_and_rtp_clock():
    assert parse_ice_server("stun:127.0.0.1:3478").urls == "stun:127.0.0.1:3478"
    turn = parse_ice_server("turn:127.0.0.1:3478,user,secret")
    assert (turn.username, turn.credential) == ("user", "secret")
    for bad in ("http://x", "turn:h:1,user"):
        with pytest.raises(ValueError):
            parse_ice_server(bad)

    class Frame:
        def __init__(self, pts):
            self.pts, self.time_base = pts, __import__("fractions").Fraction(1, 90000)

    clock = _TrackClock(wall_origin=100.0)
    near_wrap = (1 << 32) - 45000  # half a second before the 32-bit RTP timestamp wraps
    arrivals = [(near_wrap, 100.5), (near_wrap + 9000, 100.6), (0, 101.0), (45000, 101.5), (36000, 101.6)]
    times = [clock.time_of(Frame(pts), now) for pts, now in arrivals]
    assert times == pytest.approx([0.5, 0.6, 1.0, 1.5, 1.4])  # the last one arrived late
    # a sender that restarts its timestamps: media time carries on from the arrival, never backwards
    restarted = (45000 - 5 * 90000) % (1 << 32)  # five seconds back
    assert clock.time_of(Frame(restarted), 103.0) == pytest.approx(3.0)
    assert clock.time_of(Frame(restarted + 9000), 103.1) == pytest.approx(3.1)
