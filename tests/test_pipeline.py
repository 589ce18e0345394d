"""The live pipeline on real media: windows cover the media, missing modalities are named, transcripts are right."""

from __future__ import annotations

import asyncio
import re

import pytest

from engine import PipelineConfig, StreamPipeline
from protocol import (
    EndMessage,
    ErrorMessage,
    StatusMessage,
    TranscriptMessage,
    WindowMessage,
)
from stream.sources import FileSource
from testkit.data import need_data
from testkit.media import remux_without_audio, with_silent_audio


def run_pipeline(engine, path, realtime=False, **config):
    messages = []
    source = FileSource(path, realtime=realtime)
    pipeline = StreamPipeline("t", source, engine, PipelineConfig(**config), emit=messages.append)
    end = asyncio.run(pipeline.run())
    return messages, end


def windows_of(messages):
    return [m for m in messages if isinstance(m, WindowMessage)]


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def wer(reference: str, hypothesis: str) -> float:
    ref, hyp = words(reference), words(hypothesis)
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[-1] / len(ref)


TWO_CITIES = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness, "
    "it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, it was the season of "
    "Darkness, it was the spring of hope, it was the winter of despair, we had everything before us, we had nothing "
    "before us, we were all going direct to Heaven, we were all going direct the other way, in short, the period was "
    "so far like the present period, that some of its noisiest authorities insisted on its being received, for good "
    "or for evil, in the superlative degree of comparison only.")


def test_two_cities_live_transcript_is_accurate_and_never_repeats(engine):
    """At real-time pace, as a live stream: committed words match the reference (WER <= 10%), each emitted once."""
    path = need_data("speech", "two_cities.flac")
    messages, end = run_pipeline(engine, path, realtime=True)
    finals = [m for m in messages if isinstance(m, TranscriptMessage) and m.final]
    committed = " ".join(m.text for m in finals)
    assert wer(TWO_CITIES, committed) <= 0.10, committed
    starts = [w["start"] for m in finals for w in m.words]
    assert starts == sorted(starts), "words must be committed in time order, each once"
    ends = [w["end"] for m in finals for w in m.words]
    assert all(s >= e - 0.05 for s, e in zip(starts[1:], ends[:-1])), "committed words overlap: something repeated"
    # no phrase of 6+ words twice unless the reference says it twice
    hyp, ref = words(committed), " ".join(words(TWO_CITIES))
    for i in range(len(hyp) - 6):
        phrase = " ".join(hyp[i:i + 6])
        assert committed_count(hyp, phrase) <= max(1, ref.count(phrase)), phrase
    assert end.summary["reason"] == "eof"
    assert windows_of(messages)[-1].t_end == pytest.approx(end.summary["duration"], abs=0.05)


def committed_count(tokens: list[str], phrase: str) -> int:
    n = len(phrase.split())
    return sum(" ".join(tokens[i:i + n]) == phrase for i in range(len(tokens) - n + 1))


def test_mosi_positive_clip_ends_positive(engine):
    path = need_data("videos", "vna_mosi_2.6.mp4")
    messages, end = run_pipeline(engine, path)
    last = windows_of(messages)[-1]
    assert last.rolling["score"] > 0.5 and last.rolling["label"] == "positive"
    assert "impressive" in end.summary["transcript"].lower()
    assert end.summary["label"] == "positive"


def test_video_without_audio_marks_audio_and_text_missing(engine, tmp_path):
    src = need_data("videos", "vna_original_2.mp4")
    path = remux_without_audio(src, tmp_path / "no_audio.mp4")
    messages, end = run_pipeline(engine, path)
    windows = windows_of(messages)
    assert windows
    for w in windows:
        assert w.modalities["audio"] == {"score": None, "label": None, "available": False,
                                         "reason": "no audio track", "confidence": 0.0}
        assert w.modalities["text"]["reason"] == "no audio track"
        assert w.modalities["visual"]["available"] and 0.0 <= w.modalities["visual"]["score"] <= 1.0
        assert w.fused["used"] == ["visual"] and w.fused["missing"] == ["text", "audio"]
    assert windows[-1].t_end == pytest.approx(end.summary["duration"], abs=0.6)
    running = next(m for m in messages if isinstance(m, StatusMessage) and m.source)
    assert running.source["has_audio"] is False and "no audio" in running.detail


def test_silent_video_marks_audio_and_text_missing(engine, tmp_path):
    src = need_data("videos", "vna_original_2.mp4")
    path = with_silent_audio(src, tmp_path / "silent.mp4")
    messages, end = run_pipeline(engine, path)
    windows = windows_of(messages)
    assert windows
    assert not [m for m in messages if isinstance(m, TranscriptMessage)], "silence must produce no words"
    for w in windows:
        assert w.modalities["audio"]["available"] is False and w.modalities["audio"]["reason"] == "silence"
        assert w.modalities["text"]["available"] is False and w.modalities["text"]["reason"] == "no speech"
        assert w.modalities["visual"]["available"]


def test_audio_only_file_marks_visual_missing(engine):
    path = need_data("speech", "beckett.flac")
    messages, end = run_pipeline(engine, path)
    windows = windows_of(messages)
    assert [w.t_start for w in windows] == [0.0, 2.0, 4.0, pytest.approx(end.summary["duration"] - 4.0, abs=0.01)]
    assert all(w.modalities["visual"]["reason"] == "no video track" for w in windows)
    assert "fail better" in end.summary["transcript"].lower()


def test_still_image_is_one_window_of_visual_only(engine):
    path = need_data("videos", "pyfeat_single_face.jpg")
    messages, end = run_pipeline(engine, path)
    (window,) = windows_of(messages)
    assert window.modalities["visual"]["available"] and window.modalities["visual"]["score"] > 0.6
    assert window.modalities["visual"]["details"]["faces_found"] == 1


@pytest.mark.parametrize("name,content,code", [
    ("empty.mp4", b"", "empty_file"),
    ("random.mp4", bytes(range(256)) * 400, "not_media"),
    ("notes.txt", b"this is a text file, not a video\n" * 20, "not_media"),
])
def test_bad_files_end_with_a_clear_error(engine, tmp_path, name, content, code):
    path = tmp_path / name
    path.write_bytes(content)
    messages, end = run_pipeline(engine, path)
    errors = [m for m in messages if isinstance(m, ErrorMessage)]
    assert [e.code for e in errors] == [code]
    assert isinstance(messages[-1], EndMessage) and end.summary["reason"] == "error"
    assert not windows_of(messages)


def test_truncated_video_still_gives_windows(engine, tmp_path):
    """A download cut off at two thirds: with its index at the end (as this clip is written) nothing can be read, a
    clear not_media error; with its index first (faststart) the part that arrived is analysed."""
    import subprocess

    src = need_data("videos", "vna_original_2.mp4")
    faststart = tmp_path / "faststart.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c", "copy", "-movflags", "+faststart",
                    str(faststart)], check=True, timeout=60)
    for original, expect_windows in ((src, False), (faststart, True)):
        data = original.read_bytes()
        path = tmp_path / f"truncated-{original.name}"
        path.write_bytes(data[: len(data) * 2 // 3])
        messages, end = run_pipeline(engine, path)
        errors = [m.code for m in messages if isinstance(m, ErrorMessage)]
        if expect_windows:
            assert errors == [] and end.summary["reason"] == "eof", errors
            assert len(windows_of(messages)) >= 3 and 5.0 <= end.summary["duration"] <= 10.0, end.summary
        else:
            assert errors == ["not_media"] and end.summary["reason"] == "error" and not windows_of(messages)


def test_directory_and_missing_file(engine, tmp_path):
    for path, code in ((tmp_path, "not_a_file"), (tmp_path / "nope.mp4", "not_found")):
        messages, end = run_pipeline(engine, path)
        assert [m.code for m in messages if isinstance(m, ErrorMessage)] == [code]
