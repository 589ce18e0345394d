"""What numpy hears in a clip, beside the Whisper encoder's view: loudness (and when a clip is silence), pitch and
voicing, spectral shape, onsets and pulse (prosody_features), and how major or minor and how settled in its key the
music sounds (tonal_features)."""

from __future__ import annotations

from typing import Any

import numpy as np

from media import SAMPLE_RATE

# A clip whose loud frames (95th percentile of 25 ms frame RMS) stay below this is silence: a quiet room records
# at about -60 to -70 dBFS, while the quietest RAVDESS utterances and the quiet passages of the 4Q music reach
# about -35 dBFS or more in their loud frames.
SILENCE_DBFS = -60.0
# The heads learn from clips of 2.9-30 s; pooled statistics of a much shorter clip are outside what they saw
# (on 1.3 s talking-head clips the audio head answered ~0.01 whatever was said), so such clips are not scored.
MIN_SCORED_S = 2.0
# evidence: a 25 ms frame this quiet, outside speech, counts as silence in a window's silence_share
QUIET_FRAME_DBFS = -50.0

FRAME_SAMPLES = 400  # 25 ms
HOP_SAMPLES = 160  # 10 ms
_PITCH_FRAME = 640  # 40 ms: two periods of a 50 Hz voice
_PITCH_FFT = 1024  # >= frame + longest lag, so the autocorrelation does not wrap
_MIN_F0, _MAX_F0 = 60.0, 500.0
_VOICED_PEAK = 0.5  # normalised autocorrelation peak above which a frame counts as voiced
EPS = 1e-10

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


def mono_samples(clip: Any, min_seconds: float, what: str = "an audio clip") -> np.ndarray:
    """1-D float32 samples in [-1, 1] (int16 scaled) of at least min_seconds at 16 kHz, all finite; else ValueError
    naming `what`."""
    audio = np.asarray(clip)
    if audio.ndim != 1:
        raise ValueError(f"{what} must be 1-D mono samples, got shape {audio.shape}")
    if audio.dtype == np.int16:
        audio = audio.astype(np.float32) / 32768.0
    elif not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"{what}'s samples must be float (or int16), got {audio.dtype}")
    audio = audio.astype(np.float32, copy=False)
    if len(audio) < min_seconds * SAMPLE_RATE:
        raise ValueError(f"{what} needs at least {min_seconds} s ({int(min_seconds * SAMPLE_RATE)} samples), "
                         f"got {len(audio)} samples")
    if not np.all(np.isfinite(audio)):
        raise ValueError(f"{what}'s samples must be finite")
    return audio


def frame_rms_db(audio: np.ndarray) -> np.ndarray:
    """RMS of 25 ms frames (10 ms hop) in dBFS."""
    frames = _frames(audio, FRAME_SAMPLES, HOP_SAMPLES)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    return 20.0 * np.log10(rms + EPS)


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
    frames = _frames(audio.astype(np.float64), _PITCH_FRAME, HOP_SAMPLES)
    frames = frames - frames.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(frames * _PITCH_WINDOW, n=_PITCH_FFT, axis=1)
    acf = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :_PITCH_FRAME]
    acf = acf / (acf[:, :1] + EPS) / _PITCH_WINDOW_ACF
    lo, hi = int(SAMPLE_RATE / _MAX_F0), int(SAMPLE_RATE / _MIN_F0)
    band = acf[:, lo:hi + 1]
    k = np.argmax(band, axis=1)
    peak = band[np.arange(len(band)), k]
    # Parabolic interpolation around the peak lag for sub-sample F0.
    left = band[np.arange(len(band)), np.clip(k - 1, 0, band.shape[1] - 1)]
    right = band[np.arange(len(band)), np.clip(k + 1, 0, band.shape[1] - 1)]
    denom = left - 2 * peak + right
    shift = np.where(np.abs(denom) > EPS, 0.5 * (left - right) / np.where(np.abs(denom) > EPS, denom, 1.0), 0.0)
    lag = lo + k + np.clip(shift, -0.5, 0.5)
    energy_db = 10.0 * np.log10(np.mean(frames ** 2, axis=1) + EPS)
    loud = energy_db > energy_db.max() - 35.0
    voiced = (peak > _VOICED_PEAK) & loud & (k > 0) & (k < band.shape[1] - 1)
    f0 = np.where(voiced, SAMPLE_RATE / lag, 0.0)
    return f0, np.clip(peak, 0.0, 1.0)


def _spectral(audio: np.ndarray) -> dict[str, np.ndarray]:
    frames = _frames(audio.astype(np.float64), FRAME_SAMPLES, HOP_SAMPLES) * np.hanning(FRAME_SAMPLES)
    mag = np.abs(np.fft.rfft(frames, n=512, axis=1))
    power = mag ** 2
    freqs = np.fft.rfftfreq(512, 1.0 / SAMPLE_RATE)
    total = power.sum(axis=1) + EPS
    centroid = (power @ freqs) / total
    bandwidth = np.sqrt((power @ freqs ** 2) / total - centroid ** 2 + EPS)
    cumulative = np.cumsum(power, axis=1)
    rolloff = freqs[np.argmax(cumulative >= 0.85 * cumulative[:, -1:], axis=1)]
    flatness = np.exp(np.mean(np.log(power + EPS), axis=1)) / (np.mean(power, axis=1) + EPS)
    unit = mag / (np.linalg.norm(mag, axis=1, keepdims=True) + EPS)
    flux = np.r_[0.0, np.linalg.norm(np.diff(unit, axis=0), axis=1)]
    log_mag = np.log1p(100.0 * mag / (mag.max() + EPS))
    onset_env = np.r_[0.0, np.maximum(np.diff(log_mag, axis=0), 0.0).mean(axis=1)]
    raw = audio.astype(np.float64)
    zc_frames = _frames(raw, FRAME_SAMPLES, HOP_SAMPLES)
    zcr = np.mean(np.abs(np.diff(np.signbit(zc_frames), axis=1)), axis=1)
    return {"centroid": centroid, "bandwidth": bandwidth, "rolloff": rolloff, "flatness": flatness, "flux": flux,
            "onset_env": onset_env, "zcr": zcr}


def _onsets_and_pulse(onset_env: np.ndarray) -> tuple[float, float, float]:
    """Onsets per second, and the strength and tempo (BPM / 200) of the strongest pulse between 40 and 200 BPM."""
    seconds = len(onset_env) * HOP_SAMPLES / SAMPLE_RATE
    if len(onset_env) < 5:
        return 0.0, 0.0, 0.0
    # An onset is a local maximum that stands above the envelope's local mean (0.3 s) by half its spread.
    kernel = np.ones(31) / 31
    local = np.convolve(onset_env, kernel, mode="same")
    threshold = local + 0.5 * onset_env.std()
    is_peak = ((onset_env[1:-1] > onset_env[:-2]) & (onset_env[1:-1] >= onset_env[2:])
               & (onset_env[1:-1] > threshold[1:-1]))
    onset_rate = float(is_peak.sum()) / max(seconds, EPS)
    centred = onset_env - onset_env.mean()
    acf = np.correlate(centred, centred, mode="full")[len(centred) - 1:]
    if acf[0] <= EPS:
        return onset_rate, 0.0, 0.0
    acf = acf / acf[0]
    frames_per_second = SAMPLE_RATE / HOP_SAMPLES
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
        t = np.flatnonzero(voiced) * HOP_SAMPLES / SAMPLE_RATE
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
        float(np.mean(np.log10(spec["flatness"][loud] + EPS))) / 5,
        float(np.std(np.log10(spec["flatness"][loud] + EPS))) / 5,
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
    return (v - v.mean(axis=axis, keepdims=True)) / (v.std(axis=axis, keepdims=True) + EPS)


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
    chroma = np.log1p(100.0 * mag / (mag.max() + EPS)) @ _CHROMA_MAP
    chroma = chroma / (chroma.sum(axis=1, keepdims=True) + EPS)
    mean = chroma.mean(axis=0)
    fit = _KEY_PROFILES @ _zscore(mean) / 12.0  # Pearson correlation with each of the 24 keys
    best = int(np.argmax(fit))
    major, minor = float(fit[:12].max()), float(fit[12:].max())
    entropy = float(-(chroma * np.log(chroma + EPS)).sum(axis=1).mean() / np.log(12))
    change = float(np.abs(np.diff(chroma, axis=0)).sum(axis=1).mean()) if len(chroma) > 1 else 0.0
    per_frame = _KEY_PROFILES @ _zscore(chroma, axis=1).T / 12.0
    major_frames = float((per_frame[:12].max(axis=0) > per_frame[12:].max(axis=0)).mean())
    from_key = np.roll(mean, -(best % 12)) * 12.0
    out = np.r_[major, minor, major - minor, float(best < 12), entropy, change, major_frames, from_key]
    return np.nan_to_num(out.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
