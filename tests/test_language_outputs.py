"""Speech in other languages and scripts through every output, byte for byte, without a model: a server whose
transcriber says Spanish, Arabic and Chinese phrases (testkit's PhrasesASR) sends them in `transcript` and `window`
messages with their language, says when the language changed, gives each language's share in the end summary, keeps
them in the history, and `vidsent history export` writes them to CSV and JSON unchanged; `analyze --csv` as well."""

from __future__ import annotations

import csv
import json

from websockets.asyncio.client import connect

from commands.analyze import CSV_FIELDS, write_csv
from engine import Engine
from models.scoring import ScorerSet
from monitor.history import History
from testkit.fakes import ConstantScorer, ScriptedSource, SlowFrames, phrases_asr
from testkit.servers import RunningServer, make_hub, run_vidsent

SPANISH = "¡Qué alegría verte, mañana será un día estupendo!"
ARABIC = "أنا سعيد جدا اليوم"
CHINESE = "今天天气很好我很开心"
PHRASES = [(0.0, SPANISH, "es"), (9.5, ARABIC, "ar"), (14.0, CHINESE, "zh")]


def multilingual_engine() -> Engine:
    scorers = ScorerSet(ConstantScorer("text", 0.8, part=lambda w: bool(w.transcript)),
                        ConstantScorer("audio", 0.7), ConstantScorer("visual", 0.6), SlowFrames())
    return Engine(scorers=scorers, transcriber=phrases_asr(PHRASES), device="cpu")


async def run_through_server(history: History) -> list[dict]:
    engine = multilingual_engine()
    hub = make_hub(engine, None, history=history)
    try:
        async with RunningServer(hub) as server:
            async with connect(server.url) as ws:
                await ws.recv()
                hub.start("scripted", "talk", source=ScriptedSource(26.0))
                await ws.send(json.dumps({"type": "subscribe", "stream": "talk"}))
                got = []
                async for raw in ws:
                    message = json.loads(raw)
                    if message.get("stream") == "talk":
                        got.append(message)
                        if message["type"] == "end":
                            return got
    finally:
        engine.close()
    raise AssertionError("no end")


async def test_other_scripts_survive_every_output_byte_for_byte(tmp_path):
    path = tmp_path / "history.sqlite3"
    history = History(path)
    got = await run_through_server(history)
    history.close()

    finals = [m for m in got if m["type"] == "transcript" and m["final"]]
    by_language: dict[str, str] = {}
    for m in finals:
        by_language[m["language"]] = by_language.get(m["language"], "") + m["text"]
        assert m["language_p"] == 0.95
    assert by_language["es"].replace(" ", "") == SPANISH.replace(" ", "")
    assert by_language["ar"].replace(" ", "") == ARABIC.replace(" ", "")
    assert by_language["zh"] == CHINESE  # characters joined without spaces, as Whisper writes them

    windows = [m for m in got if m["type"] == "window"]
    assert [w["language"] for w in windows if w["transcript"]][:1] == ["es"]
    assert {w["language"] for w in windows} >= {"es", "ar", "zh"}
    assert all(w["language"] is None and w["language_p"] is None for w in windows if not w["transcript"])
    assert any(CHINESE[:4] in w["transcript"] for w in windows)

    changes = [m for m in got if m["type"] == "status" and m["detail"].startswith("language changed")]
    assert [(c["language"]["language"], c["language"]["previous"]) for c in changes] == [
        ("es", None), ("ar", "es"), ("zh", "ar")]
    assert changes[1]["detail"] == "language changed to Arabic (p=0.95) from 9.5 s, was Spanish"
    shares = got[-1]["summary"]["languages"]
    assert list(shares) == ["zh", "es", "ar"]  # 10 characters, 8 words, 4 words: largest first
    assert abs(sum(shares.values()) - 1) < 1e-3
    assert SPANISH.split()[1] in got[-1]["summary"]["transcript"] and CHINESE in got[-1]["summary"]["transcript"]

    out_csv, out_json = tmp_path / "talk.csv", tmp_path / "talk.json"
    code, out, err = await run_vidsent("history", "export", "talk", "--csv", str(out_csv), "--json", str(out_json),
                                       "--history", str(path), timeout=60)
    assert code == 0, err
    exported = json.loads(out_json.read_text(encoding="utf-8"))
    stored = [m for m in got if m["type"] in ("window", "transcript", "end") and m.get("final", True)]
    assert [m for m in exported["messages"] if m["type"] != "alert"] == stored
    with open(out_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["language"] or None, r["transcript"]) for r in rows] == [(w["language"], w["transcript"])
                                                                         for w in windows]
    code, out, err = await run_vidsent("history", "show", "talk", "--history", str(path), timeout=60)
    assert code == 0, err
    assert [line for line in out.splitlines() if line.startswith("  » ")] == [
        f"  » [{m['language']}] {m['text']}" for m in finals]


def test_analyze_csv_keeps_language_and_script(tmp_path):
    windows = [{"index": 0, "t_start": 0.0, "t_end": 4.0, "modalities": {"text": {"score": 0.9}},
                "fused": {"score": 0.9, "label": "positive", "graded": "Positive"},
                "rolling": {"score": 0.9, "label": "positive"}, "language": "ja", "language_p": 0.99,
                "transcript": "今日はとても楽しかったです"},
               {"index": 1, "t_start": 2.0, "t_end": 6.0, "modalities": {"text": {"score": None}},
                "fused": {"score": 0.5, "label": "neutral", "graded": "Slight Negative"},
                "rolling": {"score": 0.6, "label": "neutral"}, "language": None, "language_p": None,
                "transcript": ""}]
    out = tmp_path / "out.csv"
    write_csv(str(out), [{"file": "ünïcode.mp4", "windows": windows}])
    with open(out, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == CSV_FIELDS and "language" in CSV_FIELDS
        rows = list(reader)
    assert [(r["file"], r["language"], r["language_p"], r["transcript"]) for r in rows] == [
        ("ünïcode.mp4", "ja", "0.99", "今日はとても楽しかったです"), ("ünïcode.mp4", "", "", "")]
