"""The scorers as a Ray Serve application (engine/ray_scorers.py): the replica's batching keeps every request's own
results in order, and streams scored through a local Ray give exactly the in-process verdicts."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from engine.ray_scorers import (
    ScoreCall,
    ScoringRequest,
    analyze_requests,
    score_requests,
)
from media import Word
from models.base import ModalityScore
from models.scoring import ScorerSet
from stream.windows import Window
from testkit.data import need_data

MODEL_FIXTURES = ("ray_scorers",)  # these load real models: conftest marks their tests `models`
TOLERANCE = 1.01e-4  # the messages round scores to 4 decimals: one rounding step apart is still the same score


# -- the batching logic, without Ray --------------------------------------------------------------------------

class Recording:
    """A fake scorer: the score says which window it is (its index), and every call is recorded."""

    def __init__(self, modality: str, calls: list):
        self.modality, self.calls = modality, calls

    def score_batch(self, windows):
        self.calls.append((self.modality, [w.index for w in windows]))
        return [ModalityScore.of(w.index / 100, details={"transcript": w.transcript}) for w in windows]


class CountingFrames:
    def __init__(self):
        self.calls = []

    def analyze(self, images):
        self.calls.append(len(images))
        return [float(im[0, 0, 0]) for im in images]


def fake_scorers(calls: list) -> ScorerSet:
    return ScorerSet(Recording("text", calls), Recording("audio", calls), Recording("visual", calls), CountingFrames())


def request(indices, has_audio, has_video, modalities=("text", "audio", "visual"), scored=None):
    windows = [ScoringRequest(i, f"words {i}", np.zeros(16, np.float32), [], []) for i in indices]
    return ScoreCall(windows, [has_audio] * len(windows), [has_video] * len(windows), [modalities] * len(windows),
                     scored)


def test_a_batch_of_mixed_tracks_gives_each_request_its_own_results_in_order():
    calls: list = []
    requests = [request([1, 2], True, True), request([3], False, True), request([4], True, False),
                request([5, 6], True, True), request([7], False, True)]
    results = score_requests(fake_scorers(calls), requests)

    assert [len(r) for r in results] == [2, 1, 1, 2, 1]
    for call, scores in zip(requests, results):
        for window, has_audio, has_video, row in zip(call.windows, call.has_audio, call.has_video, scores):
            assert list(row) == ["text", "audio", "visual"]
            for modality, present in (("text", has_audio), ("audio", has_audio), ("visual", has_video)):
                if present:
                    assert row[modality].score == pytest.approx(window.index / 100)
                    assert row[modality].details["transcript"] == window.transcript
                else:
                    assert not row[modality].available
                    assert row[modality].reason == f"no {'video' if modality == 'visual' else 'audio'} track"
    # one ScorerSet.score for the whole batch: each modality scores every window that has its track, in one call
    assert calls == [("text", [1, 2, 4, 5, 6]), ("audio", [1, 2, 4, 5, 6]), ("visual", [1, 2, 3, 5, 6, 7])]


def test_requests_for_the_media_and_for_the_text_share_one_batch_and_merge_the_earlier_scores():
    calls: list = []
    early = ModalityScore.of(0.9)
    requests = [request([1], True, True, ("audio", "visual")),
                request([2], True, True, ("text",), [{"audio": early, "visual": early}]),
                request([3], True, False, ("audio", "visual")),
                request([4], True, True, ("text",), [{"audio": early, "visual": early}])]
    one, two, three, four = score_requests(fake_scorers(calls), requests)

    assert list(one[0]) == ["audio", "visual"] and list(three[0]) == ["audio", "visual"]
    assert three[0]["visual"].reason == "no video track"
    assert list(two[0]) == ["text", "audio", "visual"] and two[0]["text"].score == pytest.approx(0.02)
    assert two[0]["audio"].score == four[0]["visual"].score == pytest.approx(0.9)  # the earlier scores, kept
    # one ScorerSet.score for all of them: each modality scores the windows that ask for it and have its track
    assert calls == [("text", [2, 4]), ("audio", [1, 3]), ("visual", [1])]


def test_frames_of_a_batch_are_analysed_in_one_call_and_split_back():
    frames = CountingFrames()
    image = lambda v: np.full((2, 2, 3), v, np.uint8)  # noqa: E731
    requests = [[image(1), image(2)], [], [image(3)]]
    assert analyze_requests(frames, requests) == [[1.0, 2.0], [], [3.0]]
    assert frames.calls == [3]
    assert analyze_requests(frames, [[]]) == [[]] and frames.calls == [3]


def test_a_request_carries_only_what_the_scorers_read():
    window = Window(3, 2.0, 6.0, np.ones(8, np.float32), ["analysis"], [Word(2.5, 3.0, " hello", 0.9)])
    req = ScoringRequest.of(window)
    assert (req.index, req.transcript, req.frames) == (3, "hello", ["analysis"])
    assert req.speech_spans == window.speech_spans == [(0.5, 1.0)]
    assert req.audio is window.audio


def test_bad_addresses_and_missing_ray_are_one_clear_line(monkeypatch):
    import builtins

    from engine.ray_scorers import RayScorersError, connect_ray_scorers

    with pytest.raises(RayScorersError, match="expected local, auto or ray://HOST:PORT"):
        connect_ray_scorers("http://example")
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(RayScorersError, match=r"pip install 'ray\[serve\]==2.60.0'"):
        connect_ray_scorers("auto")


# -- through a real local Ray ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_scorers():
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install 'ray[serve]==2.60.0')")
    from engine.ray_scorers import connect_ray_scorers

    started = time.monotonic()
    client = connect_ray_scorers("auto", device="cpu")
    print(f"Ray scorers deployed in {time.monotonic() - started:.1f} s")
    yield client
    client.close(shutdown_app=True)


def assert_same_windows(local: dict, remote: dict) -> None:
    assert remote.get("error") == local.get("error")
    assert remote["transcript"] == local["transcript"]
    assert len(remote["windows"]) == len(local["windows"]) > 0
    for mine, theirs in zip(local["windows"], remote["windows"]):
        assert (theirs["index"], theirs["t_start"], theirs["t_end"]) == (mine["index"], mine["t_start"], mine["t_end"])
        for modality, score in mine["modalities"].items():
            other = theirs["modalities"][modality]
            assert (other["available"], other["reason"]) == (score["available"], score["reason"]), modality
            if score["score"] is not None:
                assert other["score"] == pytest.approx(score["score"], abs=TOLERANCE), modality
        fused, other = mine["fused"], theirs["fused"]
        assert (other["used"], other["missing"], other["method"]) == (fused["used"], fused["missing"], fused["method"])
        if fused["score"] is not None:
            assert other["score"] == pytest.approx(fused["score"], abs=TOLERANCE)
    assert remote["score"] == pytest.approx(local["score"], abs=TOLERANCE)


def test_concurrent_streams_on_ray_score_exactly_as_in_process(engine, ray_scorers):
    from engine import Engine, PipelineConfig, analyze_file

    paths = [need_data("videos", "vna_mosi_2.6.mp4"), need_data("videos", "vna_original_2.mp4"),
             need_data("videos", "pyfeat_single_face.jpg")]  # the still image: video only, batched beside the others
    config = PipelineConfig()
    local = [asyncio.run(analyze_file(path, engine, config)) for path in paths]
    # one Engine per stream, as separate ingest servers would be: their windows meet in the replica's batches
    ingest = [Engine(scorers=ray_scorers, transcriber=engine.transcriber) for _ in paths]

    async def all_at_once():
        return await asyncio.gather(*(analyze_file(path, eng, config) for path, eng in zip(paths, ingest)))

    try:
        remote = asyncio.run(all_at_once())
    finally:
        for eng in ingest:
            eng.close()
    for mine, theirs in zip(local, remote):
        assert_same_windows(mine, theirs)
    stats = ray_scorers.handle.stats.remote().result(timeout_s=30)
    print(f"replica batches: {stats}")
    # every modality of every window was scored on Ray exactly once (a replay sends the windows that are ready
    # together in one request; a window's audio and visual may come before its words, its text after them)
    windows = sum(len(r["windows"]) for r in remote)
    assert stats["modalities"] == {"text": windows, "audio": windows, "visual": windows}
    assert stats["score"]["requests"] <= stats["score"]["items"] <= 2 * windows


def test_an_existing_application_with_the_same_settings_is_reused(ray_scorers):
    from engine.ray_scorers import connect_ray_scorers

    started = time.monotonic()
    again = connect_ray_scorers("auto", device="cpu")
    assert time.monotonic() - started < 5.0  # no redeploy, no model load
    assert again.settings == ray_scorers.settings
