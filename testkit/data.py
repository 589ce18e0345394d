"""Where the real test data is (../shared/data beside the repository; never shipped with it)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
VIDEOS = DATA / "videos"

REQUIRE_DATA = os.environ.get("VIDSENT_REQUIRE_DATA") == "1"  # CI: real data must be there, no test may skip for it

# what the speech recordings in ../shared/data/speech say, word for word
TRANSCRIPTS = {
    "two_cities.flac": (
        "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
        "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, it "
        "was the season of Darkness, it was the spring of hope, it was the winter of despair, we had everything "
        "before us, we had nothing before us, we were all going direct to Heaven, we were all going direct the "
        "other way, in short, the period was so far like the present period, that some of its noisiest "
        "authorities insisted on its being received, for good or for evil, in the superlative degree of "
        "comparison only."
    ),
    "beckett.flac": "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.",
}


def need_data(*parts: str) -> Path:
    """The path of real test data under ../shared/data; the test skips (fails under VIDSENT_REQUIRE_DATA=1) when it
    is absent."""
    import pytest  # here, not above: the benchmarks import testkit without needing pytest

    path = DATA.joinpath(*parts)
    if not path.exists():
        message = f"real test media not found at {path} (the repo never ships it; CI has ../shared/data)"
        if REQUIRE_DATA:
            pytest.fail(message + " and VIDSENT_REQUIRE_DATA=1")
        pytest.skip(message)
    return path
