"""Who speaks when: the online speaker tracker and the speech chunker on synthetic voices (model-free), and the voice
encoder with the tracker on real recordings (`models`): two RAVDESS actors taking turns, one reader."""

from __future__ import annotations

import numpy as np
import pytest

from engine.voices import VoiceTrack, follow_recording
from media import SAMPLE_RATE
from models.voices import partial_starts
from speech.speakers import SpeakerTracker, SpeechChunker
from testkit.data import need_data

DIM = 256


def voices(n: int, seed: int = 0) -> np.ndarray:
    """n random, nearly orthogonal unit voices."""
    v = np.random.default_rng(seed).normal(size=(n, DIM))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def stretch(voice: np.ndarray, rng: np.random.Generator, noise: float = 0.9) -> np.ndarray:
    """One stretch of a voice: the voice plus noise, unit length. noise 0.9 gives two stretches of one voice a
    cosine of about 0.55, as two 1.5 s stretches of one calm speaker have (compensated d-vectors), and two voices'
    stretches about 0."""
    v = voice + rng.normal(scale=noise / np.sqrt(DIM), size=DIM)
    return v / np.linalg.norm(v)


def feed(tracker: SpeakerTracker, order: list[int], centres: np.ndarray, seed: int = 1, seconds: float = 1.5,
         t0: float = 0.0) -> list[int | None]:
    rng = np.random.default_rng(seed)
    out = []
    for i, who in enumerate(order):
        start = t0 + i * (seconds + 0.5)
        out.append(tracker.add(start, start + seconds, stretch(centres[who], rng)))
    return out


def final_ids(tracker: SpeakerTracker) -> list[int | None]:
    return [s.speaker for s in tracker.segments]


# ------------------------------------------------------------------------------------------------- model-free
def test_two_voices_taking_turns_get_two_stable_ids():
    centres = voices(2)
    order = [0, 0, 1, 1, 0, 1, 0, 0, 1, 0, 1, 1, 0, 1]
    tracker = SpeakerTracker()
    live = feed(tracker, order, centres)
    ids = final_ids(tracker)
    assert len(tracker.speakers) == 2
    assert None not in ids
    # one id per voice, the first voice first
    assert {ids[i] for i, w in enumerate(order) if w == 0} == {0}
    assert {ids[i] for i, w in enumerate(order) if w == 1} == {1}
    # a new voice's first stretch waits for a second like it; every later stretch gets its id as it comes
    assert live[0] is None and live[1] == 0 and live[2] is None and live[3] == 1
    assert live[4:] == ids[4:]


def test_a_third_voice_later_gets_a_new_id_and_the_old_ones_stay():
    centres = voices(3)
    tracker = SpeakerTracker()
    feed(tracker, [0, 1, 0, 1, 0, 1], centres)
    before = final_ids(tracker)
    feed(tracker, [2, 0, 2, 1, 2], centres, seed=2, t0=20.0)
    ids = final_ids(tracker)
    assert ids[:6] == before == [0, 1, 0, 1, 0, 1]
    assert ids[6:] == [2, 0, 2, 1, 2]
    assert sorted(tracker.speakers) == [0, 1, 2]


def test_ids_are_never_reused():
    """Two speakers that turn out to be one voice are merged into the older id; the younger id is retired and a
    new voice after that gets a fresh id."""
    centres = voices(3)
    rng = np.random.default_rng(0)
    tracker = SpeakerTracker()
    feed(tracker, [0, 0, 0], centres)
    # the same voice, shifted for a while (another microphone, a cold): a second speaker at first …
    shifted = centres[0] * 0.25 + voices(1, seed=8)[0]
    shifted /= np.linalg.norm(shifted)
    for i in range(3):
        tracker.add(10.0 + 2 * i, 11.5 + 2 * i, stretch(shifted, rng, noise=0.3))
    assert sorted(tracker.speakers) == [0, 1]
    # … until the voice comes back halfway and the two centroids come together
    between = centres[0] + shifted
    for i in range(14):
        tracker.add(20.0 + 2 * i, 21.5 + 2 * i, stretch(between / np.linalg.norm(between), rng, noise=0.3))
    assert sorted(tracker.speakers) == [0] and tracker.merged == {1: 0}
    assert 1 not in {s.speaker for s in tracker.segments}
    feed(tracker, [2, 2], centres, t0=60.0)
    assert sorted(tracker.speakers) == [0, 2]


def test_short_stretches_get_the_nearest_voice_only_when_it_is_clear():
    centres = voices(2)
    tracker = SpeakerTracker()
    feed(tracker, [0, 1, 0, 1, 0, 1], centres)
    rng = np.random.default_rng(5)
    clear = tracker.add(30.0, 30.6, stretch(centres[1], rng, noise=0.5))
    between = centres[0] + centres[1]
    ambiguous = tracker.add(31.0, 31.6, between / np.linalg.norm(between))
    nobody = tracker.add(32.0, 32.6, voices(1, seed=9)[0])
    assert clear == 1
    assert ambiguous is None
    assert nobody is None
    assert len(tracker.speakers) == 2  # short stretches never make a speaker


def test_scattered_noise_makes_no_speaker():
    """Stretches unlike each other (music, noise, a cough each time different) never pair up into a speaker."""
    tracker = SpeakerTracker()
    for i, v in enumerate(voices(12, seed=4)):
        assert tracker.add(i * 2.0, i * 2.0 + 1.5, v) is None
    assert tracker.speakers == {}


def test_one_odd_stretch_does_not_split_a_speaker():
    centres = voices(1)
    rng = np.random.default_rng(0)
    tracker = SpeakerTracker()
    feed(tracker, [0] * 6, centres)
    odd = centres[0] * 0.3 + voices(1, seed=7)[0]  # a shout: unlike the speaker's centroid, unlike anything else
    assert tracker.add(20.0, 21.5, odd / np.linalg.norm(odd)) is None
    assert tracker.add(22.0, 23.5, stretch(centres[0], rng)) == 0
    assert len(tracker.speakers) == 1


def test_speaker_of_gives_words_the_speaker_covering_them_and_follows_confirmation():
    centres = voices(2)
    tracker = SpeakerTracker()
    rng = np.random.default_rng(0)
    assert tracker.add(0.0, 1.5, stretch(centres[0], rng)) is None
    assert tracker.speaker_of(0.2, 0.5) is None  # pending: not enough evidence yet
    tracker.add(1.5, 3.0, stretch(centres[0], rng))
    assert tracker.speaker_of(0.2, 0.5) == 0  # confirmed by the second stretch: the first is the speaker's too
    tracker.add(4.0, 5.5, stretch(centres[1], rng))
    tracker.add(5.5, 7.0, stretch(centres[1], rng))
    assert tracker.speaker_of(1.4, 1.6) == 0
    assert tracker.speaker_of(2.8, 4.3) == 1  # 0.3 s of speaker 1 against 0.2 s of speaker 0
    assert tracker.speaker_of(5.0, 5.0) == 1  # a point
    assert tracker.speaker_of(3.2, 3.8) is None  # a pause
    assert tracker.speakers_in(0.0, 10.0) == pytest.approx({0: 3.0, 1: 3.0})
    tracker.forget_before(4.0)
    assert tracker.speaker_of(0.2, 0.5) is None and tracker.speaker_of(5.0, 6.0) == 1


def test_tracker_refuses_bad_input():
    tracker = SpeakerTracker()
    tracker.add(5.0, 6.5, voices(1)[0])
    with pytest.raises(ValueError, match="time order"):
        tracker.add(1.0, 2.5, voices(1)[0])
    with pytest.raises(ValueError, match="end after"):
        tracker.add(7.0, 7.0, voices(1)[0])
    with pytest.raises(ValueError, match="finite"):
        tracker.add(8.0, 9.0, np.full(DIM, np.nan))


def test_chunker_cuts_closed_regions_evenly_and_open_ones_leaving_a_tail():
    chunker = SpeechChunker()  # 1.5 s pieces, a 0.5 s tail, closed 0.3 s after its end
    # a closed region of 4 s: two pieces of 2 s; a 0.2 s blip: not embedded
    assert chunker.push([(0.0, 4.0), (5.0, 5.2)], until=6.0) == [(0.0, 2.0), (2.0, 4.0)]
    # an open region: a 1.5 s piece once more than 2 s of it is known, the rest waits
    assert chunker.push([(6.5, 8.0)], until=8.0) == []
    assert chunker.push([(6.5, 8.6)], until=8.6) == [(6.5, 8.0)]
    assert chunker.push([(6.5, 8.9)], until=8.9) == []
    # the same regions again (a sliding VAD buffer) give nothing new; the region closes: its tail comes out whole
    assert chunker.push([(0.0, 4.0), (6.5, 9.0)], until=9.4) == [(8.0, 9.0)]
    # a short region not yet closed waits, and may still grow
    assert chunker.push([(10.0, 11.0)], until=11.2) == []
    assert chunker.push([(10.0, 11.2), (11.4, 12.0)], until=12.5) == [(10.0, 11.2), (11.4, 12.0)]


def test_the_voice_track_runs_a_recording_as_the_pipeline_feeds_it():
    centres = voices(2)
    rng = np.random.default_rng(0)
    audio = np.zeros(20 * SAMPLE_RATE, np.float32)
    regions = [(0.5, 3.5), (4.0, 7.0), (8.0, 11.0), (12.0, 15.0), (16.0, 19.0)]
    who = [0, 1, 0, 1, 0]

    for (a, b), w in zip(regions, who):  # each region's samples say whose voice it is
        audio[int(a * SAMPLE_RATE):int(b * SAMPLE_RATE)] = w + 1

    def embed(samples: np.ndarray) -> np.ndarray:
        assert len(set(samples.tolist())) == 1  # never across a pause
        return stretch(centres[int(samples[0]) - 1], rng)

    def vad(samples: np.ndarray, start: float) -> list[tuple[float, float]]:  # the regions inside the buffer
        end = start + len(samples) / SAMPLE_RATE
        return [(max(a, start), min(b, end)) for a, b in regions if b > start and a < end]

    track = VoiceTrack(embed, find_speech=vad)
    live = follow_recording(track, audio)
    tracker = track.tracker
    assert [(a, b) for a, b, _ in live] == [(0.5, 2.0), (2.0, 3.5), (4.0, 5.5), (5.5, 7.0), (8.0, 9.5),
                                            (9.5, 11.0), (12.0, 13.5), (13.5, 15.0), (16.0, 17.5), (17.5, 19.0)]
    assert [tracker.speaker_of(a + 0.1, b - 0.1) for a, b in regions] == who


def test_partials_are_cut_as_resemblyzer_cuts_them():
    # VoiceEncoder.compute_partial_slices(n, rate=1.3, min_coverage=0.75) of resemblyzer 0.1.4, checked against it
    assert partial_starts(4000) == [0]
    assert partial_starts(25600) == [0]
    assert partial_starts(30000) == [0]
    assert partial_starts(40000) == [0, 77]
    assert partial_starts(52800) == [0, 77, 154]
    assert partial_starts(100000) == [0, 77, 154, 231, 308, 385, 462]


# ------------------------------------------------------------------------------------------- the real model
RAVDESS_TURNS = [  # (actor, clip): a man and a woman, neutral and calm sentences, not simply alternating
    (1, "Actor_01/03-01-01-01-01-01-01.flac"), (1, "Actor_01/03-01-02-01-02-01-01.flac"),
    (2, "Actor_02/03-01-01-01-01-01-02.flac"), (1, "Actor_01/03-01-02-01-01-02-01.flac"),
    (2, "Actor_02/03-01-02-01-02-01-02.flac"), (2, "Actor_02/03-01-01-01-02-02-02.flac"),
    (1, "Actor_01/03-01-01-01-02-02-01.flac"), (2, "Actor_02/03-01-02-01-01-02-02.flac"),
]


@pytest.fixture(scope="module")
def encoder():
    from models.voices import load_voice_encoder

    return load_voice_encoder("cpu")


def decode(path) -> np.ndarray:
    from faster_whisper.audio import decode_audio

    return np.asarray(decode_audio(str(path), sampling_rate=SAMPLE_RATE), dtype=np.float32)


def vad(audio: np.ndarray) -> list[tuple[float, float]]:
    from speech.speakers import speech_regions

    return speech_regions(audio)


def ravdess_conversation() -> tuple[np.ndarray, list[tuple[float, float, int]]]:
    pieces, truth, t = [], [], 0.0
    for actor, path in RAVDESS_TURNS:
        audio = decode(need_data("ravdess", path))
        regions = vad(audio)
        speech = audio[int(max(0.0, regions[0][0] - 0.1) * SAMPLE_RATE):int((regions[-1][1] + 0.1) * SAMPLE_RATE)]
        truth.append((t, t + len(speech) / SAMPLE_RATE, actor))
        gap = np.zeros(int(0.5 * SAMPLE_RATE), np.float32)
        pieces += [speech, gap]
        t += (len(speech) + len(gap)) / SAMPLE_RATE
    return np.concatenate(pieces), truth


def tracked(audio: np.ndarray, encoder) -> SpeakerTracker:
    """The speakers of a recording as the live voice track finds them (engine/voices.py, fed as the pipeline does)."""
    track = VoiceTrack(encoder.embed)
    follow_recording(track, audio)
    return track.tracker


def share_right(tracker: SpeakerTracker, regions, truth, mapping: dict[int, int]) -> float:
    """Share of the VAD speech inside the turns whose speaker, mapped to an actor, is the turn's actor."""
    right = total = 0.0
    for a, b, actor in truth:
        for ra, rb in regions:
            lo, hi = max(a, ra), min(b, rb)
            t = lo
            while t < hi:
                step = min(0.05, hi - t)
                sid = tracker.speaker_of(t, t + step)
                total += step
                right += step * (sid is not None and mapping.get(sid) == actor)
                t += step
    return right / total


@pytest.mark.models
def test_two_ravdess_actors_taking_turns_are_told_apart(encoder):
    audio, truth = ravdess_conversation()
    regions = vad(audio)
    tracker = tracked(audio, encoder)
    assert len(tracker.speakers) == 2
    # the speaker of each actor is the one that holds most of that actor's first turn
    first = {actor: tracker.speaker_of(a, b) for a, b, actor in reversed(truth)}
    mapping = {sid: actor for actor, sid in first.items()}
    assert len(mapping) == 2 and None not in mapping
    assert share_right(tracker, regions, truth, mapping) >= 0.9
    # sensitive to who speaks, not only to the turns: the voices swapped, or every turn given to the one who
    # spoke before (a tracker that only flips at pauses), are mostly wrong
    swapped = {sid: 3 - actor for sid, actor in mapping.items()}
    assert share_right(tracker, regions, truth, swapped) <= 0.1
    shifted = [(a, b, truth[i - 1][2] if i else truth[0][2]) for i, (a, b, _) in enumerate(truth)]
    assert share_right(tracker, regions, shifted, mapping) <= 0.7


@pytest.mark.models
def test_one_reader_stays_one_speaker(encoder):
    audio = decode(need_data("speech", "two_cities.flac"))
    tracker = tracked(audio, encoder)
    assert len(tracker.speakers) == 1
    attributed = sum(s.seconds for s in tracker.segments if s.speaker == 0)
    assert attributed >= 0.8 * sum(s.seconds for s in tracker.segments)


@pytest.mark.models
def test_voice_embeddings_are_unit_vectors_of_any_speech_length(encoder):
    rng = np.random.default_rng(0)
    audio = decode(need_data("ravdess", RAVDESS_TURNS[0][1]))
    long = encoder.embed(audio)
    short = encoder.embed(audio[SAMPLE_RATE:SAMPLE_RATE + SAMPLE_RATE // 2])  # 0.5 s: padded to one partial
    int16 = encoder.embed((audio * 32767).astype(np.int16))
    raw = encoder.embed(audio, raw=True)
    for v in (long, short, int16, raw):
        assert v.shape == (256,) and v.dtype == np.float32
        assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    assert float(long @ int16) > 0.999
    assert np.all(raw >= 0)  # resemblyzer's d-vectors: ReLU, then L2 norm
    batch = encoder.embed_many([audio, audio[: SAMPLE_RATE]])
    assert np.allclose(batch[0], long, atol=1e-5)
    with pytest.raises(ValueError, match="at least"):
        encoder.embed(rng.normal(size=1000).astype(np.float32))


@pytest.mark.models
def test_a_two_person_dialogue_gets_two_speakers_taking_turns(encoder):
    """Beckett's Endgame, Nagg and Nell: two voices, whose turns alternate (9 turns after the first)."""
    audio = decode(need_data("speech", "endgame_nagg_nell.flac"))
    tracker = tracked(audio, encoder)
    assert len(tracker.speakers) == 2
    turns = [s.speaker for s in tracker.segments if s.speaker is not None]
    changes = sum(a != b for a, b in zip(turns, turns[1:]))
    assert changes >= 6
