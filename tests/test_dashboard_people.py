"""The dashboard's people, in a real browser: Debian's Chromium, headless, driven by Playwright for Python, as in
tests/test_dashboard_language.py (testkit/dashboard_page.py: a server on testkit's fake engine serves the page; its
websocket is routed through the test, which plays a stream's messages into the page, each checked against the schema
of the protocol's types).

Two people: "person-1", a face with voice 0 bound to it and a thumbnail (a real JPEG), and "voice-1", a voice with no
face. Their rows (thumbnail or "voice only", name, rolling badge, modalities with the missing ones' reasons, a
sparkline), who speaks now (the latest window's, then the later committed words'), the transcript naming the face a
voice is bound to, a per-person alert and the end summary's people are checked in the DOM; a thumbnail that is no
data:image/jpeg URL is never shown. The screenshot goes to out/test-artifacts/dashboard-people.png."""

from __future__ import annotations

import base64
import io

import pytest

from protocol import AlertMessage, EndMessage, TranscriptMessage, WindowMessage
from testkit.dashboard_page import played_dashboard

STREAM = "people"
PANEL = f".stream-panel[data-stream='{STREAM}']"

NO_FACE = "no face: a voice only"
SILENT = "did not speak in this window"
HOSTILE = ["javascript:alert(1)", '"><img src=x onerror=alert(1)>', "data:image/svg+xml;base64,PHN2Zz4=",
           "data:image/jpeg;base64,<b>no</b>"]


@pytest.fixture
async def dashboard():
    """The dashboard of a server on the fake engine (no model loads), open in headless Chromium, watching STREAM."""
    async with played_dashboard(STREAM) as page:
        yield page


# ------------------------------------------------------------------ a stream's messages, with its people

def verdict(score: float | None, reason: str | None = None) -> dict:
    if score is None:
        return {"score": None, "label": None, "available": False, "reason": reason, "confidence": 0.0}
    return {"score": score, "label": label(score), "available": True, "reason": None, "confidence": 0.8}


def jpeg_url(colour: tuple[int, int, int] = (214, 140, 90)) -> str:
    """A tiny real JPEG of one colour, as the data: URL the server sends."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(out, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def graded(score: float) -> str:
    return "Positive" if score >= 0.5 else "Slight Negative" if score >= 0.35 else "Negative" if score >= 0.2 \
        else "Strong Negative"


def label(score: float) -> str:
    return "positive" if score >= 0.6 else "negative" if score <= 0.4 else "neutral"


def fused(score: float | None, used: list[str]) -> dict:
    missing = [m for m in ("text", "audio", "visual") if m not in used]
    if score is None:
        return {"score": None, "label": None, "graded": None, "method": "weighted", "used": [], "missing": missing,
                "certainty": None, "uncertain": False, "doubts": []}
    return {"score": score, "label": label(score), "graded": graded(score), "method": "weighted", "used": used,
            "missing": missing, "certainty": 0.5, "uncertain": False, "doubts": []}


def rolling(score: float, uncertain: bool = False) -> dict:
    return {"score": score, "label": label(score), "graded": graded(score), "half_life_s": 6.0, "certainty": 0.4,
            "uncertain": uncertain}


def face_person(spoke: float, text: float | None, audio: float | None, visual: float, roll: float,
                thumbnail: str | None = None) -> dict:
    """person-1: face track 1 with voice 0 bound to it."""
    mods = {"text": verdict(text) if text is not None else verdict(None, SILENT),
            "audio": verdict(audio) if audio is not None else verdict(None, SILENT),
            "visual": verdict(visual)}
    used = [m for m, v in mods.items() if v["available"]]
    out = {"id": "person-1", "person": 1, "speaker": 0, "seconds": spoke, "speaking": 0.87 if spoke else 0.1,
           "modalities": mods, "fused": fused(visual, used), "rolling": rolling(roll)}
    if thumbnail is not None:
        out["thumbnail"] = thumbnail
    return out


def voice_person(spoke: float, score: float, roll: float, uncertain: bool = False,
                 thumbnail: str | None = None) -> dict:
    """voice-1: voice 1, bound to no face."""
    out = {"id": "voice-1", "person": None, "speaker": 1, "seconds": spoke, "speaking": None,
           "modalities": {"text": verdict(score), "audio": verdict(score), "visual": verdict(None, NO_FACE)},
           "fused": fused(score, ["text", "audio"]), "rolling": rolling(roll, uncertain)}
    if thumbnail is not None:
        out["thumbnail"] = thumbnail
    return out


def window(index: int, people: list[dict] | None) -> WindowMessage:
    t0 = 2.0 * index
    speakers = [{"speaker": p["speaker"], "seconds": p["seconds"]} for p in people or []
                if p["speaker"] is not None and p["seconds"] > 0]
    return WindowMessage(
        STREAM, index, t0, t0 + 4.0,
        modalities={"text": verdict(0.7), "audio": verdict(0.6), "visual": verdict(0.66)},
        fused=fused(0.66, ["text", "audio", "visual"]), rolling=rolling(0.64), transcript="", latency_s=0.3,
        language="en", language_p=0.99, speakers=speakers, people=people)


def said(t_start: float, text: str, speaker: int) -> TranscriptMessage:
    words = [{"start": t_start, "end": t_start + 1.5, "word": text, "p": 0.9, "speaker": speaker}]
    return TranscriptMessage(STREAM, t_start, t_start + 1.5, text, True, words, language="en", language_p=0.99,
                             speaker=speaker)


def person_summary(pid: str, person: int | None, speaker: int | None, spoke: float, windows: int, score: float,
                   face: float | None) -> dict:
    used = ["text", "audio"] + (["visual"] if face is not None else [])
    return {"id": pid, "person": person, "speaker": speaker, "first_seen": 0.0, "last_seen": 12.0,
            "frames": 24 if person is not None else 0, "score": face, "top_emotion": "happy" if face else None,
            "seconds": spoke, "windows": windows,
            "modalities": {"text": verdict(score), "audio": verdict(score),
                           "visual": verdict(face) if face is not None else verdict(None, NO_FACE)},
            "fused": fused(score, used), "label": label(score),
            "timeline": [{"t": 4.0 + 2 * i, "score": score, "rolling": score} for i in range(windows)]}


# ------------------------------------------------------------------ tests

async def rows(page) -> list[dict]:
    return await page.locator(f"{PANEL} .person-row").evaluate_all("""els => els.map(e => ({
        id: e.dataset.id, name: e.querySelector('.p-name').textContent, speaking: e.dataset.speaking,
        stale: e.dataset.stale, graded: e.querySelector('.badge').dataset.graded,
        grade: e.querySelector('.badge .grade').textContent,
        img: e.querySelector('.p-thumb img') ? e.querySelector('.p-thumb img').getAttribute('src') : null,
        placeholder: (e.querySelector('.p-placeholder') || {}).textContent || null,
        points: Number(e.querySelector('svg.spark').dataset.points)}))""")


async def test_people_rows_speaking_now_transcript_alerts_and_summary(dashboard):
    page, panel = dashboard.page, dashboard.page.locator(PANEL)
    people = panel.locator(".people-section")
    now = people.locator(".speaking-now")
    assert await people.is_hidden()  # nothing tracked yet
    thumbnail = jpeg_url()

    # before any window binds voice 0, the transcript says "speaker 1"
    dashboard.play(said(0.5, "Hello there.", 0))
    await page.locator(f"{PANEL} .transcript .speaker-tag").wait_for(timeout=5000)
    assert await dashboard.text(f"{PANEL} .transcript .speaker-tag") == "speaker 1:"

    # window 0: person 1 (face, voice 0 bound, thumbnail) speaks; voice 1 (no face) is silent
    dashboard.play(window(0, [face_person(2.5, 0.8, 0.7, 0.72, 0.74, thumbnail),
                              voice_person(0.0, 0.5, 0.3, thumbnail=HOSTILE[0])]))
    await dashboard.windows(1)
    await people.wait_for(state="visible", timeout=5000)
    got = await rows(page)
    assert [r["id"] for r in got] == ["person-1", "voice-1"], got
    assert [r["name"] for r in got] == ["person 1 · voice 1", "voice 2"], got
    assert got[0]["img"] == thumbnail and got[0]["placeholder"] is None, got
    assert await panel.locator(".person-row[data-id='person-1'] .p-thumb img").evaluate(
        "img => img.complete && img.naturalWidth === 32")  # a real JPEG, decoded
    assert got[1]["img"] is None and got[1]["placeholder"] == "voice only", got  # never javascript:
    assert got[0]["graded"] == "Positive" and got[0]["grade"] == "Positive", got
    assert got[1]["graded"] == "Negative" and got[1]["grade"] == "Negative", got
    assert await now.locator(".v").text_content() == "person 1"
    assert await now.get_attribute("data-who") == "person-1"
    assert [r["speaking"] for r in got] == ["true", "false"]
    # the transcript's tag now names the face voice 0 is bound to
    assert await dashboard.text(f"{PANEL} .transcript .speaker-tag") == "person 1:"

    # the voice-only person's face: missing, and why, on hover
    face = panel.locator(".person-row[data-id='voice-1'] .p-mod[data-modality='visual']")
    assert await face.get_attribute("data-available") == "false"
    assert await face.get_attribute("title") == f"face: missing: {NO_FACE}"
    text = panel.locator(".person-row[data-id='voice-1'] .p-mod[data-modality='text']")
    assert await text.get_attribute("data-available") == "true"
    assert await text.locator(".pm-v").text_content() == "0.50"

    # window 1: voice 1 speaks most; person 1 said a little (text/voice missing: silent); the hostile thumbnails
    # never become an image, and person 1 keeps its last one
    dashboard.play(window(1, [face_person(0.4, None, None, 0.7, 0.71, HOSTILE[1]),
                              voice_person(3.1, 0.3, 0.33, uncertain=True, thumbnail=HOSTILE[2])]),
                   said(2.6, "Well, I am not so sure.", 1))
    await dashboard.windows(2)
    got = await rows(page)
    assert got[0]["img"] == thumbnail and got[1]["img"] is None, got
    assert [r["points"] for r in got] == [2, 2], got
    assert got[1]["grade"] == "uncertain (Negative)" and got[1]["graded"] == "", got  # no confident grade colour
    assert await now.locator(".v").text_content() == "voice 2"
    assert await now.get_attribute("data-who") == "voice-1"
    assert [r["speaking"] for r in got] == ["false", "true"]
    silent = panel.locator(".person-row[data-id='person-1'] .p-mod[data-modality='text']")
    assert await silent.get_attribute("title") == f"text: missing: {SILENT}"
    tags = await panel.locator(".transcript .speaker-tag").all_text_contents()
    assert tags == ["person 1:", "speaker 2:"], tags  # voice 1 is bound to no face

    # later committed words of voice 0 (after the latest window's end): person 1 speaks now
    dashboard.play(said(5.0, "That was lovely though.", 0))
    await page.wait_for_function("sel => document.querySelector(sel).dataset.who === 'person-1'",
                                 arg=f"{PANEL} .speaking-now", timeout=5000)
    assert await now.locator(".v").text_content() == "person 1"
    assert await panel.locator(".person-row[data-speaking='true']").get_attribute("data-id") == "person-1"
    tags = await panel.locator(".transcript .speaker-tag").all_text_contents()
    assert tags == ["person 1:", "speaker 2:", "person 1:"], tags

    # an alert on one person names them
    dashboard.play(AlertMessage(STREAM, "person_negative", "raised", "rolling", 0.33, 0.35, 2.0, 6.0, "voice 2",
                                person="voice-1"),
                   AlertMessage(STREAM, "person_negative", "raised", "rolling", 0.3, 0.35, 2.0, 6.0,
                                "person 9 (voice 4)", person="person-9"))
    alert = panel.locator(".alerts .alert[data-person='voice-1']")
    await alert.wait_for(timeout=5000)
    assert await alert.locator(".alert-person").text_content() == "voice 2"
    assert await alert.locator(".alert-value").text_content() == "rolling 0.33 (threshold 0.35)"
    other = panel.locator(".alerts .alert[data-person='person-9']")  # same rule and start: its own episode
    assert await other.locator(".alert-person").text_content() == "person 9"  # no row: named from the id
    dashboard.play(AlertMessage(STREAM, "person_negative", "cleared", "rolling", None, 0.35, 2.0, 7.0,
                                "person 9 (voice 4): no longer followed (over 64 people)", person="person-9"))
    await page.wait_for_function("sel => document.querySelector(sel).dataset.state === 'cleared'",
                                 arg=f"{PANEL} .alerts .alert[data-person='person-9']", timeout=5000)
    assert await other.locator(".alert-value").text_content() == "cleared · no longer followed (over 64 people)"
    assert await panel.locator(".alerts .alert").count() == 2
    await dashboard.screenshot("dashboard-people.png")

    # a window where nobody speaks: "nobody"; the last of the hostile thumbnails is not shown either
    dashboard.play(window(2, [face_person(0.0, None, None, 0.68, 0.7, HOSTILE[3]),
                              voice_person(0.0, 0.3, 0.32, thumbnail=HOSTILE[3])]))
    await dashboard.windows(3)
    assert await now.locator(".v").text_content() == "nobody"
    assert await now.get_attribute("data-who") == ""
    assert await panel.locator(".person-row[data-speaking='true']").count() == 0
    assert await panel.locator(".people-section img").evaluate_all("els => els.map(e => e.getAttribute('src'))") \
        == [thumbnail]

    # the end: each person, their overall verdict, speech and windows
    dashboard.play(EndMessage(STREAM, {
        "reason": "eof", "source": None, "duration": 12.0, "windows": 3, "score": 0.6, "label": "neutral",
        "graded": "Positive", "fused": fused(0.6, ["text", "audio", "visual"]), "rolling": rolling(0.64),
        "modalities": {"text": verdict(0.6), "audio": verdict(0.6), "visual": verdict(0.66)},
        "dropped_frames": 0, "transcript": "Hello there. Well, I am not so sure. That was lovely though.",
        "people": [person_summary("person-1", 1, 0, 4.5, 3, 0.72, 0.7),
                   person_summary("voice-1", None, 1, 3.1, 3, 0.31, None)],
        "languages": {"en": 1.0}, "speakers": [{"speaker": 0, "seconds": 4.5}, {"speaker": 1, "seconds": 3.1}]}))
    await page.wait_for_selector(f"{PANEL}[data-ended='true'] .summary", timeout=5000)
    summary = await panel.locator(".summary .summary-person").evaluate_all("""els => els.map(e => [e.dataset.id,
        ...[...e.children].map(c => c.textContent)])""")
    assert summary == [
        ["person-1", "person 1 · voice 1", "Positive0.72", "positive", "spoke 4.5 s", "3 windows", "face happy 0.70"],
        ["voice-1", "voice 2", "Negative0.31", "negative", "spoke 3.1 s", "3 windows", ""],
    ], summary
    await dashboard.screenshot("dashboard-people-ended.png")
    assert not dashboard.errors, dashboard.errors


async def test_people_rows_stay_bounded_and_grey_out(dashboard):
    """More people than rows: the one seen longest ago makes room; a person with no window for 60 media seconds
    greys out; a sparkline keeps its last 150 windows; a stream without people tracked shows no section."""
    page, panel = dashboard.page, dashboard.page.locator(PANEL)
    dashboard.play(window(0, None))
    await dashboard.windows(1)
    assert await panel.locator(".people-section").is_hidden()

    def someone(n: int) -> dict:
        return {**face_person(0.0, None, None, 0.6, 0.6), "id": f"person-{n}", "person": n, "speaker": None}

    for i in range(1, 161):  # person 1 in every window, persons 2..16 once each in windows 1..15
        dashboard.play(window(i, [someone(1)] + ([someone(i + 1)] if i <= 15 else [])))
    await dashboard.windows(161)
    got = await rows(page)
    assert len(got) == 12, got
    assert got[0]["id"] == "person-1" and got[-1]["id"] == "person-16", got
    assert got[0]["points"] == 150, got
    assert got[0]["stale"] == "false" and all(r["stale"] == "true" for r in got[1:]), got
    assert not dashboard.errors, dashboard.errors
