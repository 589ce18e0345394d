"""Ground truth for who feels what (issue #32): which found voice is which true speaker, which tracked face is in which
panel of a made conversation, and how often each person's verdict falls on their side. Shared by
tests/test_people_live.py and benchmarks/people.py."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np


def voice_truth(segments: Iterable[tuple[float, float, int]],
                truth: Sequence[tuple[float, float, Hashable]]) -> dict[int, Hashable]:
    """Each found voice → the true speaker its stretches overlap most ((start, end, speaker) turns)."""
    overlap: dict[int, dict[Hashable, float]] = {}
    for a, b, voice in segments:
        for t0, t1, who in truth:
            seconds = min(b, t1) - max(a, t0)
            if seconds > 0:
                overlap.setdefault(voice, {}).setdefault(who, 0.0)
                overlap[voice][who] += seconds
    return {voice: max(by, key=lambda k: by[k]) for voice, by in overlap.items()}


def face_panels(analyses: Iterable[Any], conversation: Any) -> dict[int, str]:
    """Each tracked face → the panel of the made conversation (testkit.talking_heads.Conversation.panel_of) its box
    lies in most often."""
    votes: dict[int, dict[str, int]] = {}
    for analysis in analyses:
        for face in analysis.faces:
            if face.person is None:
                continue
            panel = conversation.panel_of(face.box, analysis.image_size[1])
            votes.setdefault(face.person, {}).setdefault(panel, 0)
            votes[face.person][panel] += 1
    return {person: max(v, key=lambda k: v[k]) for person, v in votes.items()}


def sides_right(windows: Iterable[Any], positive_of: Mapping[int, bool], min_seconds: float = 0.5
                ) -> dict[int, dict[str, list[bool]]]:
    """For each voice with a known side (True: should score positive), per window where it spoke at least
    min_seconds: whether its person's voice (audio), fused and rolling scores lie on that side of 0.5 (available
    ones only)."""
    out: dict[int, dict[str, list[bool]]] = {}
    for window in windows:
        for person in window.people or []:
            voice = person["speaker"]
            if voice is None or voice not in positive_of or person["seconds"] < min_seconds:
                continue
            want = positive_of[voice]
            row = out.setdefault(voice, {"audio": [], "fused": [], "rolling": []})
            for key, verdict in (("audio", person["modalities"]["audio"]), ("fused", person["fused"]),
                                 ("rolling", person["rolling"])):
                if verdict.get("score") is not None:
                    row[key].append((verdict["score"] >= 0.5) == want)
    return out


def share(flags: Sequence[bool]) -> float:
    return float(np.mean(flags)) if len(flags) else float("nan")
