"""Buffers, windows, fusion and protocol on their own (no models)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from media import AudioChunk, VideoFrame, Word
from models.base import ModalityScore
from models.fusion import FusionParams, RollingSentiment, certainty_of, fuse, grade_for_vote
from protocol import ProtocolError, WindowMessage, parse_message, parse_request
from stream.buffers import AudioRing, FrameQueue, TimedResults
from stream.windows import WindowSchedule, WordStore


def test_audio_ring_is_bounded_and_reads_by_media_time():
    ring = AudioRing(capacity_s=2.0, sample_rate=100)
    for i in range(10):  # 10 s of audio, one second per chunk, value = the second it belongs to
        ring.append(AudioChunk(float(i), np.full(100, i, np.float32)))
    assert ring.end_t == 10.0 and ring.start_t == 8.0
    assert ring._data.nbytes == 200 * 4  # memory does not grow with the stream
    window = ring.read(8.5, 9.5)
    assert len(window) == 100 and window[0] == 8 and window[-1] == 9
    with pytest.raises(OverflowError):
        ring.read(5.0, 6.0)


def test_audio_ring_fills_gaps_with_silence_and_ignores_overlap():
    ring = AudioRing(capacity_s=10.0, sample_rate=10)
    ring.append(AudioChunk(0.0, np.ones(10, np.float32)))
    ring.append(AudioChunk(1.5, np.ones(10, np.float32)))  # half a second missing
    assert ring.end_t == 2.5
    assert ring.read(1.0, 1.5).tolist() == [0.0] * 5
    ring.append(AudioChunk(2.0, np.full(10, 2.0, np.float32)))  # overlaps the last 0.5 s
    assert ring.end_t == 3.0 and ring.read(2.4, 2.6).tolist() == [1.0, 2.0]


def test_frame_queue_drops_oldest_and_counts():
    queue = FrameQueue(max_waiting=3)
    for t in range(5):
        queue.put(VideoFrame(float(t), np.zeros((2, 2, 3), np.uint8)))
    assert queue.dropped == 2 and [f.t for f in queue.take(10)] == [2.0, 3.0, 4.0]


def test_timed_results_forget_the_past():
    results = TimedResults(keep_s=2.0)
    for t in range(10):
        results.add(float(t), t)
    assert len(results) == 3 and results.between(7.0, 9.0) == [7, 8]


def test_window_schedule_covers_the_media():
    schedule = WindowSchedule(4.0, 2.0)
    spans = []
    while schedule.next_span()[2] <= 9.0:
        spans.append(schedule.next_span())
        schedule.advance()
    assert spans == [(0, 0.0, 4.0), (1, 2.0, 6.0), (2, 4.0, 8.0)]
    assert schedule.final_span(9.0) == (3, 5.0, 9.0)
    short = WindowSchedule(4.0, 2.0)
    assert short.final_span(1.3) == (0, 0.0, 1.3)
    with pytest.raises(ValueError):
        WindowSchedule(2.0, 4.0)


def test_words_fall_in_the_window_holding_their_middle():
    store = WordStore()
    store.add([Word(1.0, 1.4, " hello"), Word(3.8, 4.4, " there"), Word(5.0, 5.2, " friend")])
    assert [w.text for w in store.between(0.0, 4.0)] == [" hello"]
    assert [w.text for w in store.between(2.0, 6.0)] == [" there", " friend"]


def scores(**values):
    return {m: (ModalityScore.of(v) if v is not None else ModalityScore.missing("no audio track"))
            for m, v in values.items()}


def test_weighted_fusion_leaves_missing_modalities_out_and_names_them():
    fused = fuse(scores(text=0.9, audio=None, visual=0.7))
    assert fused.used == ["text", "visual"] and fused.missing == ["audio"]
    assert 0.7 < fused.score < 0.9 and fused.label == "positive"
    assert fuse(scores(text=None, audio=None, visual=None)).score is None


def test_graded_vote_is_the_prototypes():
    assert fuse(scores(text=0.9, audio=0.8, visual=0.7), "vote").graded == "Positive"
    assert fuse(scores(text=0.9, audio=0.8, visual=0.2), "vote").graded == "Slight Negative"
    assert fuse(scores(text=0.9, audio=0.1, visual=0.2), "vote").graded == "Negative"
    assert fuse(scores(text=0.1, audio=0.1, visual=0.2), "vote").graded == "Strong Negative"
    assert grade_for_vote(2, 2) == "Positive"  # renormalised over the modalities present


def test_product_and_stacking_fusion():
    assert fuse(scores(text=0.8, audio=0.8, visual=None), "product").score > 0.9
    params = FusionParams(stacking={"text+visual": {"coef": [1.0, 1.0], "intercept": 0.0}})
    stacked = fuse(scores(text=0.8, audio=None, visual=0.8), "stacking", params)
    assert stacked.score == pytest.approx(fuse(scores(text=0.8, audio=0.8, visual=None), "product").score)


def test_rolling_ema_has_the_configured_half_life():
    rolling = RollingSentiment(half_life_s=4.0)
    assert rolling.update(1.0, 0.0) == 1.0
    assert rolling.update(0.0, 4.0) == pytest.approx(0.5)
    assert rolling.update(None, 6.0) == pytest.approx(0.5)  # a window with no modality changes nothing


def test_certainty_is_the_margin_shrunk_by_the_modalities_disagreement():
    # hand-computed: equal weights, text 0.9 and visual 0.1 -> mean 0.5, each 0.4 away: disagreement 2 * 0.4 = 0.8
    certainty, disagreement, doubts = certainty_of(0.5, {"text": 0.9, "visual": 0.1}, {})
    assert disagreement == pytest.approx(0.8) and certainty == pytest.approx(0.0)
    assert doubts == ["the modalities disagree: text 0.90, visual 0.10", "close to the middle (0.50)"]
    # all agree at 0.9: margin 0.8, nothing to doubt
    assert certainty_of(0.9, {"text": 0.9, "audio": 0.9}, {})[:2] == (pytest.approx(0.8), pytest.approx(0.0))
    # weights count: a weight of 3 on audio 0.8 against text 0.4 -> mean 0.7, distances 0.1 and 0.3
    certainty, disagreement, doubts = certainty_of(0.7, {"text": 0.4, "audio": 0.8}, {"audio": 3.0})
    assert disagreement == pytest.approx(2 * (3 * 0.1 + 0.3) / 4) and certainty == pytest.approx(0.4 * 0.7)
    assert doubts == []
    # one modality only: no disagreement; a weak verdict is flagged as weak
    assert certainty_of(0.62, {"audio": 0.62}, {}) == (pytest.approx(0.24), 0.0, [])
    assert certainty_of(0.55, {"audio": 0.55}, {})[2] == ["close to the middle (0.55)"]


def test_every_fusion_says_how_certain_it_is_and_the_rolling_verdict_follows():
    for method in ("weighted", "vote", "product", "stacking"):
        agreed = fuse(scores(text=0.9, audio=0.85, visual=0.9), method)
        split = fuse(scores(text=0.95, audio=None, visual=0.05), method)
        assert agreed.certainty > 0.5 and not agreed.uncertain, method
        assert split.uncertain and split.disagreement > 0.8 and "disagree" in split.doubts[0], method
        assert split.to_json()["uncertain"] is True and split.to_json()["doubts"] == split.doubts
    nothing = fuse(scores(text=None, audio=None, visual=None))
    assert nothing.certainty is None and not nothing.uncertain
    rolling = RollingSentiment(half_life_s=4.0)
    rolling.update(0.9, 0.0, 0.8)
    assert not rolling.uncertain
    rolling.update(0.9, 4.0, 0.0)  # a window whose modalities pulled apart: the rolling certainty halves
    assert rolling.certainty == pytest.approx(0.4) and not rolling.uncertain
    rolling.update(0.9, 12.0, 0.0)
    assert rolling.certainty == pytest.approx(0.1) and rolling.uncertain


def test_protocol_round_trip_and_request_validation():
    message = WindowMessage("s1", 0, 0.0, 4.0, {"text": ModalityScore.of(0.8).to_json()},
                            {"score": 0.8}, {"score": 0.8}, "hello")
    parsed = parse_message(message.dumps())
    assert parsed == message and json.loads(message.dumps())["v"] == 1
    assert parse_request('{"type": "start", "source": "a.mp4"}')["source"] == "a.mp4"
    for bad in ('[]', '{"type": "start"}', '{"type": "subscribe", "stream": "../x"}', 'nope', b'{}',
                '{"type": "start", "source": "a", "realtime": "yes"}', "x" * 70_000):
        with pytest.raises(ProtocolError):
            parse_request(bad)
