"""The dashboard with speech in several languages, in a real browser: Debian's Chromium, headless, driven by
Playwright for Python. A server on testkit's fake engine serves the page; the page's websocket is routed through
Playwright to it (hello, list and media come from the server; testkit/dashboard_page.py), and the test plays a
stream's messages into the page as the server sends them: window, transcript, status and end carrying the protocol's
language fields, with Spanish, Arabic and Chinese speech, each message checked against the schema of the protocol's
types first; and a verdict whose modalities disagree, which the badge shows as uncertain rather than as a confident
grade.

The Chinese needs a CJK font (fonts-noto-cjk, in .ci/apt-packages.txt); DejaVu Sans (fonts-dejavu-core) has the
Arabic. Screenshots go to out/test-artifacts/ (or $VIDSENT_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import re

import pytest

from protocol import EndMessage, StatusMessage, TranscriptMessage, WindowMessage
from testkit.dashboard_page import played_dashboard

STREAM = "polyglot"
PANEL = f".stream-panel[data-stream='{STREAM}']"

ENGLISH = "I really liked the beginning."
SPANISH = "Me encantó la película, de verdad."
SPANISH_TOO = "¡Qué final tan bonito!"
ARABIC = "كان الفيلم رائعا جدا"
CHINESE = "这部电影让我非常开心。"
MARKUP = "<b>hmm</b><img src=x onerror=alert(1)>"
VADER_SKIPPED = "VADER is English-only"
A_NUMBER = re.compile(r"\d")


@pytest.fixture
async def dashboard():
    """The dashboard of a server on the fake engine (no model loads), open in headless Chromium, watching STREAM."""
    async with played_dashboard(STREAM) as page:
        yield page


# ------------------------------------------------------------------ a stream's messages, with their languages

def verdict(score: float | None, reason: str | None = None, details: dict | None = None) -> dict:
    if score is None:
        return {"score": None, "label": None, "available": False, "reason": reason, "confidence": 0.0}
    label = "positive" if score >= 0.6 else "negative" if score <= 0.4 else "neutral"
    out = {"score": score, "label": label, "available": True, "reason": None, "confidence": 0.8}
    if details is not None:
        out["details"] = details
    return out


def text_details(head: str, language: str | None, **more) -> dict:
    return {"head": head, "language": language, "words": 6, "key_words": [],
            "probs": {"negative": 0.1, "neutral": 0.2, "positive": 0.7}, **more}


def window(index: int, language: str | None, p: float | None, text: dict, words: str = "") -> WindowMessage:
    """Window `index` (4 s, 2 s hop) with audio and the text verdict `text`; no video."""
    t0 = 2.0 * index
    return WindowMessage(
        STREAM, index, t0, t0 + 4.0,
        modalities={"text": text, "audio": verdict(0.62, details={"rms_db": -21.0, "active_db": -17.5,
                                                                 "voiced_ratio": 0.7}),
                    "visual": verdict(None, "no video track")},
        fused={"score": 0.66, "label": "positive", "graded": "Positive", "method": "weighted",
               "used": ["text", "audio"] if text["available"] else ["audio"], "missing": ["visual"]},
        rolling={"score": 0.64, "label": "positive", "graded": "Positive", "half_life_s": 6.0},
        transcript=words, latency_s=0.4, language=language, language_p=p)


def phrase(t_start: float, text: str, language: str | None, p: float | None, final: bool = True):
    words = [{"start": t_start, "end": t_start + 1.5, "word": text, "p": 0.9}] if final else []
    return TranscriptMessage(STREAM, t_start, t_start + 1.5, text, final, words, language=language, language_p=p)


def status(media_time: float, language: dict | None, detail: str = "", **more) -> StatusMessage:
    return StatusMessage(STREAM, "running", media_time=media_time, detail=detail, language=language, **more)


def current(language: str, p: float, since: float, previous: str | None) -> dict:
    return {"language": language, "p": p, "since": since, "previous": previous, "outside": None}


def end(languages: dict[str, float], transcript: str) -> EndMessage:
    return EndMessage(STREAM, {
        "reason": "eof", "source": None, "duration": 16.0, "windows": 7, "score": 0.66, "label": "positive",
        "graded": "Positive",
        "fused": {"score": 0.66, "label": "positive", "graded": "Positive", "method": "weighted",
                  "used": ["text", "audio"], "missing": ["visual"]},
        "rolling": {"score": 0.64, "label": "positive", "graded": "Positive", "half_life_s": 6.0},
        "modalities": {"text": verdict(0.7), "audio": verdict(0.62), "visual": verdict(None, "no video track")},
        "dropped_frames": 0, "transcript": transcript, "people": [], "languages": languages})


SOURCE = {"kind": "file", "name": "polyglot.mp4", "has_audio": True, "has_video": False, "duration": 16.0,
          "width": None, "height": None, "fps": None}


async def platform_fonts(page, selector: str) -> list[dict]:
    """The fonts Chromium drew the text of the element at `selector` with: [{familyName, glyphCount, ...}]."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("DOM.enable")
    await cdp.send("CSS.enable")
    root = (await cdp.send("DOM.getDocument", {"depth": 0}))["root"]["nodeId"]
    node = (await cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector}))["nodeId"]
    fonts = (await cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node}))["fonts"]
    await cdp.detach()
    return fonts


# ------------------------------------------------------------------ tests

async def test_speech_in_spanish_arabic_and_chinese(dashboard):
    page, panel = dashboard.page, dashboard.page.locator(PANEL)
    badge, note = panel.locator(".lang-badge"), panel.locator(".status .language-note")
    vader = f"{PANEL} .ev-card[data-modality='text'] .vader-line .v"
    head = f"{PANEL} .ev-card[data-modality='text'] [data-head]"

    dashboard.play(status(0.0, None, source=SOURCE))
    dashboard.play(status(0.5, current("en", 0.99, 0.3, None), "language changed to English"),
                   phrase(0.3, ENGLISH, "en", 0.99),
                   window(0, "en", 0.99, verdict(0.72, details=text_details("text", "en", vader=0.5106)), ENGLISH))
    await dashboard.windows(1)
    assert await badge.text_content() == "EN · 99%"
    assert await dashboard.text(head) == "English head"
    assert await dashboard.text(vader) == "+0.51"  # English speech still has its VADER score

    # Spanish: the multilingual head, no VADER but the reason why
    dashboard.play(status(4.5, current("es", 0.97, 4.1, "en"), "language changed to Spanish"),
                   phrase(4.1, SPANISH, "es", 0.97), phrase(6.0, SPANISH_TOO, "es", 0.95),
                   window(1, "es", 0.97, verdict(0.81, details=text_details(
                       "text_multilingual", "es", vader_skipped=VADER_SKIPPED,
                       key_words=[{"word": "encantó", "effect": 0.12}])), SPANISH))
    await dashboard.windows(2)
    await page.wait_for_function("sel => document.querySelector(sel).textContent === 'ES · 97%'",
                                 arg=f"{PANEL} .lang-badge", timeout=5000)
    assert "Spanish" in await badge.get_attribute("title")
    assert await badge.get_attribute("data-language") == "es"
    assert await note.text_content() == "language: Spanish since 4.1 s (was English)"
    assert await dashboard.text(head) == "multilingual head"
    assert await dashboard.text(vader) == VADER_SKIPPED
    assert "Spanish" in await dashboard.text(f"{PANEL} .ev-card[data-modality='text']")
    spanish = panel.locator(".transcript .committed[lang='es']")
    assert await spanish.evaluate_all("els => els.map(e => e.dir)") == ["ltr", "ltr"]
    assert await spanish.locator(".phrase-text").all_text_contents() == [SPANISH, SPANISH_TOO]
    # each phrase has its tag, the language's first of a run shows it
    assert await spanish.locator(".lang-tag").all_text_contents() == ["ES", "ES"]
    assert [await tag.is_visible() for tag in await spanish.locator(".lang-tag").all()] == [True, False]
    assert "Spanish (es), 95%" in await spanish.nth(1).get_attribute("title")

    # Arabic: right to left, right-aligned; a VADER number a server sent anyway is not shown
    dashboard.play(status(8.6, current("ar", 0.91, 8.2, "es"), "language changed to Arabic"),
                   phrase(8.2, ARABIC, "ar", 0.91),
                   window(2, "ar", 0.91, verdict(0.77, details=text_details("text_multilingual", "ar", vader=0.42)),
                          ARABIC))
    await dashboard.windows(3)
    await page.wait_for_function("sel => document.querySelector(sel).textContent === 'AR · 91%'",
                                 arg=f"{PANEL} .lang-badge", timeout=5000)
    assert await note.text_content() == "language: Arabic since 8.2 s (was Spanish)"
    assert await dashboard.text(vader) == "—"
    assert not A_NUMBER.search(await dashboard.text(f"{PANEL} .ev-card[data-modality='text'] .vader-line"))
    arabic = panel.locator(".transcript .committed[lang='ar']")
    assert await arabic.get_attribute("dir") == "rtl"
    assert await arabic.locator(".phrase-text").text_content() == ARABIC
    layout = await arabic.evaluate("""el => {
        const run = el.closest('.t-run'), style = getComputedStyle(el);
        const box = run.getBoundingClientRect(), r = el.getBoundingClientRect();
        return {direction: style.direction, textAlign: style.textAlign, runDir: run.dir,
                fromRight: box.right - r.right, fromLeft: r.left - box.left, width: r.width};
    }""")
    assert layout["direction"] == "rtl" and layout["textAlign"] == "right" and layout["runDir"] == "rtl", layout
    assert layout["width"] > 50 and abs(layout["fromRight"]) <= 2 and layout["fromLeft"] > 100, layout

    # Chinese: the text exactly as sent, in the CJK font stack (its guess first, then the committed phrase)
    dashboard.play(status(12.9, current("zh", 0.88, 12.6, "ar"), "language changed to Chinese"),
                   phrase(12.6, CHINESE[:4], "zh", 0.88, final=False))
    await page.wait_for_function("sel => document.querySelector(sel).textContent.length === 4",
                                 arg=f"{PANEL} .transcript .pending[lang='zh']", timeout=5000)
    dashboard.play(phrase(12.6, CHINESE, "zh", 0.88),
                   window(3, "zh", 0.88, verdict(0.74, details=text_details(
                       "text_multilingual", "zh", vader_skipped=VADER_SKIPPED)), CHINESE))
    await dashboard.windows(4)
    chinese = panel.locator(".transcript .committed[lang='zh'] .phrase-text")
    assert await chinese.text_content() == CHINESE
    assert (await chinese.text_content()).encode() == CHINESE.encode()  # byte for byte
    assert await chinese.evaluate("el => el.childNodes.length === 1 && el.firstChild.nodeType === Node.TEXT_NODE")
    family = await chinese.evaluate("el => getComputedStyle(el).fontFamily")
    assert family.startswith('"Noto Sans CJK SC"'), family
    assert await dashboard.text(head) == "multilingual head"
    assert await dashboard.text(vader) == VADER_SKIPPED
    assert await badge.text_content() == "ZH · 88%" and "Chinese" in await badge.get_attribute("title")
    # one block per language, in the order they were spoken
    runs = await panel.locator(".transcript .t-run").evaluate_all("els => els.map(e => [e.lang, e.dir])")
    assert runs == [["en", "ltr"], ["es", "ltr"], ["ar", "rtl"], ["zh", "ltr"]], runs
    await dashboard.screenshot("dashboard-languages.png")

    # the end: each language's share of the speech
    dashboard.play(end({"en": 0.08, "es": 0.38, "ar": 0.34, "zh": 0.2},
                       " ".join([ENGLISH, SPANISH, SPANISH_TOO, ARABIC, CHINESE])))
    await page.wait_for_selector(f"{PANEL}[data-ended='true'] .summary", timeout=5000)
    shares = await panel.locator(".summary [data-fact='languages'] .lang-share").evaluate_all(
        "els => els.map(e => [e.dataset.language, e.textContent])")
    assert shares == [["es", "Spanish 38%"], ["ar", "Arabic 34%"], ["zh", "Chinese 20%"], ["en", "English 8%"]], shares
    await dashboard.screenshot("dashboard-languages-ended.png")
    state = await page.evaluate(f"() => window.vidsent.streams['{STREAM}'].language")
    assert state == current("zh", 0.88, 12.6, "ar")
    assert not dashboard.errors, dashboard.errors

    # last, as it needs a font installed: what Chromium drew the Chinese with (DevTools), every glyph from the CJK
    # font, none a fallback's box
    fonts = await platform_fonts(page, f"{PANEL} .transcript .committed[lang='zh'] .phrase-text")
    if not any(f["familyName"].startswith("Noto Sans CJK") for f in fonts) and not os.environ.get(
            "VIDSENT_REQUIRE_BROWSER"):
        pytest.skip(f"no CJK font to draw Chinese with (apt-get install fonts-noto-cjk); Chromium used {fonts}")
    assert fonts and all(f["familyName"].startswith("Noto Sans CJK") for f in fonts), fonts
    assert sum(f["glyphCount"] for f in fonts) == len(CHINESE), fonts
    # and they have width: full-width ideographs, about one em each (a missing font's boxes are narrower)
    width = await chinese.evaluate("""el => {
        const range = document.createRange(); range.selectNodeContents(el);
        return range.getBoundingClientRect().width / parseFloat(getComputedStyle(el).fontSize);
    }""")
    assert len(CHINESE) - 0.5 <= width <= len(CHINESE) + 0.5, width


async def test_no_speech_and_a_server_without_languages(dashboard):
    """A window of a server that sends no language fields keeps its VADER score; with no identified speech
    (language null everywhere) no language shows and nothing fails."""
    page, panel = dashboard.page, dashboard.page.locator(PANEL)
    older = window(0, None, None, verdict(0.55, details={"vader": 0.3, "words": 3}), "one two three").to_json()
    del older["language"], older["language_p"]
    dashboard.play(status(0.0, None, source=SOURCE), older)
    await dashboard.windows(1)
    assert await dashboard.text(f"{PANEL} .ev-card[data-modality='text'] .vader-line .v") == "+0.30"

    dashboard.play(status(2.0, None), phrase(1.0, MARKUP, None, None),
                   window(1, None, None, verdict(None, "no speech")),
                   status(4.0, {"language": None, "p": None, "since": 0.0, "previous": None, "outside": None}))
    await dashboard.windows(2)
    await page.wait_for_function("id => window.vidsent.streams[id].lastStatus.media_time === 4", arg=STREAM,
                                 timeout=5000)
    assert await panel.locator(".lang-badge").is_hidden()
    assert await panel.locator(".status .language-note").text_content() == ""
    assert await dashboard.text(f"{PANEL} .ev-card[data-modality='text'] .vader-line .v") == "—"
    assert await dashboard.text(f"{PANEL} .ev-card[data-modality='text'] [data-language]") == "—"
    unknown = panel.locator(".transcript .committed").last
    assert await unknown.get_attribute("lang") == "" and await unknown.get_attribute("dir") == "auto"
    assert await unknown.locator(".lang-tag").count() == 0
    assert await unknown.locator(".phrase-text").text_content() == MARKUP  # text, never markup
    assert await unknown.locator("b, img").count() == 0
    dashboard.play(end({}, ""))
    await page.wait_for_selector(f"{PANEL}[data-ended='true'] .summary", timeout=5000)
    assert await dashboard.text(f"{PANEL} .summary [data-fact='languages'] dd") == "no speech"
    assert not dashboard.errors, dashboard.errors


async def test_a_verdict_whose_modalities_disagree_shows_as_uncertain_not_as_a_grade(dashboard):
    panel = dashboard.page.locator(PANEL)
    badge = panel.locator(".badge").first
    doubts = ["the modalities disagree: text 0.91, audio 0.12"]
    split = window(0, "en", 0.99, verdict(0.91, details=text_details("text", "en", vader=0.6)), ENGLISH)
    split.modalities["audio"] = verdict(0.12)
    split.fused.update(score=0.52, label="neutral", graded="Positive", certainty=0.0, disagreement=0.79,
                       uncertain=True, doubts=doubts)
    split.rolling.update(score=0.52, label="neutral", certainty=0.0, uncertain=True)
    dashboard.play(split)
    await dashboard.windows(1)
    assert await badge.get_attribute("data-uncertain") == "true"
    assert await badge.locator(".grade").text_content() == "uncertain (Positive)"
    assert await badge.get_attribute("data-graded") == ""  # no confident grade colour
    await dashboard.screenshot("dashboard-uncertain.png")

    agreed = window(1, "en", 0.99, verdict(0.85, details=text_details("text", "en", vader=0.6)), ENGLISH)
    agreed.fused.update(certainty=0.6, disagreement=0.1, uncertain=False, doubts=[])
    agreed.rolling.update(certainty=0.5, uncertain=False)
    dashboard.play(agreed)
    await dashboard.windows(2)
    assert await badge.locator(".grade").text_content() == "Positive"
    assert await badge.get_attribute("data-uncertain") == "false"

    summary = end({"en": 1.0}, ENGLISH)
    summary.summary["fused"].update(certainty=0.05, disagreement=0.7, uncertain=True, doubts=doubts)
    dashboard.play(summary)
    facts = panel.locator(".summary .facts [data-fact='certainty'] dd")
    await facts.wait_for(timeout=10000)
    assert "uncertain: the modalities disagree" in await facts.text_content()
    assert await panel.locator(".summary .badge .grade").text_content() == "uncertain (Positive)"
    assert dashboard.errors == []
