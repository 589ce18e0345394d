"""The Python client against the real server: typed messages, start/subscribe/list, and `vidsent watch --server`."""

from __future__ import annotations

import asyncio

import pytest

from client.ws_client import VidsentClient, VidsentError
from conftest import need_data
from protocol import EndMessage, StatusMessage, TranscriptMessage, WindowMessage
from test_server import RunningServer, make_hub


async def test_client_starts_a_stream_and_reads_typed_messages(engine):
    need_data("videos", "vna_mosi_2.6.mp4")
    async with RunningServer(make_hub(engine)) as server:
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
