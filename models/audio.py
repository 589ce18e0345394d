"""Audio tone and mood: an embedding of a 16 kHz mono clip, and the scorer that turns it into P(positive).

The embedding joins three views of the same clip:
- pooled states of the shared Whisper encoder (mean and standard deviation over its 20 ms frames), which carry voice
  quality, speaking style and the timbre, harmony and rhythm of music;
- a short vector of prosody and spectral statistics computed with numpy (energy, pitch, voicing, spectral shape,
  onset rate and pulse), which carries the loudness and pitch movement that mark arousal and valence in speech;
- tonal statistics of music (numpy chroma): how major or minor the clip sounds against the Krumhansl-Kessler key
  profiles, how clear its key is and how fast its harmony moves, and its key-normalised pitch-class profile. Mode is
  one of music's strongest valence cues and the speech encoder barely sees it (on held-out validation songs the
  tonal view raised per-song valence accuracy from 0.845 to 0.859).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from models.base import ModalityScore
from stream.media import SAMPLE_RATE

FEATURE_VERSION = 2

# Whisper's encoder takes at most 30 s (3000 mel frames); longer clips are cut into equal chunks of at most this.
MAX_CHUNK_SECONDS = 30.0
MAX_MEL_FRAMES = 3000
MIN_SECONDS = 0.25
ENCODE_BATCH = 8

# A clip whose loud frames (95th percentile of 25 ms frame RMS) stay below this is silence: a quiet room records
# at about -60 to -70 dBFS, while the quietest RAVDESS utterances and the quiet passages of the 4Q music reach
# about -35 dBFS or more in their loud frames.
SILENCE_DBFS = -60.0
# The heads learn from clips of 2.9-30 s; pooled statistics of a much shorter clip are outside what they saw
# (on 1.3 s talking-head clips the audio head answered ~0.01 whatever was said), so such clips are not scored.
MIN_SCORED_S = 2.0
# evidence: a 25 ms frame this quiet, outside speech, counts as silence in a window's silence_share
QUIET_FRAME_DBFS = -50.0

_FRAME = 400  # 25 ms
_HOP = 160  # 10 ms
_PITCH_FRAME = 640  # 40 ms: two periods of a 50 Hz voice
_PITCH_FFT = 1024  # >= frame + longest lag, so the autocorrelation does not wrap
_MIN_F0, _MAX_F0 = 60.0, 500.0
_VOICED_PEAK = 0.5  # normalised autocorrelation peak above which a frame counts as voiced
_EPS = 1e-10

PROSODY_NAMES: tuple[str, ...] = (
    "rms_db_mean", "rms_db_std", "rms_db_p10", "rms_db_p50", "rms_db_p90", "rms_db_range", "active_ratio",
    "rms_delta_mean",
    "voiced_ratio", "periodicity_mean", "f0_semitones_median", "f0_semitones_std", "f0_semitones_range",
    "f0_delta_mean", "f0_slope",
    "centroid_mean", "centroid_std", "rolloff_mean", "rolloff_std", "flatness_mean", "flatness_std",
    "bandwidth_mean", "flux_mean", "flux_std",
    "zcr_mean", "zcr_std",
    "onset_rate", "pulse_strength", "pulse_tempo",
)


def _frames(x: np.ndarray, size: int, hop: int) -> np.ndarray:
    if len(x) < size:
        x = np.pad(x, (0, size - len(x)))
    n = 1 + (len(x) - size) // hop
    return np.lib.stride_tricks.sliding_window_view(x, size)[::hop][:n]


def frame_rms_db(audio: np.ndarray) -> np.ndarray:
    """RMS of 25 ms frames (10 ms hop) in dBFS."""
    frames = _frames(audio, _FRAME, _HOP)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    return 20.0 * np.log10(rms + _EPS)


def active_level_db(audio: np.ndarray) -> float:
    """The level of the clip's loud parts: 95th percentile of frame RMS in dBFS (-200 for digital silence)."""
    if len(audio) == 0:
        return -200.0
    return float(np.percentile(frame_rms_db(audio), 95))


_PITCH_WINDOW = np.hanning(_PITCH_FRAME)
# Dividing by the window's own (normalised) autocorrelation undoes the taper's bias toward short lags (Boersma 1993).
_PITCH_WINDOW_ACF = np.fft.irfft(np.abs(np.fft.rfft(_PITCH_WINDOW, n=_PITCH_FFT)) ** 2)[:_PITCH_FRAME]
_PITCH_WINDOW_ACF = _PITCH_WINDOW_ACF / _PITCH_WINDOW_ACF[0]


def _pitch_track(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per 10 ms frame: F0 in Hz (0 where unvoiced) and the normalised autocorrelation peak (periodicity)."""
    frames = _frames(audio.astype(np.float64), _PITCH_FRAME, _HOP)
    frames = frames - frames.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(frames * _PITCH_WINDOW, n=_PITCH_FFT, axis=1)
    acf = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :_PITCH_FRAME]
    acf = acf / (acf[:, :1] + _EPS) / _PITCH_WINDOW_ACF
    lo, hi = int(SAMPLE_RATE / _MAX_F0), int(SAMPLE_RATE / _MIN_F0)
    band = acf[:, lo:hi + 1]
    k = np.argmax(band, axis=1)
    peak = band[np.arange(len(band)), k]
    # Parabolic interpolation around the peak lag for sub-sample F0.
    left = band[np.arange(len(band)), np.clip(k - 1, 0, band.shape[1] - 1)]
    right = band[np.arange(len(band)), np.clip(k + 1, 0, band.shape[1] - 1)]
    denom = left - 2 * peak + right
    shift = np.where(np.abs(denom) > _EPS, 0.5 * (left - right) / np.where(np.abs(denom) > _EPS, denom, 1.0), 0.0)
    lag = lo + k + np.clip(shift, -0.5, 0.5)
    energy_db = 10.0 * np.log10(np.mean(frames ** 2, axis=1) + _EPS)
    loud = energy_db > energy_db.max() - 35.0
    voiced = (peak > _VOICED_PEAK) & loud & (k > 0) & (k < band.shape[1] - 1)
    f0 = np.where(voiced, SAMPLE_RATE / lag, 0.0)
    return f0, np.clip(peak, 0.0, 1.0)


def _spectral(audio: np.ndarray) -> dict[str, np.ndarray]:
    frames = _frames(audio.astype(np.float64), _FRAME, _HOP) * np.hanning(_FRAME)
    mag = np.abs(np.fft.rfft(frames, n=512, axis=1))
    power = mag ** 2
    freqs = np.fft.rfftfreq(512, 1.0 / SAMPLE_RATE)
    total = power.sum(axis=1) + _EPS
    centroid = (power @ freqs) / total
    bandwidth = np.sqrt((power @ freqs ** 2) / total - centroid ** 2 + _EPS)
    cumulative = np.cumsum(power, axis=1)
    rolloff = freqs[np.argmax(cumulative >= 0.85 * cumulative[:, -1:], axis=1)]
    flatness = np.exp(np.mean(np.log(power + _EPS), axis=1)) / (np.mean(power, axis=1) + _EPS)
    unit = mag / (np.linalg.norm(mag, axis=1, keepdims=True) + _EPS)
    flux = np.r_[0.0, np.linalg.norm(np.diff(unit, axis=0), axis=1)]
    log_mag = np.log1p(100.0 * mag / (mag.max() + _EPS))
    onset_env = np.r_[0.0, np.maximum(np.diff(log_mag, axis=0), 0.0).mean(axis=1)]
    raw = audio.astype(np.float64)
    zc_frames = _frames(raw, _FRAME, _HOP)
    zcr = np.mean(np.abs(np.diff(np.signbit(zc_frames), axis=1)), axis=1)
    return {"centroid": centroid, "bandwidth": bandwidth, "rolloff": rolloff, "flatness": flatness, "flux": flux,
            "onset_env": onset_env, "zcr": zcr}


def _onsets_and_pulse(onset_env: np.ndarray) -> tuple[float, float, float]:
    """Onsets per second, and the strength and tempo (BPM / 200) of the strongest pulse between 40 and 200 BPM."""
    seconds = len(onset_env) * _HOP / SAMPLE_RATE
    if len(onset_env) < 5:
        return 0.0, 0.0, 0.0
    # An onset is a local maximum that stands above the envelope's local mean (0.3 s) by half its spread.
    kernel = np.ones(31) / 31
    local = np.convolve(onset_env, kernel, mode="same")
    threshold = local + 0.5 * onset_env.std()
    is_peak = (onset_env[1:-1] > onset_env[:-2]) & (onset_env[1:-1] >= onset_env[2:]) & (onset_env[1:-1] > threshold[1:-1])
    onset_rate = float(is_peak.sum()) / max(seconds, _EPS)
    centred = onset_env - onset_env.mean()
    acf = np.correlate(centred, centred, mode="full")[len(centred) - 1:]
    if acf[0] <= _EPS:
        return onset_rate, 0.0, 0.0
    acf = acf / acf[0]
    frames_per_second = SAMPLE_RATE / _HOP
    lo, hi = int(frames_per_second * 60 / 200), int(frames_per_second * 60 / 40)
    if len(acf) <= lo + 1:
        return onset_rate, 0.0, 0.0
    # Only a local maximum is a pulse: at the shortest lags the autocorrelation is high merely because it is smooth.
    band = acf[lo - 1:min(hi, len(acf) - 2) + 2]
    is_peak = (band[1:-1] > band[:-2]) & (band[1:-1] >= band[2:])
    if not is_peak.any():
        return onset_rate, 0.0, 0.0
    candidates = np.flatnonzero(is_peak)
    k = int(candidates[np.argmax(band[1:-1][candidates])])
    tempo = 60.0 * frames_per_second / (lo + k) / 200.0
    return onset_rate, float(band[1 + k]), float(tempo)


def prosody_features(audio: np.ndarray) -> np.ndarray:
    """Energy, pitch, spectral-shape and rhythm statistics of one clip, scaled to roughly unit range (see
    PROSODY_NAMES). Levels are in dBFS / 20, frequencies in kHz / 8, pitch in semitones / 12."""
    audio = np.asarray(audio, dtype=np.float32)
    rms_db = np.maximum(frame_rms_db(audio), -100.0)
    loud = rms_db > rms_db.max() - 30.0
    f0, periodicity = _pitch_track(audio)
    voiced = f0 > 0
    spec = _spectral(audio)
    onset_rate, pulse_strength, pulse_tempo = _onsets_and_pulse(spec["onset_env"])

    p10, p50, p90 = np.percentile(rms_db, [10, 50, 90])
    if voiced.sum() >= 3:
        semitones = 12.0 * np.log2(f0[voiced] / 100.0)
        st_median = float(np.median(semitones))
        st_std = float(np.std(semitones))
        st_lo, st_hi = np.percentile(semitones, [5, 95])
        jumps = np.abs(np.diff(semitones))
        st_delta = float(np.mean(jumps[jumps < 4.0])) if np.any(jumps < 4.0) else 0.0
        t = np.flatnonzero(voiced) * _HOP / SAMPLE_RATE
        st_slope = float(np.polyfit(t, semitones, 1)[0]) if np.ptp(t) > 0 else 0.0
    else:
        st_median = st_std = st_lo = st_hi = st_delta = st_slope = 0.0
    values = [
        float(np.mean(rms_db)) / 20, float(np.std(rms_db)) / 20, p10 / 20, p50 / 20, p90 / 20, (p90 - p10) / 20,
        float(np.mean(loud)), float(np.mean(np.abs(np.diff(rms_db)))) / 20 if len(rms_db) > 1 else 0.0,
        float(np.mean(voiced)), float(np.mean(periodicity[loud[: len(periodicity)]])) if loud.any() else 0.0,
        st_median / 12, st_std / 12, (st_hi - st_lo) / 12, st_delta, float(np.clip(st_slope, -24, 24)) / 12,
        float(np.mean(spec["centroid"][loud])) / 8000, float(np.std(spec["centroid"][loud])) / 8000,
        float(np.mean(spec["rolloff"][loud])) / 8000, float(np.std(spec["rolloff"][loud])) / 8000,
        float(np.mean(np.log10(spec["flatness"][loud] + _EPS))) / 5,
        float(np.std(np.log10(spec["flatness"][loud] + _EPS))) / 5,
        float(np.mean(spec["bandwidth"][loud])) / 8000,
        float(np.mean(spec["flux"][loud])), float(np.std(spec["flux"][loud])),
        float(np.mean(spec["zcr"][loud])), float(np.std(spec["zcr"][loud])),
        onset_rate / 10, pulse_strength, pulse_tempo,
    ]
    out = np.asarray(values, dtype=np.float32)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


TONAL_NAMES: tuple[str, ...] = (
    "major_key_fit", "minor_key_fit", "major_minus_minor", "best_key_is_major", "chroma_entropy", "chroma_change",
    "major_frame_ratio", *(f"chroma_from_key_{k}" for k in range(12)),
)
_CHROMA_FFT = 4096  # 3.9 Hz bins at 16 kHz: semitones apart from about 65 Hz up
_CHROMA_HOP = 1024
_CHROMA_LO, _CHROMA_HI = 65.0, 2100.0
# Krumhansl-Kessler probe-tone profiles, C major and C minor
_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def _zscore(v: np.ndarray, axis: int = -1) -> np.ndarray:
    return (v - v.mean(axis=axis, keepdims=True)) / (v.std(axis=axis, keepdims=True) + _EPS)


_KEY_PROFILES = np.stack([np.roll(_zscore(_KK_MAJOR), k) for k in range(12)] +
                         [np.roll(_zscore(_KK_MINOR), k) for k in range(12)])  # 24 keys x 12 pitch classes
_CHROMA_FREQS = np.fft.rfftfreq(_CHROMA_FFT, 1.0 / SAMPLE_RATE)
_CHROMA_BAND = (_CHROMA_FREQS >= _CHROMA_LO) & (_CHROMA_FREQS <= _CHROMA_HI)
# FFT bin (in band) -> pitch class, counted from C like the profiles (MIDI note number mod 12)
_PITCH_CLASS = np.round(69 + 12 * np.log2(_CHROMA_FREQS[_CHROMA_BAND] / 440.0)).astype(int) % 12
_CHROMA_MAP = np.eye(12)[_PITCH_CLASS]


def tonal_features(audio: np.ndarray) -> np.ndarray:
    """Key and mode statistics of one clip (see TONAL_NAMES); all roughly in [0, 1] or [-1, 1]."""
    audio = np.asarray(audio, dtype=np.float64)
    frames = _frames(audio, _CHROMA_FFT, _CHROMA_HOP) * np.hanning(_CHROMA_FFT)
    mag = np.abs(np.fft.rfft(frames, axis=1))[:, _CHROMA_BAND]
    chroma = np.log1p(100.0 * mag / (mag.max() + _EPS)) @ _CHROMA_MAP
    chroma = chroma / (chroma.sum(axis=1, keepdims=True) + _EPS)
    mean = chroma.mean(axis=0)
    fit = _KEY_PROFILES @ _zscore(mean) / 12.0  # Pearson correlation with each of the 24 keys
    best = int(np.argmax(fit))
    major, minor = float(fit[:12].max()), float(fit[12:].max())
    entropy = float(-(chroma * np.log(chroma + _EPS)).sum(axis=1).mean() / np.log(12))
    change = float(np.abs(np.diff(chroma, axis=0)).sum(axis=1).mean()) if len(chroma) > 1 else 0.0
    per_frame = _KEY_PROFILES @ _zscore(chroma, axis=1).T / 12.0
    major_frames = float((per_frame[:12].max(axis=0) > per_frame[12:].max(axis=0)).mean())
    from_key = np.roll(mean, -(best % 12)) * 12.0
    out = np.r_[major, minor, major - minor, float(best < 12), entropy, change, major_frames, from_key]
    return np.nan_to_num(out.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)


# Whisper blocks the audio embedding reads by default: tiny.en's third of four blocks carries more of a voice's and a
# song's affect than the last one, which is tuned to words (RAVDESS actors 19-24 valence macro F1 0.86 vs 0.83, 4Q
# music per song 0.82 vs 0.74: scripts/explore_audio_features.py).
DEFAULT_ENCODER_BLOCKS = {"tiny.en": 3}
_MODEL_ID = re.compile(r"^whisper-(?P<size>[A-Za-z0-9.]+)-enc(?P<blocks>\d*)-meanstd\+prosody(?P<prosody>\d+)"
                       r"(\+tonal(?P<tonal>\d+))?-v(?P<v>\d+)$")


def _as_clip(clip: Any) -> np.ndarray:
    audio = np.asarray(clip)
    if audio.ndim != 1:
        raise ValueError(f"an audio clip must be 1-D mono samples, got shape {audio.shape}")
    if audio.dtype == np.int16:
        audio = audio.astype(np.float32) / 32768.0
    elif not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"audio samples must be float (or int16), got {audio.dtype}")
    audio = audio.astype(np.float32, copy=False)
    if len(audio) < MIN_SECONDS * SAMPLE_RATE:
        raise ValueError(f"an audio clip needs at least {MIN_SECONDS} s ({int(MIN_SECONDS * SAMPLE_RATE)} samples), "
                         f"got {len(audio)} samples")
    if not np.all(np.isfinite(audio)):
        raise ValueError("audio samples must be finite")
    return audio


def live_windows(audio: np.ndarray, window_s: float = 4.0, hop_s: float = 2.0) -> list[np.ndarray]:
    """A whole recording cut into the live pipeline's windows (stream.windows.window_spans)."""
    from stream.windows import window_spans

    return [audio[int(round(t0 * SAMPLE_RATE)):int(round(t1 * SAMPLE_RATE))]
            for t0, t1 in window_spans(len(audio) / SAMPLE_RATE, window_s, hop_s)]


def unscorable(audio: np.ndarray) -> str | None:
    """Why the live audio scorer leaves a window unscored (too short, silence), or None: one rule for the pipeline
    and for evaluation."""
    if len(audio) < MIN_SCORED_S * SAMPLE_RATE:
        return f"too short for the audio model ({len(audio) / SAMPLE_RATE:.1f} s < {MIN_SCORED_S:.0f} s)"
    if active_level_db(audio) < SILENCE_DBFS:
        return "silence"
    return None


def _chunks(audio: np.ndarray) -> list[np.ndarray]:
    """Equal pieces of at most MAX_CHUNK_SECONDS, so no piece is a sliver."""
    n = max(1, math.ceil(len(audio) / (MAX_CHUNK_SECONDS * SAMPLE_RATE)))
    return np.array_split(audio, n)


class AudioEmbedder:
    """Whisper encoder states (mean + std over frames, read after `encoder_blocks` blocks) joined with numpy prosody
    statistics.

    The mel features come from the process's shared Whisper model of that size (models.whisper.load_whisper); the
    encoder is that model's own when all blocks are read, else a copy that stops early (load_whisper_encoder).
    CTranslate2 encoders are thread-safe, so this embedder may run in a worker thread beside the ASR.
    """

    def __init__(self, whisper_size: str = "tiny.en", encoder_blocks: int | None = None, device: str = "auto") -> None:
        import ctranslate2

        from models.whisper import encoder_block_count, load_whisper, load_whisper_encoder

        self._storage_view = ctranslate2.StorageView
        total = encoder_block_count(whisper_size)
        blocks = DEFAULT_ENCODER_BLOCKS.get(whisper_size, total) if encoder_blocks is None else int(encoder_blocks)
        if not 1 <= blocks <= total:
            raise ValueError(f"Whisper {whisper_size} has {total} encoder blocks; cannot read after block {blocks}")
        self.whisper_size = whisper_size
        self.encoder_blocks = blocks
        self._features = load_whisper(whisper_size, device).feature_extractor
        self._encoder = load_whisper_encoder(whisper_size, blocks, device)
        self.encoder_dim = int(self._encode([np.zeros(8000, dtype=np.float32)])[0].shape[-1])
        # the id of the full encoder has no block count, so embeddings and heads made before blocks were selectable
        # keep their id
        depth = "" if blocks == total else str(blocks)
        self.model_id = (f"whisper-{whisper_size}-enc{depth}-meanstd+prosody{len(PROSODY_NAMES)}"
                         f"+tonal{len(TONAL_NAMES)}-v{FEATURE_VERSION}")
        self.dim = 2 * self.encoder_dim + len(PROSODY_NAMES) + len(TONAL_NAMES)

    @classmethod
    def from_model_id(cls, model_id: str, device: str = "auto") -> "AudioEmbedder":
        """The embedder that computes embeddings of this id (as a head's card names them)."""
        m = _MODEL_ID.match(model_id or "")
        if m is None or int(m["prosody"]) != len(PROSODY_NAMES) or int(m["tonal"] or 0) != len(TONAL_NAMES) \
                or int(m["v"]) != FEATURE_VERSION:
            raise ValueError(f"this build cannot compute audio embeddings {model_id!r} (it computes "
                             f"whisper-<size>-enc[<blocks>]-meanstd+prosody{len(PROSODY_NAMES)}"
                             f"+tonal{len(TONAL_NAMES)}-v{FEATURE_VERSION})")
        from models.whisper import encoder_block_count

        size = m["size"]
        blocks = int(m["blocks"]) if m["blocks"] else encoder_block_count(size)
        return cls(size, blocks, device)

    @classmethod
    def for_head(cls, head: Any | None, device: str = "auto") -> "AudioEmbedder":
        """The embedder an audio head was trained on (the default one when there is no head, or its card does not
        say)."""
        model_id = head.embedding_model_id if head is not None else None
        if not model_id:
            return cls(device=device)
        try:
            return cls.from_model_id(model_id, device)
        except ValueError as exc:
            raise RuntimeError(f"audio head {head.name!r}: {exc}; retrain it (scripts/train_default_heads.py)") \
                from None

    def _mel(self, audio: np.ndarray) -> np.ndarray:
        # Called without chunk_length: faster-whisper's extractor only mutates itself when that is given.
        return self._features(audio)[:, :MAX_MEL_FRAMES]

    def _encode(self, pieces: list[np.ndarray]) -> list[np.ndarray]:
        """Encoder states (frames x width) for each piece; pieces of equal mel length are batched together."""
        mels = [self._mel(p) for p in pieces]
        out: list[np.ndarray | None] = [None] * len(mels)
        by_length: dict[int, list[int]] = {}
        for i, mel in enumerate(mels):
            by_length.setdefault(mel.shape[1], []).append(i)
        for indices in by_length.values():
            for start in range(0, len(indices), ENCODE_BATCH):
                batch = indices[start:start + ENCODE_BATCH]
                stacked = np.ascontiguousarray(np.stack([mels[i] for i in batch]), dtype=np.float32)
                states = np.asarray(self._encoder.encode(self._storage_view.from_array(stacked), to_cpu=True))
                for j, i in enumerate(batch):
                    out[i] = states[j]
        return out  # type: ignore[return-value]

    def encoder_states(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """All encoder frames of each clip (a clip over 30 s is encoded in chunks and its frames joined)."""
        audios = [_as_clip(c) for c in clips]
        pieces: list[np.ndarray] = []
        owner: list[int] = []
        for i, audio in enumerate(audios):
            for piece in _chunks(audio):
                pieces.append(piece)
                owner.append(i)
        states = self._encode(pieces)
        joined: list[list[np.ndarray]] = [[] for _ in audios]
        for i, s in zip(owner, states):
            joined[i].append(s)
        return [np.concatenate(parts, axis=0) for parts in joined]

    def embed(self, clips: list[np.ndarray]) -> np.ndarray:
        """(n, dim) float32: [mean of encoder frames, std of encoder frames, prosody features, tonal features]."""
        if not clips:
            return np.zeros((0, self.dim), dtype=np.float32)
        from models.assets import beside

        audios = [_as_clip(c) for c in clips]
        all_states, features = beside(lambda: self.encoder_states(audios),
                                      lambda: [np.concatenate([prosody_features(a), tonal_features(a)])
                                               for a in audios])
        rows = [np.concatenate([states.mean(axis=0), states.std(axis=0), own])
                for states, own in zip(all_states, features)]
        return np.stack(rows).astype(np.float32)


class AudioScorer:
    """P(positive) of each clip from the audio head; silence and empty clips are reported missing, not guessed."""

    def __init__(self, embedder: AudioEmbedder, head: Any | None) -> None:
        self.embedder = embedder
        self.head = head

    def score(self, clips: list[np.ndarray]) -> list[ModalityScore]:
        results: list[ModalityScore | None] = [None] * len(clips)
        to_embed: list[int] = []
        audios: list[np.ndarray] = []
        levels: list[float] = []
        for i, clip in enumerate(clips):
            if clip is None or np.size(clip) == 0:
                results[i] = ModalityScore.missing("no audio")
                continue
            try:
                audio = _as_clip(clip)
            except ValueError as exc:
                results[i] = ModalityScore.missing(f"unusable audio: {exc}")
                continue
            problem = unscorable(audio)
            if problem is not None:
                results[i] = ModalityScore.missing(problem)
                continue
            level = active_level_db(audio)
            if self.head is None:
                results[i] = ModalityScore.missing("no audio head")
                continue
            to_embed.append(i)
            audios.append(audio)
            levels.append(level)
        if to_embed:
            X = self.embedder.embed(audios)
            positivity = np.asarray(self.head.positivity(X), dtype=np.float64)
            prosody_at = 2 * self.embedder.encoder_dim
            names = feature_names(self.embedder.encoder_dim)
            for i, audio, p, level, row in zip(to_embed, audios, positivity, levels, X):
                rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
                prosody = dict(zip(PROSODY_NAMES, row[prosody_at:prosody_at + len(PROSODY_NAMES)].tolist()))
                details = {
                    "rms_db": round(20.0 * math.log10(rms + _EPS), 1),
                    "active_db": round(level, 1),
                    "voiced_ratio": round(prosody["voiced_ratio"], 3),
                }
                if prosody["voiced_ratio"] > 0.05:  # the pitch statistics (semitones above 100 Hz, / 12)
                    details["pitch_hz"] = round(100.0 * 2.0 ** prosody["f0_semitones_median"], 1)
                    details["pitch_variability_st"] = round(12.0 * prosody["f0_semitones_std"], 2)
                if hasattr(self.head, "contributions"):
                    details["top_features"] = top_features(self.head.contributions(row), names)
                results[i] = ModalityScore.of(float(p), details=details)
        return results  # type: ignore[return-value]


def heard_shares(audio: np.ndarray, speech_spans: list[tuple[float, float]]) -> dict[str, float]:
    """What a clip holds, 25 ms frame by frame: speech (frames inside the spans, in seconds from the clip's start),
    silence (quiet frames outside them) and other sound (music, noise): three shares that add up to one."""
    levels = frame_rms_db(np.asarray(audio, dtype=np.float32))
    centres = (np.arange(len(levels)) * _HOP + _FRAME / 2) / SAMPLE_RATE
    speech = np.zeros(len(levels), dtype=bool)
    for start, end in speech_spans:
        speech |= (centres >= start) & (centres < end)
    quiet = levels < QUIET_FRAME_DBFS
    frames = max(len(levels), 1)
    return {"speech_share": round(float(speech.sum()) / frames, 3),
            "silence_share": round(float((quiet & ~speech).sum()) / frames, 3),
            "other_sound_share": round(float((~quiet & ~speech).sum()) / frames, 3)}


def feature_names(encoder_dim: int) -> list[str]:
    """The name of each embedding dimension; the Whisper encoder's pooled states share one name."""
    return ["voice_and_timbre"] * (2 * encoder_dim) + list(PROSODY_NAMES) + list(TONAL_NAMES)


def top_features(contributions: np.ndarray, names: list[str], top: int = 3) -> list[dict]:
    """The named features (the encoder's states summed as one) that pushed this score most, with their signed
    first-order effect on P(positive)."""
    totals: dict[str, float] = {}
    for name, value in zip(names, contributions.tolist()):
        totals[name] = totals.get(name, 0.0) + value
    ranked = sorted(totals.items(), key=lambda item: -abs(item[1]))[:top]
    return [{"feature": name, "effect": round(value, 3)} for name, value in ranked]
