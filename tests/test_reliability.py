"""Short runs of testkit/reliability.py's soak and never-reading client, on real media (benchmarks/reliability.py
runs them for hours / minutes and reports the figures; here only what must hold, never a speed)."""

from __future__ import annotations

import os

import pytest

from service.hub import CLIENT_QUEUE
from testkit.data import need_data
from testkit.fakes import fake_engine
from testkit.reliability import slow_client, soak

SOAK_MEDIA_S = 150.0  # 13 loops of the clip: about 40 s in fast mode on a free 2-core CPU
# After the first minute of media (models' first calls, the ring and stores filling) the RSS moves a few MiB (the
# 2.5 h benchmark soak: +15 MiB in all). The clip's 480x360 frames are 0.5 MiB each, 2 sampled a media second: a
# pipeline that kept its frames would pass this bound within a minute of media.
SOAK_RSS_GROWTH_MIB = 40.0
DEFAULT_EXECUTOR_THREADS = min(32, (os.cpu_count() or 1) + 4)  # asyncio's default ThreadPoolExecutor
ENGINE_THREADS = 2  # the Engine's ASR and scoring threads


async def test_a_looped_clip_in_fast_mode_grows_nothing(engine):
    clip = need_data("videos", "vna_original_2.mp4")
    result = await soak(engine, clip, SOAK_MEDIA_S, sample_every_s=30.0, warmup_s=60.0)
    assert result.end_reason == "eof" and not result.errors, result.errors
    assert result.loops >= 12 and result.media_s >= SOAK_MEDIA_S
    assert not result.window_gaps, result.window_gaps[:5]  # contiguous across every loop boundary
    assert result.windows >= result.media_s / 2.0 - 2  # the default 2 s hop
    # threads outside the worker pools (asyncio's default executor may still start one of its bounded few late)
    for name in ("tasks", "other_threads", "fds", "sockets"):
        assert result.growth(name) <= 0, (name, [s.holdings for s in result.samples])
    assert max(s.holdings.threads for s in result.samples) <= DEFAULT_EXECUTOR_THREADS + ENGINE_THREADS + 1
    assert result.growth("rss_mib") < SOAK_RSS_GROWTH_MIB, [s.holdings.rss_mib for s in result.samples]


@pytest.mark.slow  # until the server drops the client: seconds
async def test_a_real_client_that_never_reads_is_dropped_and_the_other_gets_every_window():
    """A raw TCP websocket client with a tiny receive buffer subscribes and never reads (not even pings), next to a
    normal one, on a stream replayed as fast as possible with a window every half second. Once the kernel's buffers
    are full the server queues for it at most CLIENT_QUEUE messages, then drops it (outbox full, or its keepalive
    ping unanswered: 4 s here, 20 s by default; whichever comes first); meanwhile the normal client gets every
    window."""
    clip = need_data("videos", "vna_original_2.mp4")
    engine = fake_engine()
    try:
        result = await slow_client(engine, clip, media_s=24 * 3600, stuck=True, stop_when_dropped=True, seconds=120,
                                   keepalive_s=4.0)
    finally:
        engine.close()
    assert result.stuck_dropped_after_s is not None, "the stuck client was never dropped"
    assert result.stuck_outbox_max <= CLIENT_QUEUE
    assert result.end_reason == "stopped"
    assert result.windows_contiguous and len(result.windows) > 100, result.windows[:10]
