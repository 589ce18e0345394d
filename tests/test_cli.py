"""The `vidsent` command as a user runs it (a subprocess): analyze with JSON and CSV output and a bad file among the
good, watch in-process, and watch through a running server."""

from __future__ import annotations

import csv
import json

import pytest

from speech import normalise_text, word_error_rate
from testkit.data import need_data
from testkit.servers import RunningServer, make_hub, run_vidsent

# what vna_original_2.mp4 says: Whisper tiny.en and base, int8 and float32, each transcribing the whole file, all
# hear "an extreme extent that I was" (an earlier reference had "an extreme and I was", which nobody says)
SPOKEN = ("Now I'm not even gonna sugarcoat this, this movie frustrated me to such an extreme extent that I was "
          "loudly exclaiming why at the end of the film.")

pytestmark = pytest.mark.models  # each runs `vidsent` on real clips, or a server on the real Engine


async def test_analyze_writes_json_and_csv_and_reports_a_bad_file_without_stopping(tmp_path):
    clip = need_data("videos", "vna_original_2.mp4")
    text_file = tmp_path / "notes.mp4"
    text_file.write_text("not a video at all\n")
    out_json, out_csv = tmp_path / "out.json", tmp_path / "out.csv"
    code, out, err = await run_vidsent("analyze", str(text_file), str(clip), "--json", str(out_json),
                                       "--csv", str(out_csv))
    assert code == 1, (out, err)  # one file failed
    assert "Traceback" not in out + err
    assert "TensorFlow" not in err, err  # the runtimes' own chatter (TFLite's XNNPACK line) stays out of a user's way
    lines = out.splitlines()
    assert lines[0].startswith(f"✗ {text_file}") and "[not_media]" in lines[0]
    assert lines[1].startswith(f"✓ {clip}") and "6 windows" in lines[1] and "negative" in lines[1]
    assert "1 of 2 file(s) could not be analysed" in err
    results = json.loads(out_json.read_text())
    assert [r["file"] for r in results] == [str(text_file), str(clip)]
    assert results[0]["error"]["code"] == "not_media" and results[0]["windows"] == []
    good = results[1]
    assert good["label"] == "negative" and len(good["windows"]) == 6
    # the spoken words. 0.1 of 27 words is two errors: tiny.en's int8 kernels round differently on other CPUs, and
    # where a 5 s pass cuts a word it may hear "gonna" as "going to" (two errors) or "exclaiming" as "claiming" (one)
    assert word_error_rate(SPOKEN, good["transcript"]) <= 0.1, good["transcript"]
    assert {"index", "t_start", "t_end", "modalities", "fused", "rolling", "transcript"} <= set(good["windows"][0])
    spoken = [w for w in good["windows"] if w["modalities"]["text"]["available"]]
    assert spoken and all("key_words" in w["modalities"]["text"]["details"] for w in spoken)
    with open(out_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and all(r["file"] == str(clip) for r in rows)
    assert [float(r["t_end"]) for r in rows] == [w["t_end"] for w in good["windows"]]
    assert all(0.0 <= float(r["fused_score"]) <= 1.0 for r in rows)


async def test_analyze_fast_keeps_the_windows_words_and_verdict_without_the_key_words(tmp_path):
    clip = need_data("videos", "vna_original_2.mp4")
    out_json = tmp_path / "fast.json"
    code, out, err = await run_vidsent("analyze", "--fast", str(clip), "--json", str(out_json))
    assert code == 0, err
    (result,) = json.loads(out_json.read_text())
    # as the full analysis grades it (negative, 0.39): Slight Negative, with negative speech
    assert result["graded"] == "Slight Negative" and result["score"] < 0.45 and len(result["windows"]) == 6
    assert result["modalities"]["text"]["score"] < 0.35
    assert "sugarcoat" in result["transcript"].lower().replace(" ", "") and "end of the film" in result["transcript"]
    spoken = [w for w in result["windows"] if w["modalities"]["text"]["available"]]
    assert spoken and not any("key_words" in w["modalities"]["text"]["details"] for w in spoken)
    assert all(w["modalities"]["visual"]["available"] for w in result["windows"])  # a frame every 2 s is enough


async def test_watch_prints_each_window_and_the_end_in_process():
    clip = need_data("videos", "vna_mosi_2.6.mp4")
    code, out, err = await run_vidsent("watch", str(clip), "--fast")
    assert code == 0, err
    window_lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(window_lines) == 1 and "rolling" in window_lines[0] and "impressive" in window_lines[0].lower()
    assert "| [en] I mean that was impressive." in window_lines[0]  # the words, after the language they are in
    heard = [line.removeprefix("  » [en] ") for line in out.splitlines() if line.startswith("  » [en] ")]
    assert normalise_text(" ".join(heard)) == ["i", "mean", "that", "was", "impressive"], out
    assert out.strip().splitlines()[-1].startswith("end (eof): 1 windows, overall positive")
    assert out.strip().splitlines()[-1].endswith("; speech: en 100%")


async def test_watch_through_a_running_server(engine):
    need_data("videos", "vna_0001.mp4")
    hub = make_hub(engine)
    async with RunningServer(hub) as server:
        code, out, err = await run_vidsent("watch", "vna_0001.mp4", "--server", server.url, "--fast", timeout=60)
        assert code == 0, err
        assert out.strip().splitlines()[-1].startswith("end (eof):")
        code, out, err = await run_vidsent("watch", "nope", "--server", server.url, "--subscribe", timeout=60)
    assert code == 1 and "no_such_stream" in out + err and "Traceback" not in out + err
