"""The server's numbers in the Prometheus text format (`GET /metrics`): streams, windows, window latency, lag,
dropped frames, the ASR's real-time factor, clients, errors and alerts.

Counters and the latency histogram follow the messages the streams publish (`ServerMetrics.observe` is one of the
hub's observers); gauges are read from the live streams when Prometheus scrapes. Each server has its own registry,
so several servers in one process (the tests) never mix their numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from protocol import (
    AlertMessage,
    EndMessage,
    ErrorMessage,
    Message,
    StatusMessage,
    TranscriptMessage,
    WindowMessage,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST
# window latency targets are 1.5 s at p95: buckets resolve that region finely and show a stall for what it is
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


class PipelineProgress(Protocol):
    """What the metrics read of a stream's pipeline (engine.StreamPipeline has these)."""

    @property
    def lag_s(self) -> float: ...

    @property
    def asr_until(self) -> float: ...

    @property
    def asr_busy_s(self) -> float: ...


class WatchedStream(Protocol):
    """A running stream as the metrics see it (service.hub.LiveStream has these)."""

    id: str

    @property
    def pipeline(self) -> PipelineProgress | None: ...


class ServerMetrics:
    def __init__(self, streams: Callable[[], Mapping[str, WatchedStream]], clients: Callable[[], int]):
        """streams: the hub's running streams by id; clients: connected clients."""
        self.registry = CollectorRegistry()
        self._streams = streams
        self._clients = clients
        registry = self.registry
        self.windows = Counter("vidsent_windows", "Window messages emitted", registry=registry)
        self.window_latency = Histogram(
            "vidsent_window_latency_seconds", "Wall seconds from a window's last media reaching the server to its "
            "message", buckets=LATENCY_BUCKETS, registry=registry)
        self.words = Counter("vidsent_committed_words", "Transcript words committed", registry=registry)
        self.streams_started = Counter("vidsent_streams_started", "Streams started", registry=registry)
        self.streams_ended = Counter("vidsent_streams_ended", "Streams ended, by reason", ["reason"],
                                     registry=registry)
        self.errors = Counter("vidsent_stream_errors", "Error messages of streams, by code", ["code"],
                              registry=registry)
        self.dropped_frames = Counter("vidsent_dropped_frames", "Sampled frames dropped by the drop policy",
                                      registry=registry)
        self.alerts = Counter("vidsent_alerts", "Alert transitions, by rule and state (raised, cleared)",
                              ["rule", "state"], registry=registry)
        # ASR work of streams that have ended; the running ones are read at scrape time
        self._asr_done = {"busy": 0.0, "audio": 0.0}
        self._dropped_seen: dict[str, int] = {}
        registry.register(_LiveCollector(self))

    def observe(self, message: Message) -> None:
        if isinstance(message, WindowMessage):
            self.windows.inc()
            if message.latency_s is not None:
                self.window_latency.observe(message.latency_s)
        elif isinstance(message, TranscriptMessage):
            if message.final:
                self.words.inc(len(message.words or []))
        elif isinstance(message, StatusMessage):
            if message.state == "starting":
                self.streams_started.inc()
            self._count_dropped(message.stream, message.dropped_frames)
        elif isinstance(message, ErrorMessage):
            self.errors.labels(message.code).inc()
        elif isinstance(message, EndMessage):
            self.streams_ended.labels(message.summary.get("reason", "unknown")).inc()
            self._count_dropped(message.stream, message.summary.get("dropped_frames") or 0)
            self._dropped_seen.pop(message.stream, None)
            live = self._streams().get(message.stream)
            if live is not None and live.pipeline is not None:
                self._asr_done["busy"] += live.pipeline.asr_busy_s
                self._asr_done["audio"] += live.pipeline.asr_until
        elif isinstance(message, AlertMessage):
            self.alerts.labels(message.rule, message.state).inc()

    def _count_dropped(self, stream: str, total: int) -> None:
        seen = self._dropped_seen.get(stream, 0)
        if total > seen:
            self.dropped_frames.inc(total - seen)
            self._dropped_seen[stream] = total

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _LiveCollector:
    """Gauges of the running streams, read when scraped."""

    def __init__(self, metrics: ServerMetrics):
        self.metrics = metrics

    def describe(self):
        return []  # registered without describing: collect() runs only at scrape time

    def collect(self):
        live = [s for s in self.metrics._streams().values() if s.pipeline is not None and s.ended is None]
        running = GaugeMetricFamily("vidsent_streams", "Streams running")
        running.add_metric([], len(live))
        yield running
        clients = GaugeMetricFamily("vidsent_clients", "Websocket clients connected")
        clients.add_metric([], self.metrics._clients())
        yield clients
        lag = GaugeMetricFamily("vidsent_stream_lag_seconds", "Media seconds received but not yet covered by a "
                                "window, beyond one hop", labels=["stream"])
        rtf = GaugeMetricFamily("vidsent_asr_realtime_factor", "ASR compute seconds per second of audio "
                                "transcribed (under 1: it keeps up)", labels=["stream"])
        busy, audio = self.metrics._asr_done["busy"], self.metrics._asr_done["audio"]
        for stream in live:
            pipeline = stream.pipeline
            lag.add_metric([stream.id], pipeline.lag_s)
            if pipeline.asr_until > 0:
                rtf.add_metric([stream.id], pipeline.asr_busy_s / pipeline.asr_until)
            busy += pipeline.asr_busy_s
            audio += pipeline.asr_until
        yield lag
        yield rtf
        asr_busy = CounterMetricFamily("vidsent_asr_busy_seconds", "Compute seconds spent in speech recognition")
        asr_busy.add_metric([], busy)
        yield asr_busy
        asr_audio = CounterMetricFamily("vidsent_asr_audio_seconds", "Seconds of audio transcribed")
        asr_audio.add_metric([], audio)
        yield asr_audio
