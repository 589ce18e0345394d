"""The Python client against the real server: every message type typed, start/subscribe/list/offer, reconnect after
a server restart, and the README's client example."""

from __future__ import annotations

import asyncio
import sys

import pytest

from client.ws_client import VidsentClient, VidsentError
from protocol import (
    EndMessage,
    HelloMessage,
    MediaMessage,
    StatusMessage,
    TranscriptMessage,
    WebRTCAnswerMessage,
    WindowMessage,
)
from service.serving import serve_forever
from testkit.data import DATA, ROOT, VIDEOS, need_data
from testkit.servers import RunningServer, make_hub


async def test_client_starts_a_stream_and_reads_typed_messages(engine):
    need_data("videos", "vna_mosi_2.6.mp4")
    async with RunningServer(make_hub(engine, DATA)) as server:
        async with VidsentClient(server.url, reconnect=False) as client:
            assert client.hello is not None and client.hello.server == "vidsent"
            stream = await client.start("videos/vna_mosi_2.6.mp4", realtime=False)
            kinds = set()
            async with asyncio.timeout(60):
                async for message in client.messages():
                    kinds.add(type(message))
                    if isinstance(message, EndMessage) and message.stream == stream:
                        break
            assert {WindowMessage, StatusMessage, TranscriptMessage, EndMessage} <= kinds
            assert message.summary["label"] == "positive"
            with pytest.raises(VidsentError) as info:
                await client.subscribe("no-such-stream")
            assert info.value.code == "no_such_stream"
            assert await client.list_streams() == []


def readme_client_example() -> str:
    """The Python block of the README's "Building on the Python client"."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("Building on the Python client"):]
    return section[section.index("```python") + len("```python"):section.index("```", section.index("```python") + 9)]


async def test_the_readme_client_example_runs_against_a_real_server(engine):
    need_data("videos", "vna_0001.mp4")
    hub = make_hub(engine)
    async with RunningServer(hub) as server:
        code = readme_client_example().replace("ws://127.0.0.1:8765", server.url)
        assert server.url in code, "the README example no longer connects to ws://127.0.0.1:8765"
        process = await asyncio.create_subprocess_exec(sys.executable, "-c", code, cwd=ROOT,
                                                       stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    lines = out.decode().strip().splitlines()
    assert lines and all(line.split()[1] in ("positive", "neutral", "negative", "None") for line in lines), lines


async def test_client_parses_every_message_type_including_webrtc_and_media(engine, looped_mosi):
    from aiortc import RTCSessionDescription

    from testkit.webrtc import Peer, webrtc_hub

    async with RunningServer(webrtc_hub(engine)) as server:
        async with VidsentClient(server.url, reconnect=False) as client:
            assert isinstance(client.hello, HelloMessage) and client.hello.ice_servers == []
            media = await client.list_media()
            assert isinstance(media, MediaMessage) and not media.truncated
            assert {"path": "vna_mosi_2.6.mp4", "size": (VIDEOS / "vna_mosi_2.6.mp4").stat().st_size} in media.files
            peer = Peer(looped_mosi)
            answer = await client.offer(await peer.offer(), stream="cam")
            assert isinstance(answer, WebRTCAnswerMessage) and answer.stream == "cam" and "a=fingerprint" in answer.sdp
            await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))
            streams = await client.list_streams()
            assert [s["stream"] for s in streams] == ["cam"]
            kinds = set()
            async with asyncio.timeout(90):
                async for message in client.messages():
                    kinds.add(type(message))
                    if isinstance(message, WindowMessage) and message.index == 2:
                        await client.stop("cam")
                    if isinstance(message, EndMessage):
                        break
            await peer.close()
            assert message.summary["reason"] == "stopped"
            assert {WindowMessage, StatusMessage, TranscriptMessage, EndMessage} <= kinds
            with pytest.raises(VidsentError) as info:
                await client.offer("not an offer")
            assert info.value.code == "bad_offer"
            assert isinstance(await client.list_streams(), list)


async def test_client_reconnects_after_a_server_restart(engine):
    need_data("videos", "vna_0001.mp4")
    first = make_hub(engine)
    async with RunningServer(first) as server:
        port, url = first.bound_port, server.url
        client = VidsentClient(url, max_backoff_s=0.5)
        await client._connect()
    hello_before = client.hello
    reading = asyncio.create_task(anext(client.messages()))  # meets the closed connection, then retries
    await asyncio.sleep(1.0)
    assert not reading.done()
    second = make_hub(engine)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve_forever("127.0.0.1", port, second, ready, stop))
    await asyncio.wait_for(ready.wait(), 10)
    try:
        async with asyncio.timeout(20):
            while client.hello is hello_before:
                await asyncio.sleep(0.1)
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        stream = await client.start("vna_0001.mp4", realtime=False)
        async with asyncio.timeout(60):
            async for message in client.messages():
                if isinstance(message, EndMessage) and message.stream == stream:
                    break
        assert message.summary["reason"] == "eof" and message.summary["windows"] >= 1
        assert client.reconnects == 1
    finally:
        await client.close()
        stop.set()
        await asyncio.wait_for(task, 15)
