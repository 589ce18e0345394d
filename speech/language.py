"""Which language is spoken: Whisper's language identification over a stream's recent speech, followed over time.

`--language auto` (any language Whisper knows), `--language es` (one) or `--language en,es` (an allowed set) is a
`LanguageChoice`. A stream's `LanguageTracker` collects the speech the VAD finds (only speech: silence and music
would vote for a random language), asks the multilingual Whisper model which language the latest few seconds are
in, and decides:

- first, as soon as 1 s of speech says one language with p >= 0.9 (renormalised over the allowed set), 2 s with
  p >= 0.7, or after 4 s of speech whatever leads then; until then a stream's passes wait rather than transcribe in
  a guessed language (one second is enough for English, Spanish, German; Portuguese, Italian and Chinese sometimes
  pass for a neighbour on their first second);
- then every 1.5 s of new speech, over the last 3 s of speech: a different language takes over when it leads one
  check with p >= 0.8 or two checks in a row, so a switch is followed within a few seconds and one odd check is not;
- speech that Whisper is sure (p >= 0.8) is in a language outside the allowed set is `outside`: it is not
  transcribed in a language it is not in (that gives a made-up translation), and its text is marked missing.

One identification encodes 10 s of audio (at most 7 s of speech and at least 3 s of padding: without the padding
the probabilities fall apart, with a full 30 s window it costs five times as much): about 0.15 s on one CPU core
for Whisper base.

Only media time and audio go in; this module knows nothing of windows or sentiment."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from media import SAMPLE_RATE
from protocol import quoted

# The 99 languages of Whisper's multilingual models before large-v3 (code as Whisper writes it → English name).
WHISPER_LANGUAGES: dict[str, str] = {
    "en": "English", "zh": "Chinese", "de": "German", "es": "Spanish", "ru": "Russian", "ko": "Korean",
    "fr": "French", "ja": "Japanese", "pt": "Portuguese", "tr": "Turkish", "pl": "Polish", "ca": "Catalan",
    "nl": "Dutch", "ar": "Arabic", "sv": "Swedish", "it": "Italian", "id": "Indonesian", "hi": "Hindi",
    "fi": "Finnish", "vi": "Vietnamese", "he": "Hebrew", "uk": "Ukrainian", "el": "Greek", "ms": "Malay",
    "cs": "Czech", "ro": "Romanian", "da": "Danish", "hu": "Hungarian", "ta": "Tamil", "no": "Norwegian",
    "th": "Thai", "ur": "Urdu", "hr": "Croatian", "bg": "Bulgarian", "lt": "Lithuanian", "la": "Latin",
    "mi": "Maori", "ml": "Malayalam", "cy": "Welsh", "sk": "Slovak", "te": "Telugu", "fa": "Persian",
    "lv": "Latvian", "bn": "Bengali", "sr": "Serbian", "az": "Azerbaijani", "sl": "Slovenian", "kn": "Kannada",
    "et": "Estonian", "mk": "Macedonian", "br": "Breton", "eu": "Basque", "is": "Icelandic", "hy": "Armenian",
    "ne": "Nepali", "mn": "Mongolian", "bs": "Bosnian", "kk": "Kazakh", "sq": "Albanian", "sw": "Swahili",
    "gl": "Galician", "mr": "Marathi", "pa": "Punjabi", "si": "Sinhala", "km": "Khmer", "sn": "Shona",
    "yo": "Yoruba", "so": "Somali", "af": "Afrikaans", "oc": "Occitan", "ka": "Georgian", "be": "Belarusian",
    "tg": "Tajik", "sd": "Sindhi", "gu": "Gujarati", "am": "Amharic", "yi": "Yiddish", "lo": "Lao",
    "uz": "Uzbek", "fo": "Faroese", "ht": "Haitian Creole", "ps": "Pashto", "tk": "Turkmen", "nn": "Nynorsk",
    "mt": "Maltese", "sa": "Sanskrit", "lb": "Luxembourgish", "my": "Myanmar", "bo": "Tibetan", "tl": "Tagalog",
    "mg": "Malagasy", "as": "Assamese", "tt": "Tatar", "haw": "Hawaiian", "ln": "Lingala", "ha": "Hausa",
    "ba": "Bashkir", "jw": "Javanese", "su": "Sundanese",
}
ENGLISH = "en"


def language_name(code: str | None) -> str:
    return WHISPER_LANGUAGES.get(code or "", code or "unknown")


@dataclass(frozen=True)
class LanguageChoice:
    """The languages a stream may be in: `allowed` empty for any (auto), one code, or a set (in the order given)."""

    allowed: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> LanguageChoice:
        """'auto', 'es' or 'en,es' (case and spaces ignored); ValueError naming what is wrong otherwise."""
        text = (text or "auto").strip().lower()
        if text == "auto":
            return cls()
        codes = [c.strip() for c in text.split(",")]
        if any(not c for c in codes):
            raise ValueError(f"language {quoted(text)}: give auto, a language code (es) or codes separated by commas "
                             f"(en,es)")
        unknown = [c for c in codes if c not in WHISPER_LANGUAGES]
        if unknown:
            shown = ", ".join(quoted(c, 12) for c in unknown[:3])
            raise ValueError(f"unknown language {shown}: Whisper transcribes only these codes: "
                             f"{' '.join(sorted(WHISPER_LANGUAGES))}")
        return cls(tuple(dict.fromkeys(codes)))

    @property
    def auto(self) -> bool:
        return not self.allowed

    @property
    def fixed(self) -> str | None:
        """The one language of a choice of one."""
        return self.allowed[0] if len(self.allowed) == 1 else None

    def __str__(self) -> str:
        return ",".join(self.allowed) if self.allowed else "auto"


@dataclass(frozen=True)
class SpokenLanguage:
    """A stream's language as the tracker sees it now. language: the one its speech is transcribed and judged in
    (None before the first decision); p: its probability in the latest identification (renormalised over the
    allowed set); since: media time it became current; previous: the one before it; outside: (code, p) while the
    latest speech is, with p >= outside_p, in a language outside the allowed set."""

    language: str | None
    p: float | None = None
    since: float = 0.0
    previous: str | None = None
    outside: tuple[str, float] | None = None

    def to_json(self) -> dict:
        return {"language": self.language, "p": None if self.p is None else round(self.p, 3),
                "since": round(self.since, 3), "previous": self.previous,
                "outside": None if self.outside is None else {"language": self.outside[0],
                                                              "p": round(self.outside[1], 3)}}

    @property
    def outside_reason(self) -> str | None:
        if self.outside is None:
            return None
        code, p = self.outside
        return f"speech in {language_name(code)} (p={p:.2f}), outside the allowed languages"


Identify = Callable[[np.ndarray], Sequence[tuple[str, float]]]


def whisper_identifier(model, window_s: float = 10.0) -> Identify:
    """audio → [(code, p)] best first, from a multilingual faster-whisper model: one encoder run over the audio
    padded to window_s, then Whisper's language token probabilities."""
    if not model.model.is_multilingual:
        raise ValueError("language identification needs a multilingual Whisper model (base), not an English-only one")
    from faster_whisper.audio import pad_or_trim

    frames = int(window_s * 100)

    def identify(audio: np.ndarray) -> list[tuple[str, float]]:
        features = model.feature_extractor(audio[-int((window_s - 3.0) * SAMPLE_RATE):])
        encoded = model.encode(pad_or_trim(features[:, :-1], frames))
        return [(token[2:-2], float(p)) for token, p in model.model.detect_language(encoded)[0]]

    return identify


class LanguageTracker:
    """One stream's language over time, from the speech it is shown (`hear`) and identifications run when due
    (`check`). Used by one thread at a time (the stream's ASR passes)."""

    def __init__(self, choice: LanguageChoice, identify: Identify, *, first_s: float = 1.0, sure_p: float = 0.9,
                 decide_p: float = 0.7, decide_p_after_s: float = 2.0, decide_by_s: float = 4.0,
                 recheck_s: float = 1.5, window_s: float = 3.0, switch_p: float = 0.8, outside_p: float = 0.8) -> None:
        self.choice = choice
        self.identify = identify
        self.first_s, self.sure_p, self.decide_p, self.decide_by_s = first_s, sure_p, decide_p, decide_by_s
        self.decide_p_after_s = decide_p_after_s
        self.recheck_s, self.window_s, self.switch_p, self.outside_p = recheck_s, window_s, switch_p, outside_p
        self.state = SpokenLanguage(None)
        self.checks = 0
        self._recent: deque[np.ndarray] = deque()  # the latest speech, at most window_s of it
        self._recent_samples = 0
        self._heard_until = float("-inf")  # media time of the last speech sample taken
        self._speech_s = 0.0  # seconds of speech heard in all
        self._new_s = 0.0  # seconds of speech since the last check
        self._last_speech_t = 0.0
        self._challenger: str | None = None  # a language that led the last check without taking over

    # ---- speech in ----------------------------------------------------------------------------------------
    def hear(self, audio: np.ndarray, t0: float, regions: Sequence[tuple[float, float]]) -> None:
        """The speech regions (media time) of `audio` (starting at t0) that it has not heard yet."""
        for start, end in regions:
            start = max(start, self._heard_until, t0)
            if end - start < 0.05:
                continue
            piece = audio[int(round((start - t0) * SAMPLE_RATE)):int(round((end - t0) * SAMPLE_RATE))]
            if not piece.size:
                continue
            self._recent.append(piece)
            self._recent_samples += piece.size
            seconds = piece.size / SAMPLE_RATE
            self._speech_s += seconds
            self._new_s += seconds
            self._heard_until = end
            self._last_speech_t = end
        limit = int(self.window_s * SAMPLE_RATE)
        while self._recent and self._recent_samples - self._recent[0].size >= limit:
            self._recent_samples -= self._recent.popleft().size

    @property
    def decided(self) -> bool:
        return self.state.language is not None

    @property
    def due(self) -> bool:
        if not self.decided:
            return self._new_s >= (self.first_s if self.checks == 0 else min(self.first_s, 1.0))
        return self._new_s >= self.recheck_s

    def wait_for_speech(self, final: bool = False) -> bool:
        """Whether a pass should hold its speech back for now: not decided yet (unless the stream is ending)."""
        return not self.decided and not final

    # ---- decisions ----------------------------------------------------------------------------------------
    def check(self, force: bool = False) -> bool:
        """Identify the latest speech if a check is due (or `force` and there is any); True if the current
        language or its `outside` state changed."""
        if not self._recent or not (self.due or force):
            return False
        audio = np.concatenate(list(self._recent))[-int(self.window_s * SAMPLE_RATE):]
        ranked = [(code, p) for code, p in self.identify(audio) if code in WHISPER_LANGUAGES]
        self.checks += 1
        self._new_s = 0.0
        before = self.state
        self.state = self._decide(ranked, force)
        return (self.state.language, self.state.outside is None) != (before.language, before.outside is None)

    def _decide(self, ranked: list[tuple[str, float]], force: bool) -> SpokenLanguage:
        state = self.state
        if not ranked:
            return state
        top, top_p = ranked[0]
        allowed = [(c, p) for c, p in ranked if self.choice.auto or c in self.choice.allowed]
        if not allowed:
            allowed = [(self.choice.allowed[0], 0.0)]
        total = 1.0 if self.choice.auto else (sum(p for _, p in allowed) or 1.0)
        best, best_p = allowed[0][0], allowed[0][1] / total
        outside = (top, top_p) if top != best and top_p >= self.outside_p else None
        t = self._last_speech_t
        if state.language is None:
            if self.choice.fixed:
                return SpokenLanguage(self.choice.fixed, best_p, t, None, outside)
            if outside is not None:
                return SpokenLanguage(None, None, 0.0, None, outside) if not self._decide_now(force) else \
                    SpokenLanguage(best, best_p, t, None, outside)
            wanted = self.decide_p if self._speech_s >= self.decide_p_after_s else self.sure_p
            if best_p >= wanted or self._decide_now(force):
                return SpokenLanguage(best, best_p, t, None, None)
            return state
        current_p = next((p / total for c, p in allowed if c == state.language), 0.0)
        if best == state.language or outside is not None:
            self._challenger = None
            return SpokenLanguage(state.language, current_p, state.since, state.previous, outside)
        if best_p >= self.switch_p or self._challenger == best:
            self._challenger = None
            return SpokenLanguage(best, best_p, max(t - self.window_s, state.since), state.language, None)
        self._challenger = best
        return SpokenLanguage(state.language, current_p, state.since, state.previous, None)

    def _decide_now(self, force: bool) -> bool:
        return force or self._speech_s >= self.decide_by_s
