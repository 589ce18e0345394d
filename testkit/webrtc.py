"""A WebRTC peer that sends like a browser, and a hub that takes WebRTC offers, for the tests (no browser needed).
Importing this module keeps ICE on loopback for the whole process: nothing leaves this machine."""

from __future__ import annotations

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer

from engine import Engine
from service.hub import StreamHub
from stream.webrtc import gather_ice_on
from testkit.servers import make_hub

gather_ice_on(["127.0.0.1"])


def webrtc_hub(engine: Engine, **options) -> StreamHub:
    """A hub over the real clips whose WebRTC sources use no ICE server; `options` go to WebRTCSource."""
    return make_hub(engine, webrtc_options={"ice_servers": [], **options})


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
