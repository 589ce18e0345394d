"""`vidsent analyze FILE --report PATH` (issue #33, item 4): the analyst's page of a file. The page builder on
hand-made results (escaping, right-to-left speech, certainty present or not, where the pages go), then one real
`vidsent analyze --report DIR` on a spoken clip, a clip without audio or faces and a text file, each page opened
from disk in Debian's Chromium (as tests/test_dashboard.py drives it): no console error, nothing fetched, the chart
has the file's windows, the transcript its words, the verdict shown; the two bad files' pages say why.

Screenshots go to out/test-artifacts/ (or $VIDSENT_TEST_ARTIFACTS)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from commands.report import build_report, new_text, report_paths, uplot_assets
from speech import normalise_text
from testkit.browser import Browser, need_browser
from testkit.data import ROOT, need_data
from testkit.media import remux_without_audio
from testkit.servers import VIDSENT

MODEL_FIXTURES = ("analysed",)  # conftest marks `models` the tests that use it: it runs `vidsent analyze`
HOSTILE = "</script><script>window.pwned=1</script><img src=x onerror=alert(1)>"


def verdict(score, available=True, reason=None, details=None):
    label = None if score is None else ("positive" if score >= 0.6 else "negative" if score <= 0.4 else "neutral")
    out = {"score": score, "label": label, "available": available, "reason": reason, "confidence": 0.5}
    if details is not None:
        out["details"] = details
    return out


def window(index, transcript, text, language="en", key_words=()):
    t0 = 2.0 * index
    w = {"index": index, "t_start": t0, "t_end": t0 + 4.0, "transcript": transcript, "language": language,
         "language_p": 0.97,
         "modalities": {"text": verdict(text, text is not None, None if text is not None else "no speech",
                                        {"key_words": [{"word": k, "effect": e} for k, e in key_words]}),
                        "audio": verdict(None, False, "no audio track"),
                        "visual": verdict(0.7, details={"frames": 8, "frames_with_faces": 0})},
         "fused": {"score": 0.5, "label": "neutral", "graded": "Positive", "method": "weighted",
                   "used": ["text", "visual"], "missing": ["audio"]},
         "rolling": {"score": 0.5, "label": "neutral", "graded": "Positive", "half_life_s": 6.0}}
    return w


def result(windows, **extra):
    return {"file": f"/tmp/{HOSTILE}.mp4", "duration": 8.0, "label": "neutral", "score": 0.52, "graded": "Positive",
            "rolling": {"score": 0.5}, "modalities": {"text": verdict(0.3, details={"windows": 2}),
                                                      "audio": verdict(None, False, "no audio track"),
                                                      "visual": verdict(0.7, details={"windows": 3})},
            "transcript": "", "languages": {"ar": 0.6, "en": 0.4}, "people": [], "windows": windows, **extra}


def script_json(page: str) -> dict:
    block = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert block and "</" not in block.group(1)
    return json.loads(block.group(1))


def test_page_escapes_user_text_and_keeps_the_speech_direction():
    windows = [window(0, f"Hello {HOSTILE} there", 0.8, key_words=[("Hello", 0.2)]),
               window(1, "there مرحبا بكم", 0.2, language="ar", key_words=[("مرحبا", -0.3)]),
               window(2, "", None, language=None)]
    page = build_report(result(windows))
    assert "<script>window.pwned" not in page and "<img src=x" not in page  # the transcript and file name escaped
    assert page.count("<script") == 3  # the chart's JSON, uPlot, the page's own code: nothing else
    data = script_json(page)
    assert data["x"] == [4.0, 6.0, 8.0] and data["text"] == [0.8, 0.2, None]
    assert data["missing"]["audio"] == ["no audio track"] * 3 and data["missing"]["text"][2] == "no speech"
    assert data["scale"]["labels"] == {"positive": 0.6, "negative": 0.4}  # models.fusion's, as hello.scale
    assert '<p lang="ar" dir="rtl">' in page and "مرحبا بكم" in page
    assert ">there مرحبا" not in page  # "there" was the previous window's last word: not repeated
    assert "Copyright (c) 2022 Leon Sorokin" in page and "export {" not in page  # uPlot inline, licence kept
    own = page.replace(uplot_assets()[1], "")  # the page less uPlot, whose comments cite web pages
    assert "default-src 'none'" in page and not re.search(r"(https?:)?//[a-z]", own.replace("http-equiv", ""))
    assert "audio</strong> missing 0:00–0:08 (3 of 3 windows): <span class=\"reason\">no audio track" in page
    assert "agree ·" in page  # no window has a certainty: the agreement and confidence the windows carry
    assert "No faces were found in the 24 frames" in page
    assert re.search(r'class="kw down"[^>]*lang="ar" dir="rtl">مرحبا', page)  # key words, strongest first
    assert page.index("مرحبا<small") < page.index("Hello<small")


def test_page_shows_how_sure_each_verdict_was():
    windows = [window(0, "fine", 0.7), window(1, "fine then", 0.7)]
    windows[1]["fused"].update(certainty=0.08, disagreement=0.61, uncertain=True,
                               doubts=["the modalities disagree: text 0.90, visual 0.20"])
    page = build_report(result(windows, rolling={"score": 0.5, "certainty": 0.3, "uncertain": False}))
    assert "<th>certainty</th>" in page
    assert "certainty 0.08 · disagreement 0.61 <span class=\"pill uncertain\">uncertain</span>" in page
    assert "the modalities disagree: text 0.90, visual 0.20" in page
    assert "<dt>certainty (rolling, at the end)</dt><dd>0.30</dd>" in page
    assert page.count("<td>—</td>") >= 1  # the window without a certainty (a history from before the field)
    assert "<th>agreement · confidence</th>" in page  # beside it, what every window carries


def test_a_file_without_windows_gets_a_page_that_says_why():
    page = build_report(result([], error={"code": "not_media", "message": f"not a media file: {HOSTILE}"},
                               label=None, score=None, graded=None, duration=0.0, languages={}))
    assert "This file could not be analysed:" in page and "[not_media]" in page and "<script>window" not in page
    assert "No windows: there is nothing to draw." in page and script_json(page)["x"] == []


def test_overlapping_windows_add_only_their_new_words():
    assert new_text("it was the best of", "best of times it was") == "times it was"
    assert new_text("", "hello") == "hello" and new_text("a b", "c d") == "c d"
    assert new_text("我们今天很好", "很好明天见") == "明天见"  # a script without spaces: by characters


def test_where_the_pages_go(tmp_path):
    assert report_paths(str(tmp_path / "one.html"), ["a/clip.mp4"]) == [tmp_path / "one.html"]
    assert report_paths(str(tmp_path), ["a/clip.mp4"]) == [tmp_path / "clip.html"]  # an existing folder
    assert report_paths(str(tmp_path / "pages"), ["a/clip.mp4", "b/clip.mp4", "x.mkv"]) == [
        tmp_path / "pages" / "clip.html", tmp_path / "pages" / "clip-2.html", tmp_path / "pages" / "x.html"]
    with pytest.raises(ValueError, match="names one page, but 2 files were given: name a folder"):
        report_paths(str(tmp_path / "report.html"), ["a.mp4", "b.mp4"])


# -- the real thing --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """`vidsent analyze --report DIR --json` on a spoken clip with a face (12.3 s), a clip with neither audio nor
    faces (3.9 s) and a text file: one run, one model load."""
    need_browser()  # before the minute of analysis the pages are for
    clip = need_data("videos", "vna_original_2.mp4")
    folder = tmp_path_factory.mktemp("report")
    silent = remux_without_audio(need_data("videos", "pyfeat_no_face.mp4"), folder / "no_audio_no_faces.mp4")
    notes = folder / "notes.mp4"
    notes.write_text("not a video at all\n")
    pages, out_json = folder / "pages", folder / "out.json"
    run = subprocess.run([*VIDSENT, "analyze", str(clip), str(silent), str(notes), "--report", str(pages),
                          "--json", str(out_json)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 1, run.stderr  # the text file failed; the others did not
    assert "Traceback" not in run.stdout + run.stderr
    results = {r["file"]: r for r in json.loads(out_json.read_text())}
    return {"clip": results[str(clip)], "silent": results[str(silent)], "notes": results[str(notes)],
            "pages": {"clip": pages / "vna_original_2.html", "silent": pages / "no_audio_no_faces.html",
                      "notes": pages / "notes.html"}, "stdout": run.stdout}


class Page(Browser):
    """A headless Chromium, cut off the network, on a page opened from disk."""

    def __init__(self, path):
        super().__init__(viewport=(1280, 900), offline=True)
        self.path = path

    async def __aenter__(self):
        await super().__aenter__()
        await self.page.goto(self.path.as_uri(), wait_until="load")
        return self

    async def texts(self, selector: str) -> list[str]:
        return await self.page.eval_on_selector_all(selector, "els => els.map((e) => e.textContent)")

    def fetched_elsewhere(self) -> list[str]:
        return [url for url in self.requests if url != self.path.as_uri() and not url.startswith("data:")]


async def test_the_page_of_a_spoken_clip_in_a_real_browser(analysed):
    need_browser()
    clip, path = analysed["clip"], analysed["pages"]["clip"]
    assert f"wrote {path}" in analysed["stdout"]
    async with Page(path) as p:
        await p.page.wait_for_function("window.vidsentReport && window.vidsentReport.points > 0")
        assert await p.page.evaluate("window.vidsentReport.points") == len(clip["windows"]) == 6
        assert await p.page.locator("#timeline canvas").count() == 1
        assert (await p.texts("#verdict .badge .label")) == [clip["label"]]
        assert (await p.texts("#verdict .badge .graded")) == [clip["graded"]]
        # each window's certainty, beside the agreement of its modalities
        headers = await p.texts("#windows th")
        assert "certainty" in headers and "agreement · confidence" in headers
        # the transcript: every word of the file once, though each word is in two overlapping windows
        heard = " ".join(await p.texts("#transcript .seg .words"))
        assert normalise_text(heard) == normalise_text(clip["transcript"]), heard
        assert all(w in "".join(normalise_text(heard)) for w in ("sugarcoat", "frustrated", "endofthefilm")), heard
        assert await p.page.locator("#key-words .kw").count() >= 3
        faces = p.page.locator("#faces figure.face img[data-kind='face']")
        assert await faces.count() >= 1
        assert await faces.first.evaluate("img => img.complete && img.naturalWidth > 0")
        await p.screenshot("report-file.png")
        assert p.errors == [] and p.fetched_elsewhere() == []


async def test_the_pages_of_bad_files_say_why(analysed):
    need_browser()
    silent, notes = analysed["silent"], analysed["notes"]
    assert notes["windows"] == [] and notes["error"]["code"] == "not_media"
    async with Page(analysed["pages"]["notes"]) as p:
        problem = " ".join(await p.texts("#problem"))
        assert "could not be analysed" in problem and "[not_media]" in problem, problem
        assert "No windows" in " ".join(await p.texts("#timeline-section"))
        await p.screenshot("report-not-media.png")
        assert p.errors == [] and p.fetched_elsewhere() == []
    async with Page(analysed["pages"]["silent"]) as p:
        await p.page.wait_for_function("window.vidsentReport && window.vidsentReport.points > 0")
        assert await p.page.evaluate("window.vidsentReport.points") == len(silent["windows"]) >= 1
        gaps = " ".join(await p.texts("#timeline-section .gaps li"))
        assert "audio missing" in gaps and "no audio track" in gaps, gaps
        assert "No faces were found" in " ".join(await p.texts("#faces"))
        assert "No words were heard" in " ".join(await p.texts("#transcript"))
        await p.screenshot("report-no-audio-no-faces.png")
        assert p.errors == [] and p.fetched_elsewhere() == []
