"""Operations: `GET /metrics` in the Prometheus text format (parsed with prometheus-client's own parser) on real
streams, and JSON log lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from monitor.logs import JsonFormatter
from protocol import parse_message
from service.access import Access
from testkit.data import need_data
from testkit.servers import RunningServer, collect, http_get, make_hub, start

TOKEN = "metrics-token"


def samples(exposition: bytes) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    out = {}
    for family in text_string_to_metric_families(exposition.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_metrics_count_what_the_streams_did(engine):
    need_data("videos", "vna_original_2.mp4")
    hub = make_hub(engine)
    async with RunningServer(hub, Access(token=TOKEN)) as server:
        base = f"http://127.0.0.1:{hub.bound_port}/metrics"
        assert (await http_get(base))[0] == 401
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with connect(server.url, additional_headers=headers) as ws:
            await ws.recv()
            live = await start(ws, "vna_original_2.mp4", realtime=True, stream="live")
            early = []
            async with asyncio.timeout(60):  # a live stream: gauges while it runs
                while hub.streams["live"].pipeline.asr_until < 2:
                    early.append(parse_message(await ws.recv()))
            status, head, body = await http_get(base, headers)
            assert status == 200 and head["Content-Type"].startswith("text/plain")
            running = samples(body)
            assert running[("vidsent_streams", ())] == 1 and running[("vidsent_clients", ())] == 1
            assert ("vidsent_stream_lag_seconds", (("stream", live),)) in running
            assert 0 < running[("vidsent_asr_realtime_factor", (("stream", live),))] < 5
            messages = early + await collect(ws, live)
            fast = await start(ws, "vna_mosi_2.6.mp4", stream="fast")
            messages += await collect(ws, fast)
            await ws.send(json.dumps({"type": "start", "source": "missing.mp4", "stream": "gone"}))
            messages += await collect(ws, "gone")
        ended = samples((await http_get(base, headers))[2])
    windows = [m for m in messages if m.type == "window"]
    words = sum(len(m.words) for m in messages if m.type == "transcript" and m.final)
    assert ended[("vidsent_windows_total", ())] == len(windows) >= 7
    assert ended[("vidsent_window_latency_seconds_count", ())] == len(windows)
    assert ended[("vidsent_committed_words_total", ())] == words > 10
    assert ended[("vidsent_streams_started_total", ())] == 3
    assert ended[("vidsent_streams_ended_total", (("reason", "eof"),))] == 2
    assert ended[("vidsent_streams_ended_total", (("reason", "error"),))] == 1
    assert ended[("vidsent_stream_errors_total", (("code", "not_found"),))] == 1
    assert ended[("vidsent_streams", ())] == 0 and ended[("vidsent_clients", ())] == 0
    duration = sum(m.summary["duration"] for m in messages if m.type == "end")
    assert ended[("vidsent_asr_audio_seconds_total", ())] == pytest.approx(duration, abs=0.5)
    assert ended[("vidsent_asr_busy_seconds_total", ())] > 0


def test_json_log_lines_carry_time_level_logger_message_and_stream():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("vidsent.test.json")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("stream %s: %d frames dropped", "cam", 3, extra={"stream": "cam"})
        try:
            raise ValueError("boom")
        except ValueError:
            log.error("failed", exc_info=True)
    finally:
        log.removeHandler(handler)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["level"] == "warning" and first["logger"] == "vidsent.test.json"
    assert first["message"] == "stream cam: 3 frames dropped" and first["stream"] == "cam"
    assert first["ts"].endswith("Z") and first["ts"][:2] == "20"
    assert second["level"] == "error" and "ValueError: boom" in second["exc"]
