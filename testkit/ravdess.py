"""RAVDESS speech (../shared/data/ravdess) made into conversations with known turns: the speaker benchmarks' and
tests' material (actors 19-24 are held out of everything the voice models were fitted on)."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from media import SAMPLE_RATE
from speech.speakers import speech_regions

# RAVDESS's suggested speaker-independent split: the voice encoder's session compensation (models/voices.py) and the
# audio head were fitted on actors 1-18, so conversations are built from actors 19-24 (19, 21, 23 men; 20, 22, 24
# women)
TEST_ACTORS = tuple(range(19, 25))


def load_audio(path: Path) -> np.ndarray:
    from faster_whisper.audio import decode_audio

    return np.asarray(decode_audio(str(path), sampling_rate=SAMPLE_RATE), dtype=np.float32)


def vad_regions(audio: np.ndarray) -> list[tuple[float, float]]:
    """The VAD's speech regions as the live pipeline's voice track finds them."""
    return speech_regions(audio)


class Ravdess:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.rows = list(csv.DictReader(open(root / "labels.csv")))
        self.by_actor: dict[int, list[dict]] = defaultdict(list)
        for r in self.rows:
            self.by_actor[int(r["actor"])].append(r)
        self.gender = {a: rs[0]["gender"] for a, rs in self.by_actor.items()}
        self._speech: dict[str, np.ndarray] = {}

    def speech(self, path: str) -> np.ndarray:
        """The clip cut to its speech (first to last VAD region), ±0.1 s."""
        if path not in self._speech:
            audio = load_audio(self.root / path)
            regions = vad_regions(audio)
            a, b = (regions[0][0], regions[-1][1]) if regions else (0.0, len(audio) / SAMPLE_RATE)
            self._speech[path] = audio[max(0, int((a - 0.1) * SAMPLE_RATE)):int((b + 0.1) * SAMPLE_RATE)]
        return self._speech[path]

    def actors(self, sexes: tuple[str, ...], rng: np.random.Generator, pool: Sequence[int] = TEST_ACTORS
               ) -> list[int]:
        chosen: list[int] = []
        for sex in sexes:
            pool_ = [a for a, g in sorted(self.gender.items()) if g == sex and a not in chosen and a in pool]
            chosen.append(int(rng.choice(pool_)))
        return chosen

    def conversation(self, actors: list[int], turns: int, rng: np.random.Generator, emotions: str = "all",
                     emotion_of: Mapping[int, str] | None = None) -> tuple[np.ndarray, list[tuple[float, float, int]]]:
        """(audio, [(start, end, actor) per turn]): the actors take turns (never the same one twice running).
        emotions: "all" (each turn's drawn from the eight) or "calm" (neutral or calm); emotion_of: one emotion per
        actor instead (a happy and an angry one)."""
        pieces: list[np.ndarray] = []
        truth: list[tuple[float, float, int]] = []
        t = 0.0
        who = int(rng.integers(len(actors)))
        for _ in range(turns):
            clips = self.by_actor[actors[who]]
            if emotion_of is not None:
                clips = [r for r in clips if r["emotion"] == emotion_of[actors[who]]]
            elif emotions == "calm":
                clips = [r for r in clips if r["emotion"] in ("neutral", "calm")]
            first = clips[int(rng.integers(len(clips)))]
            same = [r for r in clips if r["emotion"] == first["emotion"] and r["intensity"] == first["intensity"]
                    and r is not first]
            turn = [self.speech(first["path"])]
            if rng.random() < 0.5 and same:
                turn += [np.zeros(int(0.2 * SAMPLE_RATE), np.float32),
                         self.speech(same[int(rng.integers(len(same)))]["path"])]
            audio = np.concatenate(turn)
            truth.append((t, t + len(audio) / SAMPLE_RATE, actors[who]))
            gap = np.zeros(int(rng.uniform(0.3, 0.8) * SAMPLE_RATE), np.float32)
            pieces += [audio, gap]
            t += (len(audio) + len(gap)) / SAMPLE_RATE
            who = (who + 1 + int(rng.integers(len(actors) - 1))) % len(actors) if len(actors) > 1 else who
        return np.concatenate(pieces), truth
