"""Who is speaking, live (issue #32's voices in the pipeline): each committed word and transcript segment carries
its speaker, each window who spoke in it, the end summary every voice found. Real recordings through the real
pipeline and voice encoder; the voice track alone on real speech with a fake clock."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from engine import PipelineConfig
from engine.analyze import analyze_file
from engine.voices import VoiceTrack, follow_recording
from media import SAMPLE_RATE
from testkit.data import need_data
from testkit.media import write_flac


def decode(path) -> np.ndarray:
    from faster_whisper.audio import decode_audio

    return np.asarray(decode_audio(str(path), sampling_rate=SAMPLE_RATE), dtype=np.float32)


@pytest.mark.models
def test_the_voice_track_follows_a_two_person_dialogue_step_by_step():
    """Endgame's Nagg and Nell fed a second at a time, as the pipeline feeds it: two speakers taking turns."""
    from models.voices import load_voice_encoder

    audio = decode(need_data("speech", "endgame_nagg_nell.flac"))
    track = VoiceTrack(load_voice_encoder("cpu").embed)
    follow_recording(track, audio)
    found = track.speakers()
    assert [s["speaker"] for s in found] == [0, 1] and all(s["seconds"] > 3 for s in found)
    turns = [s.speaker for s in track.tracker.segments if s.speaker is not None]
    assert sum(a != b for a, b in zip(turns, turns[1:])) >= 6


@pytest.mark.models
def test_speakers_of_other_languages_are_one_voice_each_and_told_apart():
    """The voice encoder does not depend on the language: a German, a Spanish, a French and a Mandarin reader
    (tests/data/speech) are one voice each, and one after the other four voices, each stretch its reader's."""
    from pathlib import Path

    from models.voices import load_voice_encoder

    embed = load_voice_encoder("cpu").embed
    clips = [decode(path) for path in sorted((Path(__file__).parent / "data" / "speech").glob("*.flac"))]
    assert len(clips) == 4
    for audio in clips:
        track = VoiceTrack(embed)
        follow_recording(track, audio)
        assert [s["speaker"] for s in track.speakers()] == [0]
    track = VoiceTrack(embed)
    follow_recording(track, np.concatenate(clips))
    assert [s["speaker"] for s in track.speakers()] == [0, 1, 2, 3]
    bounds = np.cumsum([0.0] + [len(audio) / SAMPLE_RATE for audio in clips])
    for reader, (t0, t1) in enumerate(zip(bounds, bounds[1:])):
        heard = {k for a, b, k in track.segments_in(t0, t1) if min(b, t1) - max(a, t0) > 0.5 * (b - a)}
        assert heard == {reader}, (reader, track.segments_in(t0, t1))


@pytest.mark.models
def test_a_replayed_dialogue_gives_words_windows_and_summary_their_speakers(engine_with_voices, tmp_path):
    engine = engine_with_voices
    audio = decode(need_data("speech", "endgame_nagg_nell.flac"))
    path = tmp_path / "dialogue.flac"
    write_flac(path, audio)
    messages = []
    from engine.pipeline import StreamPipeline
    from stream.sources import FileSource

    async def run():
        source = FileSource(path, realtime=False, sample_fps=2.0)
        return await StreamPipeline("d", source, engine, PipelineConfig(), emit=messages.append).run()

    end = asyncio.run(run())
    speakers = end.summary["speakers"]
    assert [s["speaker"] for s in speakers] == [0, 1]
    words = [w for m in messages if m.type == "transcript" and m.final for w in m.words]
    assert words and sum(w["speaker"] is not None for w in words) >= 0.7 * len(words)
    assert {w["speaker"] for w in words} >= {0, 1}
    segments = [m for m in messages if m.type == "transcript" and m.final]
    assert {m.speaker for m in segments} >= {0, 1}
    windows = [m for m in messages if m.type == "window"]
    assert any(len(w.speakers) == 2 for w in windows)  # a window across a change of turn holds both voices
    assert all(s["seconds"] <= w.t_end - w.t_start + 1e-6 for w in windows for s in w.speakers)


@pytest.mark.models
def test_one_reader_is_one_speaker_and_a_silent_clip_has_none(engine_with_voices):
    engine = engine_with_voices
    result = asyncio.run(analyze_file(need_data("speech", "two_cities.flac"), engine, PipelineConfig()))
    spoken = [w for w in result["windows"] if w["speakers"]]
    assert spoken and all({s["speaker"] for s in w["speakers"]} == {0} for w in spoken)
    assert {p["id"] for w in result["windows"] for p in w["people"]} == {"voice-0"}, "one reader is one person"
    silent = asyncio.run(analyze_file(need_data("videos", "pyfeat_no_face.mp4"), engine, PipelineConfig()))
    assert all(not w["speakers"] and w["people"] == [] for w in silent["windows"]), "no voice, no face: nobody"
    assert silent["people"] == []


def test_a_step_never_looks_back_further_than_a_few_seconds_however_long_the_silence():
    """Without speech the chunker's point stays behind: the VAD must not go over ever more audio (nor reach audio
    the ring no longer holds)."""
    track = VoiceTrack(lambda samples: np.ones(256, np.float32))
    silence = np.zeros(SAMPLE_RATE, np.float32)
    for second in range(1, 121):
        start = track.look_from(float(second))
        assert second - start <= 6.0
        track.step(silence[:int((second - start) * SAMPLE_RATE)], start, float(second))
    assert track.speakers() == [] and track.until == 120.0


@pytest.mark.models
@pytest.mark.parametrize("clip", [("musicvideos", "Neutral", "70.mp4"), ("musicvideos", "Excited", "43.mp4"),
                                  ("speech", "endgame_nagg_nell.flac")])
def test_a_streams_vad_hears_what_the_whole_recording_does(clip):
    """Fed a second at a time over overlapping buffers, as the voice track feeds it, the stream's VAD finds the
    regions faster-whisper's VAD finds over the whole recording: a song stays (nearly) without speech. Restarted on
    each few seconds instead, it hears speech in the music."""
    from speech.speakers import VAD_MIN_SILENCE_S, VAD_THRESHOLD, streaming_speech
    from speech.vad import detect_speech

    audio = decode(need_data(*clip))
    whole = detect_speech(audio, 0.0, VAD_MIN_SILENCE_S, VAD_THRESHOLD).regions
    vad, found = streaming_speech(), []
    end = int(len(audio) / SAMPLE_RATE)
    for second in range(1, end + 1):  # each second: the regions of the last 5 s, which have settled but the last
        start = max(0.0, second - 5.0)
        regions = vad(audio[int(start * SAMPLE_RATE):second * SAMPLE_RATE], start)
        found += [(round(a, 3), round(b, 3)) for a, b in regions if a > start + 0.05 and b < second - 1.0]
    expected = [(a, b) for a, b in whole if b < end - 1.0 and a > 0.05 and b - a < 2.9]  # whole in one 5 s buffer
    found = sorted(r for r in set(found) if r[1] - r[0] < 2.9)
    assert len(found) == len(expected), (found, expected)
    assert all(abs(a - x) < 0.05 and abs(b - y) < 0.05 for (a, b), (x, y) in zip(found, expected))
    if clip[0] == "musicvideos":
        restarted = sum(b - a for s in range(5, end) for a, b in detect_speech(
            audio[(s - 5) * SAMPLE_RATE:s * SAMPLE_RATE], s - 5.0, VAD_MIN_SILENCE_S, VAD_THRESHOLD).regions
            if a >= s - 1.0)
        assert sum(b - a for a, b in whole) < 1.5 < restarted
