"""Whose voice: a speaker embedding (d-vector) of a stretch of 16 kHz speech, for telling the people of a stream apart.

The model is Resemblyzer's GE2E voice encoder (Wan et al. 2018, "Generalized end-to-end loss for speaker
verification"; Apache-2.0), whose weights ship in the `resemblyzer` wheel (`resemblyzer/pretrained.pt`, 17 MB with
its optimizer state). The wheel's own Python code imports librosa and webrtcvad, so it is never imported: the wheel
is installed --no-deps and this module rebuilds its network and its input features from the wheel's sources
(resemblyzer 0.1.4: hparams.py, audio.py, voice_encoder.py):

- input: 40 mel channels of a *power* spectrogram, not a log one (`librosa.feature.melspectrogram(y, sr=16000,
  n_fft=400, hop_length=160, n_mels=40)`: 25 ms Hann window, 10 ms hop, centred frames, Slaney mel scale with
  Slaney area normalisation, |STFT|^2), after the clip's level is raised to -30 dBFS (never lowered);
- network: a 3-layer LSTM 40 → 256, the last layer's final hidden state through a linear 256 → 256, ReLU and L2
  normalisation;
- an utterance: partials of 160 frames (1.6 s) at 1.3 partials a second (a step of 77 frames), the last one kept
  (zero-padded) when it covers at least 75 % of its frames; the utterance's embedding is the mean of its partials'
  embeddings, renormalised (`embed_utterance`).

Resemblyzer's d-vectors are unit vectors with non-negative entries, so two of them have a cosine in [0, 1]: two
1.5-2 s stretches of one RAVDESS actor (different sentences and emotions) 0.53-0.84 (5th-95th percentile, median
0.70), of two actors 0.39-0.69 (median 0.53). Acted emotion moves a voice's d-vector about as far as a change of
speaker does, so `embed` returns them session-compensated (`SessionCompensation`: a nuisance projection fitted on
RAVDESS actors 1-18, scripts/fit_voice_nap.py), which lowers the same-sex equal error rate of single sentences on
the held-out actors from 0.25 to 0.18; `embed(raw=True)` gives resemblyzer's own.

The live pipeline embeds each new stretch of VAD speech (1.5-3 s, speech/speakers.py: SpeechChunker) as it
arrives. Cost on this project's 2-core CPU with one torch thread: about 45 ms for a stretch of up to 1.6 s (one
partial), 80 ms for 3 s; 0.036 s per second of speech, 0.015 s per second of media in benchmarks/speakers.py.
"""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from media import SAMPLE_RATE
from models.assets import ModelNotInstalled, _package_dir
from models.audio_features import mono_samples
from models.runtime import resolve_device

VOICE_PIP = "resemblyzer==0.1.4"
MODEL_ID = "resemblyzer-0.1.4-ge2e-dvector256"

# resemblyzer/hparams.py
MEL_WINDOW_MS = 25
MEL_STEP_MS = 10
MEL_CHANNELS = 40
PARTIAL_FRAMES = 160  # 1.6 s
HIDDEN = 256
EMBEDDING = 256
LAYERS = 3
NORM_TARGET_DBFS = -30.0
# resemblyzer/voice_encoder.py: embed_utterance(rate=1.3, min_coverage=0.75)
PARTIALS_PER_S = 1.3
MIN_COVERAGE = 0.75

N_FFT = SAMPLE_RATE * MEL_WINDOW_MS // 1000  # 400
HOP = SAMPLE_RATE * MEL_STEP_MS // 1000  # 160
PARTIAL_S = PARTIAL_FRAMES * HOP / SAMPLE_RATE  # 1.6
MIN_SECONDS = 0.25  # less than this is not a voice to embed
INT16_MAX = 2 ** 15 - 1


def voice_encoder_weights() -> Path:
    """resemblyzer's pretrained.pt, from its installed wheel (found without importing the package)."""
    path = _package_dir("resemblyzer", VOICE_PIP) / "pretrained.pt"
    if not path.is_file():
        raise ModelNotInstalled(f"the voice encoder's weights are not in the installed resemblyzer wheel ({path}); "
                                f"reinstall it: pip install --no-deps {VOICE_PIP}")
    return path


# ----------------------------------------------------------------------------------------------- features (numpy)
def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = hz / f_sp
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    above = hz >= min_log_hz
    mels[above] = min_log_mel + np.log(hz[above] / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3
    hz = f_sp * mels
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    above = mels >= min_log_mel
    hz[above] = min_log_hz * np.exp(logstep * (mels[above] - min_log_mel))
    return hz


@cache
def mel_filterbank() -> np.ndarray:
    """(40, 201) float32: librosa.filters.mel(sr=16000, n_fft=400, n_mels=40) (fmin 0, fmax 8 kHz, Slaney scale,
    norm='slaney': each triangle has unit area over Hz, scaled 2 / bandwidth)."""
    fft_freqs = np.fft.rfftfreq(N_FFT, d=1.0 / SAMPLE_RATE)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([SAMPLE_RATE / 2]))[0],
                                   MEL_CHANNELS + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    weights = np.zeros((MEL_CHANNELS, len(fft_freqs)))
    for i in range(MEL_CHANNELS):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:MEL_CHANNELS + 2] - mel_f[:MEL_CHANNELS]))[:, None]
    return weights.astype(np.float32)


@cache
def _hann() -> np.ndarray:
    # scipy.signal.get_window('hann', 400, fftbins=True): the periodic Hann window librosa's stft uses
    n = np.arange(N_FFT)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)).astype(np.float32)


def mel_power(audio: np.ndarray) -> np.ndarray:
    """(frames, 40) float32: resemblyzer.audio.wav_to_mel_spectrogram(audio), one frame every 10 ms centred on
    sample 160 * i (1 + len // 160 frames). The ends are padded by reflection as librosa < 0.10 did when the model
    was trained (librosa 0.10 pads zeros: only the first and last frame differ)."""
    audio = np.asarray(audio, dtype=np.float32)
    pad = N_FFT // 2
    padded = np.pad(audio, pad, mode="reflect") if len(audio) > pad else np.pad(audio, pad)
    n_frames = 1 + (len(padded) - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(padded, (n_frames, N_FFT), (padded.strides[0] * HOP,
                                                                         padded.strides[0]), writeable=False)
    spectrum = np.fft.rfft(frames * _hann(), axis=1)
    power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
    return power @ mel_filterbank().T


def normalize_volume(audio: np.ndarray, target_dbfs: float = NORM_TARGET_DBFS) -> np.ndarray:
    """The clip raised to target_dbfs RMS, never lowered (resemblyzer.audio.normalize_volume(increase_only=True)):
    the model reads a power spectrogram, so its input's level matters."""
    rms = float(np.sqrt(np.mean((audio.astype(np.float64) * INT16_MAX) ** 2)))
    if rms <= 0:
        return audio
    change = target_dbfs - 20 * np.log10(rms / INT16_MAX)
    if change <= 0:
        return audio
    return (audio * np.float32(10 ** (change / 20))).astype(np.float32)


def partial_starts(n_samples: int) -> list[int]:
    """The first mel frame of each 160-frame partial of an utterance of n_samples
    (resemblyzer VoiceEncoder.compute_partial_slices(n_samples, rate=1.3, min_coverage=0.75))."""
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    step = int(np.round((SAMPLE_RATE / PARTIALS_PER_S) / HOP))  # 77
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
    last = starts[-1] * HOP
    coverage = (n_samples - last) / (PARTIAL_FRAMES * HOP)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts.pop()
    return starts


def _as_speech(audio: Any) -> np.ndarray:
    return mono_samples(audio, MIN_SECONDS, "a voice")


def utterance_partials(audio: np.ndarray) -> np.ndarray:
    """(n_partials, 160, 40) float32: the model's inputs for one utterance, as embed_utterance cuts them."""
    clip = normalize_volume(_as_speech(audio))
    starts = partial_starts(len(clip))
    need = (starts[-1] + PARTIAL_FRAMES) * HOP
    if need >= len(clip):
        clip = np.pad(clip, (0, need - len(clip)))
    mel = mel_power(clip)
    return np.stack([mel[s:s + PARTIAL_FRAMES] for s in starts])


# ---------------------------------------------------------------------------------------- session compensation
DEFAULT_COMPENSATION = Path(__file__).resolve().parent / "default_heads" / "voice_nap.json"


class SessionCompensation:
    """Nuisance attribute projection of d-vectors (scripts/fit_voice_nap.py): centred on the fitting set's mean,
    the k directions along which one person's voice varies most (emotion, effort) projected out, renormalised.
    Compensated embeddings are centred, so their cosines spread over [-1, 1] (same speaker about 0.1-0.65 for two
    1.5-2 s stretches of emotional speech, two people of the same sex about -0.05-0.3) where raw d-vectors crowd
    into [0.4, 0.9]."""

    def __init__(self, mean: np.ndarray, directions: np.ndarray) -> None:
        self.mean = np.asarray(mean, np.float32)
        self.directions = np.asarray(directions, np.float32).reshape(-1, EMBEDDING)

    @classmethod
    def load(cls, path: Path) -> SessionCompensation:
        import json

        spec = json.loads(Path(path).read_text())
        if spec.get("model_id") != MODEL_ID or spec.get("method") != "nap":
            raise ValueError(f"{path} is not a NAP for {MODEL_ID}")
        return cls(np.array(spec["mean"]), np.array(spec["directions"]))

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        x = np.asarray(vectors, np.float32) - self.mean
        x = x - (x @ self.directions.T) @ self.directions
        return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


# ------------------------------------------------------------------------------------------------------- model
class VoiceEncoder:
    """The GE2E d-vector model: `embed(audio)` → a (256,) unit vector per utterance, session-compensated (see
    `SessionCompensation`; `raw=True`: resemblyzer's own d-vector). Thread-safe (one lock: the model is small, one
    call at a time keeps torch's threads as the runtime plan set them)."""

    model_id = MODEL_ID

    def __init__(self, device: str = "cpu", compensation: Path | None = DEFAULT_COMPENSATION) -> None:
        import torch

        self.device = resolve_device(device)
        self.compensation = SessionCompensation.load(compensation) if compensation is not None else None
        state = torch.load(voice_encoder_weights(), map_location="cpu", weights_only=True)["model_state"]
        self.network = _network()
        # the checkpoint also holds GE2E's similarity_weight/bias, which only the training loss used
        self.network.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity_")})
        self.network = self.network.eval().to(self.device)
        self._torch = torch
        self._lock = threading.Lock()

    def embed_partials(self, partials: np.ndarray) -> np.ndarray:
        """(n, 256) float32 unit vectors of (n, frames, 40) mel inputs."""
        torch = self._torch
        with self._lock, torch.inference_mode():
            out = self.network(torch.from_numpy(np.ascontiguousarray(partials, dtype=np.float32)).to(self.device))
            return out.cpu().numpy()

    def embed(self, audio: np.ndarray, raw: bool = False) -> np.ndarray:
        """(256,) float32 unit vector of one utterance of 16 kHz mono speech (at least 0.25 s; shorter than a
        1.6 s partial is zero-padded to one, as resemblyzer does): the renormalised mean of its partials
        (resemblyzer's embed_utterance), then session-compensated unless raw."""
        vec = _mean_unit(self.embed_partials(utterance_partials(audio)))
        return vec if raw or self.compensation is None else self.compensation(vec[None])[0]

    def embed_many(self, clips: list[np.ndarray], raw: bool = False) -> np.ndarray:
        """(len(clips), 256): embed() of each clip, their partials run through the network as one batch."""
        if not clips:
            return np.zeros((0, EMBEDDING), np.float32)
        inputs = [utterance_partials(c) for c in clips]
        partials = self.embed_partials(np.concatenate(inputs))
        bounds = np.cumsum([0] + [len(x) for x in inputs])
        vecs = np.stack([_mean_unit(partials[a:b]) for a, b in zip(bounds[:-1], bounds[1:])])
        return vecs if raw or self.compensation is None else self.compensation(vecs)


def _mean_unit(partials: np.ndarray) -> np.ndarray:
    mean = partials.mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def _network():
    import torch
    from torch import nn

    class DVector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(MEL_CHANNELS, HIDDEN, LAYERS, batch_first=True)
            self.linear = nn.Linear(HIDDEN, EMBEDDING)
            self.relu = nn.ReLU()

        def forward(self, mels: torch.Tensor) -> torch.Tensor:
            _, (hidden, _) = self.lstm(mels)
            raw = self.relu(self.linear(hidden[-1]))
            return raw / torch.norm(raw, dim=1, keepdim=True).clamp_min(1e-12)

    return DVector()


_load_lock = threading.Lock()


@cache
def _load(device: str) -> VoiceEncoder:
    return VoiceEncoder(device)


def load_voice_encoder(device: str = "auto") -> VoiceEncoder:
    """The process's one VoiceEncoder (loaded on first use, shared by every stream)."""
    resolved = resolve_device(device)
    with _load_lock:
        return _load(resolved)
