"""Per-person sentiment on the command line (model-free): `watch`'s and `history show`'s person lines under each
window, per-person alerts and the end's people (LivePrinter), `analyze`'s people lines and `--people-csv`
(write_people_csv), and `history export --people-csv` from a history the real writer filled."""

from __future__ import annotations

import csv
import io

from commands.analyze import CSV_FIELDS, PEOPLE_CSV_FIELDS, person_summary_lines, write_people_csv
from commands.watch import MAX_PEOPLE_SHOWN, LivePrinter
from monitor.history import History
from protocol import AlertMessage, EndMessage, StatusMessage, TranscriptMessage, WindowMessage, person_name
from testkit.servers import vidsent_in_process

THUMBNAIL = "data:image/jpeg;base64,/9j/4AAQSkZJRgABAQAAAQABAAD"


def verdict(score: float | None, reason: str | None = None) -> dict:
    label = None if score is None else "negative" if score < 0.4 else "positive" if score > 0.6 else "neutral"
    return {"score": score, "label": label, "available": score is not None,
            "reason": None if score is not None else reason or "missing", "confidence": 0.5}


def someone(pid: str, person: int | None, speaker: int | None, *, text=None, audio=None, visual=None,
            rolling: float | None = 0.5, uncertain: bool = False, seconds: float = 0.0,
            speaking: float | None = None, thumbnail: bool = False) -> dict:
    """A window's PersonVerdict; a missing modality's reason says which it is."""
    scores = {"text": text, "audio": audio, "visual": visual}
    modalities = {m: verdict(s, f"no {m} for {pid}") for m, s in scores.items()}
    used = [m for m, s in scores.items() if s is not None]
    fused_score = sum(s for s in scores.values() if s is not None) / len(used) if used else None
    entry = {"id": pid, "person": person, "speaker": speaker, "seconds": seconds, "speaking": speaking,
             "modalities": modalities,
             "fused": {"score": fused_score, "label": verdict(fused_score)["label"], "graded": None,
                       "method": "weighted", "used": used, "missing": [m for m in scores if m not in used],
                       "uncertain": False},
             "rolling": {"score": rolling, "label": verdict(rolling)["label"], "graded": None, "half_life_s": 6.0,
                         "uncertain": uncertain}}
    if thumbnail:
        entry["thumbnail"] = THUMBNAIL
    return entry


def window(index: int, people: list[dict] | None, stream: str = "cam") -> WindowMessage:
    t0 = 2.0 * index
    return WindowMessage(stream, index, t0, t0 + 4.0,
                         {"text": verdict(0.3), "audio": verdict(0.4), "visual": verdict(0.6)},
                         {"score": 0.45, "label": "neutral", "graded": "Slight Negative", "method": "weighted",
                          "used": ["text", "audio", "visual"], "missing": []},
                         {"score": 0.45, "label": "neutral", "graded": "Slight Negative", "half_life_s": 6.0},
                         "the words", people=people)


FACE_WITH_VOICE = someone("person-3", 3, 0, text=0.2, audio=0.3, visual=0.35, rolling=0.25, seconds=2.5,
                          speaking=0.8, thumbnail=True)
FACE_ALONE = someone("person-1", 1, None, visual=0.7, rolling=0.7, speaking=0.1, thumbnail=True)
VOICE_ALONE = someone("voice-1", None, 1, text=0.9, audio=0.8, rolling=0.5, uncertain=True, seconds=1.25)
PEOPLE = [FACE_WITH_VOICE, FACE_ALONE, VOICE_ALONE]


def person_summary(pid: str, person: int | None, speaker: int | None, **scores) -> dict:
    """An end summary's PersonSummary, with the keys added to v1."""
    modalities = {m: verdict(scores.get(m), f"no {m}") for m in ("text", "audio", "visual")}
    used = [m for m in modalities if scores.get(m) is not None]
    fused = sum(scores[m] for m in used) / len(used) if used else None
    return {"person": person, "first_seen": 0.0, "last_seen": 9.5, "frames": 12,
            "score": scores.get("visual"), "top_emotion": "sad" if person is not None else None,
            "id": pid, "speaker": speaker, "seconds": scores.get("seconds", 0.0), "windows": 4,
            "modalities": modalities,
            "fused": {"score": fused, "label": verdict(fused)["label"], "graded": None, "method": "weighted",
                      "used": used, "missing": [m for m in modalities if m not in used]},
            "label": verdict(fused)["label"], "timeline": [{"t": 4.0, "score": fused, "rolling": fused}]}


def end(people: list[dict], stream: str = "cam") -> EndMessage:
    fused = {"score": 0.45, "label": "neutral", "graded": "Slight Negative", "method": "weighted",
             "used": ["text"], "missing": []}
    return EndMessage(stream, {"reason": "eof", "source": None, "duration": 10.0, "windows": 4, "score": 0.45,
                               "label": "neutral", "graded": "Slight Negative", "fused": fused,
                               "rolling": {"score": 0.45, "label": "neutral", "graded": None, "half_life_s": 6.0},
                               "modalities": {}, "dropped_frames": 0, "transcript": "the words", "people": people})


END_PEOPLE = [person_summary("person-3", 3, 0, text=0.2, audio=0.3, visual=0.35, seconds=7.5),
              person_summary("voice-1", None, 1, text=0.9, audio=0.8, seconds=3.0)]


def printed(*messages) -> list[str]:
    out = io.StringIO()
    printer = LivePrinter(out)
    for message in messages:
        printer(message)
    return out.getvalue().splitlines()


def test_the_names_of_a_face_a_face_with_its_voice_and_a_voice_alone():
    assert person_name(FACE_ALONE) == "person 1"
    assert person_name(FACE_WITH_VOICE) == "person 3 · voice 1"  # speaker ids count from 0, names from 1
    assert person_name(VOICE_ALONE) == "voice 2"
    assert person_name({"id": "voice-0"}) == "voice 1" and person_name({"id": "person-7"}) == "person 7"
    assert person_name({"id": "\x1b[31m"}) == "someone"  # nothing a terminal would act on


def test_each_window_is_followed_by_a_line_per_person_without_thumbnails():
    lines = printed(window(0, PEOPLE))
    assert lines[0].startswith("[   0.0–   4.0s] rolling 0.45")
    face_voice, face, voice = lines[1:]
    assert all(line.startswith("    ") for line in (face_voice, face, voice)) and len(lines) == 4
    assert face_voice.split()[:5] == ["person", "3", "·", "voice", "1"]
    assert "rolling 0.25 negative" in face_voice and "T 0.20 A 0.30 V 0.35" in face_voice
    assert face_voice.endswith("| 2.5 s spoken, speaking")
    # a missing modality is a dash; no speech, no seconds; 0.1: not speaking
    assert face.split()[:2] == ["person", "1"] and "rolling 0.70 positive" in face
    assert "T   —   A   —   V 0.70" in face and "spoken" not in face and "speaking" not in face
    assert voice.split()[:2] == ["voice", "2"] and "rolling 0.50 uncertain" in voice
    assert "T 0.90 A 0.80 V   —  " in voice and voice.endswith("| 1.2 s spoken")
    text = "\n".join(lines)
    assert "base64" not in text and "data:" not in text


def test_a_window_without_people_prints_one_line_and_a_crowd_is_cut_short():
    assert len(printed(window(0, None))) == 1 and len(printed(window(0, []))) == 1
    crowd = [someone(f"person-{n}", n, None, visual=0.5) for n in range(1, 13)]
    lines = printed(window(0, crowd))
    assert len(lines) == 1 + MAX_PEOPLE_SHOWN + 1 and lines[-1] == f"    +{12 - MAX_PEOPLE_SHOWN} more"
    # nobody's missing scores: all dashes, never a crash
    bare = printed(window(0, [{"id": "person-2", "person": 2, "speaker": None}]))
    assert bare[1].split()[:2] == ["person", "2"] and "rolling   —   —" in bare[1]
    assert "T   —   A   —   V   —" in bare[1]


def test_a_transcript_line_names_its_voice():
    said = TranscriptMessage("cam", 0.0, 2.0, "hello there", True, language="en", speaker=0)
    unknown = TranscriptMessage("cam", 2.0, 3.0, "and you", True, language="en")
    assert printed(said, unknown) == ["  » [en] voice 1: hello there", "  » [en] and you"]


def test_an_alert_about_a_person_names_them():
    raised = AlertMessage("cam", "low", "raised", "rolling", 0.2, 0.3, 0.0, 10.0, "person 3 (voice 0)",
                          person="person-3")
    cleared = AlertMessage("cam", "low", "cleared", "rolling", None, 0.3, 0.0, 12.0,
                           "person 3 (voice 0): the stream ended", person="person-3")
    lines = printed(window(0, PEOPLE), raised, cleared)
    # named as the windows named them
    assert lines[-2] == "⚠ alert low for person 3 · voice 1: rolling 0.20 since 0.0 s"
    assert lines[-1] == "✓ alert low for person 3 · voice 1 cleared at 12.0 s (the stream ended)"
    # a person no window has shown is named from their id; a stream's alert stays as it was
    alone = AlertMessage("cam", "low", "raised", "text", 0.1, 0.3, 2.0, 8.0, "voice 4", person="voice-4")
    stream = AlertMessage("cam", "low", "raised", "rolling", 0.2, 0.3, 0.0, 10.0)
    back = AlertMessage("cam", "low", "cleared", "text", 0.4, 0.3, 2.0, 14.0, "voice 4", person="voice-4")
    assert printed(alone, stream, back) == ["⚠ alert low for voice 5: text 0.10 since 2.0 s",
                                            "⚠ alert low: rolling 0.20 since 0.0 s",
                                            "✓ alert low for voice 5 cleared at 14.0 s (text 0.40)"]


def test_the_end_lists_each_person_and_an_old_summary_prints_too():
    lines = printed(end(END_PEOPLE))
    # the people first: the end line stays the last line (what scripts and tests/test_cli.py read)
    assert lines[-1].startswith("end (eof): 4 windows, overall neutral") and lines[0] == "people over the stream:"
    assert lines[1] == ("    person 3 · voice 1: negative (0.28) | T 0.20 A 0.30 V 0.35 | 7.5 s spoken, 4 windows, "
                        "seen 0.0–9.5 s")
    assert lines[2] == "    voice 2: positive (0.85) | T 0.90 A 0.80 V   —   | 3.0 s spoken, 4 windows, seen 0.0–9.5 s"
    assert len(lines) == 4
    # a history written before people had their own verdicts: face, valence, seen
    old = [{"person": 2, "first_seen": 1.0, "last_seen": 5.0, "frames": 9, "score": 0.31, "top_emotion": "sad"},
           {"person": 4, "first_seen": 2.0, "last_seen": 2.5, "frames": 1, "score": None, "top_emotion": None}]
    lines = printed(end(old))
    assert lines[1:3] == ["    person 2: face 0.31 (sad) | seen 1.0–5.0 s", "    person 4: face   —   | seen 2.0–2.5 s"]
    assert lines[3].startswith("end (eof)") and len(lines) == 4
    assert len(printed(end([]))) == 1


def test_analyze_prints_the_same_lines_for_its_people():
    assert person_summary_lines(END_PEOPLE) == printed(end(END_PEOPLE))[1:-1]
    assert person_summary_lines(None) == [] and person_summary_lines([]) == []
    many = person_summary_lines([END_PEOPLE[0]] * 53)
    assert len(many) == 51 and many[-1] == "    +3 more"


def people_rows(path) -> tuple[list[str] | None, list[dict]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


def window_json(message: WindowMessage) -> dict:
    """A window as `analyze` keeps it (engine/analyze.py)."""
    return {k: v for k, v in message.to_json().items() if k not in ("type", "v", "stream", "latency_s")}


def test_write_people_csv_writes_a_row_per_person_per_window_with_the_reasons(tmp_path):
    results = [{"file": "talk.mp4", "windows": [window_json(window(0, PEOPLE)), window_json(window(1, None)),
                                                window_json(window(2, [VOICE_ALONE]))]},
               {"file": "bad.mp4", "windows": [], "error": {"code": "not_media", "message": "no"}}]
    out = tmp_path / "people.csv"
    write_people_csv(str(out), results)
    fields, rows = people_rows(out)
    assert fields == PEOPLE_CSV_FIELDS and "thumbnail" not in out.read_text()
    assert [(r["file"], r["index"], r["person_id"]) for r in rows] == [
        ("talk.mp4", "0", "person-3"), ("talk.mp4", "0", "person-1"), ("talk.mp4", "0", "voice-1"),
        ("talk.mp4", "2", "voice-1")]
    first = rows[0]
    assert (first["t_start"], first["t_end"], first["person"], first["speaker"], first["seconds"],
            first["speaking"]) == ("0.0", "4.0", "3", "0", "2.5", "0.8")
    assert (first["text_score"], first["audio_score"], first["visual_score"]) == ("0.2", "0.3", "0.35")
    assert float(first["fused_score"]) == (0.2 + 0.3 + 0.35) / 3 and first["fused_label"] == "negative"
    assert (first["rolling_score"], first["rolling_label"]) == ("0.25", "negative")
    assert first["text_reason"] == first["audio_reason"] == first["visual_reason"] == ""
    face = rows[1]  # a face that did not speak: its words' and voice's scores empty, and why
    assert (face["speaker"], face["speaking"], face["text_score"], face["audio_score"]) == ("", "0.1", "", "")
    assert (face["text_reason"], face["audio_reason"], face["visual_reason"]) == (
        "no text for person-1", "no audio for person-1", "")
    voice = rows[2]
    assert (voice["person"], voice["speaker"], voice["visual_score"], voice["visual_reason"]) == (
        "", "1", "", "no visual for voice-1")
    assert (voice["rolling_score"], voice["rolling_label"]) == ("0.5", "neutral")


def fill_with_people(path) -> list[WindowMessage]:
    """A run of "cam" written by the real History writer: windows with people (and one without), a transcript, a
    per-person alert and the end."""
    windows = [window(0, PEOPLE), window(1, None), window(2, [FACE_WITH_VOICE, VOICE_ALONE])]
    history = History(path)
    history.observe(StatusMessage("cam", "starting"))
    history.observe(StatusMessage("cam", "running", source={
        "kind": "file", "name": "talk.mp4", "has_audio": True, "has_video": True, "duration": 10.0, "width": 64,
        "height": 64, "fps": 25.0}))
    history.observe(windows[0])
    history.observe(TranscriptMessage("cam", 0.0, 2.0, "hello there", True, language="en", speaker=0))
    history.observe(windows[1])
    history.observe(AlertMessage("cam", "low", "raised", "rolling", 0.25, 0.3, 0.0, 4.0, "person 3 (voice 0)",
                                 person="person-3"))
    history.observe(windows[2])
    history.observe(end(END_PEOPLE))
    history.close()
    return windows


def history_command(capsys, *args: str) -> tuple[int, str, str]:
    """`vidsent history ARGS` in this process: (exit code, stdout, stderr); argparse's exit is its code."""
    return vidsent_in_process(capsys, "history", *args)


def test_history_export_writes_the_people_of_the_stored_windows(capsys, tmp_path):
    path = tmp_path / "history.sqlite3"
    windows = fill_with_people(path)
    out_people, out_csv = tmp_path / "people.csv", tmp_path / "windows.csv"
    code, out, err = history_command(capsys, "export", "cam", "--people-csv", str(out_people), "--csv", str(out_csv),
                                     "--history", str(path))
    assert code == 0, err
    assert out.splitlines() == [f"wrote {out_csv}", f"wrote {out_people}"]
    fields, rows = people_rows(out_people)
    assert fields == PEOPLE_CSV_FIELDS
    expected = [(w.index, p["id"], p["rolling"]["score"]) for w in windows for p in w.people or []]
    assert [(int(r["index"]), r["person_id"], float(r["rolling_score"])) for r in rows] == expected
    assert {r["file"] for r in rows} == {"talk.mp4"}
    assert [r["visual_reason"] for r in rows if r["person_id"] == "voice-1"] == ["no visual for voice-1"] * 2
    # --csv is as it was: a row per window, its columns
    fields, table = people_rows(out_csv)
    assert fields == CSV_FIELDS and [int(r["index"]) for r in table] == [0, 1, 2]

    # alone it is enough; an empty path is refused
    code, _, err = history_command(capsys, "export", "cam", "--people-csv", str(tmp_path / "alone.csv"),
                                   "--history", str(path))
    assert code == 0 and (tmp_path / "alone.csv").read_text() == out_people.read_text(), err
    code, out, err = history_command(capsys, "export", "cam", "--people-csv", "", "--history", str(path))
    assert code == 2 and out == "" and "Traceback" not in err
    code, _, err = history_command(capsys, "export", "cam", "--history", str(path))
    assert code == 2 and "--people-csv OUT" in err
    code, out, err = history_command(capsys, "export", "cam", "--people-csv", str(tmp_path / "no" / "x.csv"),
                                     "--history", str(path))
    assert code == 1 and out == "" and err.startswith("vidsent history export: cannot write ")


def test_history_show_prints_the_people_the_alert_and_the_end(capsys, tmp_path):
    path = tmp_path / "history.sqlite3"
    fill_with_people(path)
    code, out, err = history_command(capsys, "show", "cam", "--history", str(path))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("run 1: stream cam (talk.mp4)")
    assert [line.split()[:2] for line in lines if line.startswith("    ") and "rolling" in line] == [
        ["person", "3"], ["person", "1"], ["voice", "2"], ["person", "3"], ["voice", "2"]]
    assert "  » [en] voice 1: hello there" in lines
    assert "⚠ alert low for person 3 · voice 1: rolling 0.25 since 0.0 s" in lines
    assert lines[-4] == "people over the stream:" and lines[-3].startswith("    person 3 · voice 1: negative (0.28)")
    assert lines[-2].startswith("    voice 2: positive (0.85)") and lines[-1].startswith("end (eof)")
    assert "base64" not in out
