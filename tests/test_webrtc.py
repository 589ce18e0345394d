"""WebRTC ingest end to end without a browser: an aiortc peer plays a real clip (Opus + VP8, as a browser sends)
into the server over loopback, through the websocket signalling, and the stream behaves like any other.
The same path with a real Chromium is in test_dashboard.py."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from websockets.asyncio.client import connect

from conftest import VIDEOS, need_data, own_threads, settled
from pipeline import PipelineConfig
from protocol import parse_message
from server import SourcePolicy, StreamHub
from stream.webrtc import _TrackClock, gather_ice_on, parse_ice_server
from test_server import RunningServer, collect

gather_ice_on(["127.0.0.1"])  # loopback only: nothing leaves this machine


def webrtc_hub(engine, **options) -> StreamHub:
    return StreamHub(engine, PipelineConfig(), SourcePolicy(VIDEOS), webrtc_options={"ice_servers": [], **options})


class Peer:
    """A sending peer like a browser: a real clip played into audio and video tracks at real-time pace."""

    def __init__(self, path, audio: bool = True, video: bool = True):
        self.player = MediaPlayer(str(path))
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        if audio:
            self.pc.addTrack(self.player.audio)
        if video:
            self.pc.addTrack(self.player.video)

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def close(self) -> None:
        await self.pc.close()
        for track in (self.player.audio, self.player.video):
            if track is not None:
                track.stop()


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
    async with RunningServer(webrtc_hub(engine)) as server:
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
            for stream_id, code in (("cam", "stream_exists"), ("other", "too_many_streams"), (None, "too_many_streams")):
                second = Peer(path)
                reply = await send_offer(ws, await second.offer(), stream_id)
                await second.close()
                assert reply.type == "error" and reply.code == code, reply
            await ws.send(json.dumps({"type": "stop", "stream": "cam"}))
            messages = await collect(ws, "cam", timeout=30)
            await first.close()
    assert messages[-1].summary["reason"] == "stopped"


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
