"""Which language is spoken, without a model: --language's forms and errors, and the LanguageTracker's decisions
(first decision, a switch followed, one odd check ignored, speech outside the allowed set) on scripted
identifications; and the language of windows, transcripts and summaries through the pipeline with a fake
transcriber."""

from __future__ import annotations

import numpy as np
import pytest

from app.options import language_choice
from engine.tracks import SpeechTrack
from media import SAMPLE_RATE, Word
from speech import AsrUpdate
from speech.language import WHISPER_LANGUAGES, LanguageChoice, LanguageTracker, SpokenLanguage
from stream.windows import Window


def test_language_choices_in_their_normal_form():
    assert LanguageChoice.parse(None).auto and str(LanguageChoice.parse("AUTO")) == "auto"
    assert LanguageChoice.parse(" ES ").fixed == "es"
    both = LanguageChoice.parse("en, es,en")
    assert both.allowed == ("en", "es") and both.fixed is None and str(both) == "en,es"
    assert language_choice("de,fr") == "de,fr"


@pytest.mark.parametrize("text,says", [
    ("xx", "unknown language 'xx'"),
    ("zu", "unknown language 'zu'"),  # ISO 639-1 Zulu: not one of Whisper's languages
    ("en,,es", "codes separated by commas"),
    ("en,\x1b[31m", "\\x1b"),  # the client's text is echoed escaped
])
def test_unknown_languages_are_refused_with_the_known_codes(text, says):
    with pytest.raises(ValueError) as info:
        LanguageChoice.parse(text)
    assert says in str(info.value)
    if "unknown" in says:
        assert "es" in str(info.value).split(": ", 1)[1].split()  # names the codes Whisper knows


def test_whisper_knows_99_languages_as_its_tokenizer_does():
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    assert set(WHISPER_LANGUAGES) == set(_LANGUAGE_CODES) - {"yue"}  # Cantonese came with large-v3 only


class Scripted:
    """An identifier that answers from a script: one [(code, p)] list per call."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, audio):
        assert audio.ndim == 1 and len(audio) <= 4 * SAMPLE_RATE  # only the latest speech, at most 4 s
        self.calls += 1
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def speak(tracker: LanguageTracker, t0: float, seconds: float) -> None:
    """seconds of speech starting at t0, shown to the tracker the way a pass shows its buffer."""
    audio = np.full(int(seconds * SAMPLE_RATE), 0.1, dtype=np.float32)
    tracker.hear(audio, t0, [(t0, t0 + seconds)])
    tracker.check()


def test_a_first_unsure_second_waits_for_the_second():
    ident = Scripted([("pt", 0.8), ("gl", 0.1)], [("pt", 0.85), ("es", 0.1)])
    tracker = LanguageTracker(LanguageChoice(), ident)
    speak(tracker, 0.0, 1.0)
    assert not tracker.decided and ident.calls == 1  # 0.8 after one second: not sure enough yet
    speak(tracker, 1.0, 1.0)
    assert tracker.state.language == "pt" and ident.calls == 2


def test_the_first_confident_second_of_speech_decides():
    ident = Scripted([("es", 0.93), ("pt", 0.04)])
    tracker = LanguageTracker(LanguageChoice(), ident)
    speak(tracker, 0.0, 0.6)
    assert not tracker.decided and ident.calls == 0 and tracker.wait_for_speech()
    speak(tracker, 0.6, 0.6)
    assert tracker.state.language == "es" and tracker.state.p == pytest.approx(0.93) and ident.calls == 1
    assert not tracker.wait_for_speech()


def test_an_unsure_start_waits_for_more_speech_then_takes_the_leader():
    ident = Scripted([("de", 0.45), ("nl", 0.40)])
    tracker = LanguageTracker(LanguageChoice(), ident)
    for k in range(3):
        speak(tracker, k * 1.0, 1.0)
        assert not tracker.decided
    speak(tracker, 3.0, 1.0)  # 4 s of speech: decide on what leads
    assert tracker.state.language == "de"


def test_a_switch_is_followed_and_one_odd_check_is_not():
    ident = Scripted([("en", 0.97)], [("en", 0.95)], [("it", 0.75), ("en", 0.20)], [("en", 0.9)],
                     [("fr", 0.92), ("en", 0.05)])
    tracker = LanguageTracker(LanguageChoice(), ident)
    speak(tracker, 0.0, 1.0)
    assert tracker.state.language == "en"
    speak(tracker, 1.0, 2.0)
    speak(tracker, 3.0, 2.0)  # Italian leads once, unsure: not a switch
    assert tracker.state.language == "en" and tracker.state.p == pytest.approx(0.20)
    speak(tracker, 5.0, 2.0)
    speak(tracker, 7.0, 2.0)  # French, sure: switch
    state = tracker.state
    assert (state.language, state.previous) == ("fr", "en") and 3.0 <= state.since <= 9.0


def test_two_unsure_checks_in_a_row_switch():
    ident = Scripted([("en", 0.97)], [("es", 0.6), ("en", 0.3)], [("es", 0.6), ("en", 0.3)])
    tracker = LanguageTracker(LanguageChoice(), ident)
    speak(tracker, 0.0, 1.0)
    speak(tracker, 1.0, 2.0)
    assert tracker.state.language == "en"
    speak(tracker, 3.0, 2.0)
    assert tracker.state.language == "es"


def test_an_allowed_set_restricts_and_flags_speech_outside_it():
    ident = Scripted([("pt", 0.6), ("es", 0.35), ("en", 0.01)], [("ja", 0.95), ("es", 0.01), ("en", 0.01)])
    tracker = LanguageTracker(LanguageChoice.parse("en,es"), ident)
    speak(tracker, 0.0, 1.0)
    assert tracker.state.language == "es" and tracker.state.p == pytest.approx(0.35 / 0.36)
    assert tracker.state.outside is None
    speak(tracker, 1.0, 2.0)  # sure it is Japanese: outside, the language stays
    state = tracker.state
    assert state.language == "es" and state.outside == ("ja", 0.95)
    assert state.outside_reason == "speech in Japanese (p=0.95), outside the allowed languages"


def test_a_fixed_language_is_kept_and_other_speech_is_flagged():
    ident = Scripted([("en", 0.98), ("de", 0.01)])
    tracker = LanguageTracker(LanguageChoice.parse("de"), ident)
    speak(tracker, 0.0, 1.0)
    assert tracker.state.language == "de" and tracker.state.outside == ("en", 0.98)
    assert tracker.state.to_json()["outside"] == {"language": "en", "p": 0.98}


def test_a_pause_before_the_first_check_decides_on_what_was_said():
    ident = Scripted([("fr", 0.5), ("it", 0.3)])
    tracker = LanguageTracker(LanguageChoice(), ident)
    tracker.hear(np.full(int(0.5 * SAMPLE_RATE), 0.1, dtype=np.float32), 0.0, [(0.0, 0.5)])
    assert tracker.check(force=True) and tracker.state.language == "fr"


def test_windows_transcripts_and_shares_carry_the_language_of_their_words():
    words = [Word(0.0, 1.0, " Hola", 0.9, "es"), Word(1.0, 1.5, " amigo", 0.9, "es"), Word(2.0, 2.4, " hi", 0.9, "en")]
    window = Window(0, 0.0, 4.0, np.zeros(0, np.float32), [], words)
    assert window.language == "es"
    assert Window(1, 4.0, 8.0, np.zeros(0, np.float32), [], []).language is None
    track = SpeechTrack("s", keep_s=60)
    state = SpokenLanguage("es", 0.91, 0.0)
    assert track.follow_language(AsrUpdate([], [], 0.0, language=state)) == state
    assert track.follow_language(AsrUpdate([], [], 0.0, language=state)) is None  # no change, no status
    spanish, english = track.take(AsrUpdate(words, [], 3.0, language=state), audio_end=3.0)  # one per language
    assert (spanish.language, spanish.language_p, spanish.text) == ("es", 0.91, "Hola amigo")
    assert (english.language, english.language_p, english.text) == ("en", None, "hi")
    assert track.language_shares == {"es": pytest.approx(0.7895, abs=1e-3), "en": pytest.approx(0.2105, abs=1e-3)}


@pytest.mark.parametrize("command", ["analyze", "watch", "serve"])
def test_an_unknown_language_on_the_command_line_is_one_line_and_exit_2(capsys, command):
    from cli import main as cli_main

    args = {"analyze": ["clip.mp4"], "watch": ["clip.mp4"], "serve": []}[command]
    with pytest.raises(SystemExit) as info:
        cli_main([command, *args, "--language", "klingon"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    assert "argument --language: unknown language 'klingon': Whisper transcribes only these codes: af am" in err


async def test_a_start_request_names_its_language_or_gets_bad_request():
    import json

    from websockets.asyncio.client import connect

    from testkit.servers import RunningServer, make_hub

    hub = make_hub()
    async with RunningServer(hub) as server, connect(server.url) as ws:
        await ws.recv()
        for language, says in (("xx", "unknown language 'xx'"), (5, "'language' is auto"), ("", "'language' is auto"),
                               ("en,,de", "codes separated by commas")):
            await ws.send(json.dumps({"type": "start", "source": "vna_mosi_2.6.mp4", "language": language}))
            reply = json.loads(await ws.recv())
            assert reply["type"] == "error" and reply["code"] == "bad_request" and says in reply["message"], reply
        assert not hub.streams  # nothing was started
        await ws.send(json.dumps({"type": "start", "source": "vna_mosi_2.6.mp4", "language": "DE, en",
                                  "realtime": False}))
        reply = json.loads(await ws.recv())
        assert reply["type"] == "subscribed"
        assert hub.streams[reply["stream"]].pipeline.config.language == "de,en"
