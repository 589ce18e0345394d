"""Speech in other languages through the real models: each recorded clip in tests/data/speech (German, Spanish,
French, Chinese; sources in its README) is identified and transcribed in its own language and script; a stream that
switches from Spanish to English is followed (the windows' language changes, the transcript holds both); English
speech under `--language de` is not transcribed into made-up German but marked as outside the allowed languages."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
import pytest

from engine import PipelineConfig, analyze_file
from media import SAMPLE_RATE
from speech.language import LanguageChoice
from speech.metrics import error_rate
from testkit.data import ROOT, need_data
from testkit.media import write_flac

pytestmark = pytest.mark.models

CLIPS = ROOT / "tests" / "data" / "speech"
# clip → (language, words its transcript holds, the reference transcript; tests/data/speech/README.md)
EXPECTED = {
    "de_fleurs_sediment.flac": ("de", ["Sediment", "nötig", "Lebensräume"],
                                "dieses sediment war nötig um sandbänke und strände zu bilden die als lebensräume "
                                "für wildtiere dienten"),
    "es_fleurs_luchadores.flac": ("es", ["luchadores", "compañeros", "homenaje"],
                                  "los luchadores compañeros de luna también le rindieron homenaje"),
    "fr_fleurs_fisichella.flac": ("fr", ["contrôle", "voiture", "course", "démarrage"],
                                  "giancarlo fisichella a perdu le contrôle de sa voiture et a terminé la course peu "
                                  "après le démarrage"),
    "zh_aishell1_BAC009S0764W0121.flac": ("zh", ["甚至出现交易", "情况"], "甚至出现交易几乎停滞的情况"),
}


def decode(path) -> np.ndarray:
    from faster_whisper.audio import decode_audio

    return decode_audio(str(path), sampling_rate=SAMPLE_RATE)


def live_passes(engine, audio: np.ndarray, choice: LanguageChoice, step_s: float = 0.75):
    """The clip through a stream's transcriber in live-sized passes: (committed words, the language updates)."""
    asr = engine.new_asr(step_s, True, choice)
    words, states = [], []
    step = int(step_s * SAMPLE_RATE)
    for i in range(0, len(audio), step):
        asr.insert_audio(audio[i:i + step], i / SAMPLE_RATE)
        update = asr.process()
        words += update.committed
        states.append(((i + step) / SAMPLE_RATE, update.language))
    update = asr.finish()
    return words + update.committed, states + [(len(audio) / SAMPLE_RATE, update.language)]


@pytest.mark.parametrize("clip", sorted(EXPECTED))
def test_each_clip_is_identified_and_transcribed_in_its_own_language(engine, clip):
    language, words, said = EXPECTED[clip]
    heard, states = live_passes(engine, decode(CLIPS / clip), LanguageChoice(), step_s=1.5)
    decided = [(t, s) for t, s in states if s is not None and s.language is not None]
    assert decided and decided[0][1].language == language and decided[0][0] <= 5.0  # within 5 s of speech
    assert {s.language for _, s in decided} == {language} and decided[-1][1].p > 0.5
    text = "".join(w.text for w in heard)
    assert {w.language for w in heard} == {language}
    for word in words:
        assert word in text, (clip, text)
    kind, rate = error_rate(said, text, language)
    assert rate <= 0.3, (kind, rate, text)  # Whisper base misspells names: Fisichella, Sandbänke


def test_a_stream_that_switches_language_is_followed(engine, tmp_path):
    english = need_data("speech", "two_cities.flac")
    spanish = np.concatenate([decode(CLIPS / "es_fleurs_luchadores.flac"), np.zeros(SAMPLE_RATE // 2, np.float32),
                              decode(CLIPS / "es_fleurs_luchadores.flac")])
    path = tmp_path / "es_then_en.flac"
    switch_at = len(spanish) / SAMPLE_RATE + 0.5
    write_flac(path, np.concatenate([spanish, np.zeros(SAMPLE_RATE // 2, np.float32),
                                     decode(english)[:12 * SAMPLE_RATE]]))
    result = asyncio.run(analyze_file(path, engine, PipelineConfig()))
    spoken = [(w["t_start"], w["language"]) for w in result["windows"] if w["transcript"]]
    assert spoken[0][1] == "es" and spoken[-1][1] == "en", spoken
    firsts = {language: min(t for t, code in spoken if code == language) for language in ("es", "en")}
    assert firsts["en"] > firsts["es"] and firsts["en"] <= switch_at + 6.0  # followed within 6 s
    assert "luchadores" in result["transcript"] and "best of times" in result["transcript"]
    assert set(result["languages"]) == {"es", "en"}
    spanish_text = [w for w in result["windows"] if w["language"] == "es" and w["modalities"]["text"]["available"]]
    assert spanish_text and all("vader" not in w["modalities"]["text"]["details"] for w in spanish_text)


def test_english_under_language_de_is_marked_not_made_up(engine):
    result = asyncio.run(analyze_file(need_data("speech", "beckett.flac"), engine,
                                      replace(PipelineConfig(), language="de")))
    texts = [w["modalities"]["text"] for w in result["windows"]]
    assert result["transcript"] == "" and not any(t["available"] for t in texts)
    assert any(t["reason"].startswith("speech in English (p=") and "outside the allowed languages" in t["reason"]
               for t in texts)
    assert any(w["language"] == "en" for w in result["windows"])


def test_an_allowed_set_keeps_english_on_the_fast_english_model(engine):
    words, states = live_passes(engine, decode(need_data("speech", "beckett.flac")), LanguageChoice.parse("en,es"))
    assert {w.language for w in words} == {"en"} and "Fail better" in "".join(w.text for w in words)
    assert states[-1][1].language == "en"


def test_live_passes_take_each_models_pace_and_replays_the_steps_they_are_given(engine):
    from engine.engine import BASE_LIVE_PACING

    english = engine.new_asr(0.75, True, LanguageChoice())
    assert (english.step_s, english.left_context_s) == (0.75, 3.0)
    spanish = engine.new_asr(0.75, True, LanguageChoice.parse("es"))
    assert (spanish.step_s, spanish.left_context_s) == (BASE_LIVE_PACING.step_s, BASE_LIVE_PACING.left_context_s)
    assert BASE_LIVE_PACING.step_s > 0.75  # Whisper base would fall behind at tiny.en's pace
    assert engine.new_asr(5.0, False, LanguageChoice.parse("es")).step_s == 5.0
    # a stream that starts on the English guess takes base's pace once it hears Spanish, and transcribes it
    followed = engine.new_asr(0.75, True, LanguageChoice())
    audio, step, heard = decode(CLIPS / "es_fleurs_luchadores.flac"), int(0.75 * SAMPLE_RATE), []
    for i in range(0, len(audio), step):
        followed.insert_audio(audio[i:i + step], i / SAMPLE_RATE)
        heard += followed.process().committed
    heard += followed.finish().committed
    assert followed.language == "es" and followed.step_s == BASE_LIVE_PACING.step_s
    assert "luchadores" in "".join(w.text for w in heard)


SAID = [(0.0, "Me encanta este lugar, es maravilloso y estoy muy feliz.", "es", "positive"),
        (8.0, "Odio esto, es horrible y estoy muy triste.", "es", "negative"),
        (16.0, "Ich liebe diesen Tag, alles ist wunderbar und ich bin glücklich.", "de", "positive"),
        (24.0, "Das ist schrecklich, ich hasse es und bin sehr traurig.", "de", "negative")]


def test_clear_sentences_in_spanish_and_german_get_their_label_through_the_live_pipeline(engine):
    from engine import Engine, StreamPipeline
    from testkit.fakes import ScriptedSource, phrases_asr

    speaking = Engine(scorers=engine.scorers, device=engine.device,
                      transcriber=phrases_asr([(t, text, code) for t, text, code, _ in SAID], seconds_per_word=0.35))
    windows = []
    try:
        asyncio.run(StreamPipeline("said", ScriptedSource(32.0, has_video=False), speaking, PipelineConfig(),
                                   emit=lambda m: windows.append(m) if m.type == "window" else None).run())
    finally:
        speaking.close()
    for t, text, code, label in SAID:
        (window,) = [w for w in windows if w.t_start == t]  # each sentence inside one 4 s window
        verdict = window.modalities["text"]
        assert window.transcript == text and window.language == code
        assert verdict["label"] == label, (text, verdict)
        assert verdict["details"]["head"] == "text_multilingual" and verdict["details"]["language"] == code
        assert "vader" not in verdict["details"] and verdict["details"]["vader_skipped"]
