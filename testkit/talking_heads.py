"""Conversations made from the real talking-head clips, for the active-speaker test and benchmark: each clip cropped
to a square panel around its face, panels side by side, the speakers taking turns with their own sound.

During a speaker's turn its panel plays the clip's own frames at the clip's own time, with the clip's own audio.
Outside its turns a speaker's panel shows the speaker listening: the clip's frame where the mouth is most closed,
held, with a slow head sway (a shift of up to ~2 px and a 1 % zoom, sub-pixel, bilinear) and sensor noise (σ 2 grey
levels) on every frame, so the face mesh sees a new image each time. The clips have no silent stretch of their own
long enough to stand for listening (their VAD finds speech from start to end; in their short pauses the mouth still
moves), so that is the one made-up part. A listener panel (a real face that never speaks) plays its clip throughout,
forwards then backwards. An off-screen voice (speech with no face) takes turns too.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from media import SAMPLE_RATE
from speech.speakers import speech_regions


@dataclass
class PanelClip:
    """A clip's frames cropped to a square panel around its face, with its audio and speech regions."""

    name: str
    frames: list[np.ndarray]  # panel images (side x side RGB), at the clip's frame times
    times: np.ndarray  # clip time of each frame (s)
    audio: np.ndarray  # 16 kHz mono float32
    speech: list[tuple[float, float]]  # the clip's own VAD speech regions
    held: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 3), np.uint8))  # the most-closed-mouth frame

    @property
    def duration(self) -> float:
        return float(self.times[-1]) if len(self.times) else 0.0

    def frame_at(self, t: float) -> np.ndarray:
        """The frame shown at clip time t (the last one that started by then)."""
        i = int(np.searchsorted(self.times, t, side="right")) - 1
        return self.frames[min(max(i, 0), len(self.frames) - 1)]

    def looped_frame_at(self, t: float) -> np.ndarray:
        """The clip played forwards then backwards, over and over."""
        period = 2 * self.duration
        phase = t % period if period > 0 else 0.0
        return self.frame_at(phase if phase <= self.duration else period - phase)


def decode_audio(path: Path) -> np.ndarray:
    from faster_whisper.audio import decode_audio as whisper_decode

    return whisper_decode(str(path), sampling_rate=SAMPLE_RATE).astype(np.float32)


def _decoded(path: Path):
    """(clip time, RGB frame) of every frame of the clip's video, at its own resolution."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        origin = None
        for frame in container.decode(stream):
            if frame.pts is None or frame.time_base is None:
                continue
            t = float(frame.pts * frame.time_base)
            origin = t if origin is None else origin
            yield t - origin, frame.to_ndarray(format="rgb24")


def load_panel_clip(path: Path, side: int = 240, margin: float = 2.4) -> PanelClip:
    """The clip decoded at its own resolution and frame rate, each frame cropped to the square of `margin` x the
    face's side around the face found on its first frames (the crop stays put), resized to side x side."""
    from models.faces import FaceDetector
    from models.images import resize
    from models.mouth import crop_square

    detector = FaceDetector("full")
    found, first = [], None
    with contextlib.closing(_decoded(path)) as decoded:
        for i, (_, image) in enumerate(decoded):
            if i >= 30:
                break
            first = image if first is None else first
            if i % 5 == 0:
                found += detector.detect(image)[:1]
    if not found or first is None:
        raise ValueError(f"no face in the first frames of {path}")
    box = np.median(np.array([b.box for b in found]), axis=0)
    face_side = max(box[2] - box[0], box[3] - box[1])
    h, w = first.shape[:2]
    crop = int(min(round(face_side * margin), h, w))
    left = int(np.clip(round((box[0] + box[2]) / 2 - crop / 2), 0, w - crop))
    top = int(np.clip(round((box[1] + box[3]) / 2 - crop / 2), 0, h - crop))
    frames, times = [], []
    for t, image in _decoded(path):
        frames.append(resize(crop_square(image, left, top, crop), side, side))
        times.append(t)
    audio = decode_audio(path)
    return PanelClip(path.stem, frames, np.array(times), audio, speech_regions(audio))


def most_closed_frame(clip: PanelClip, step: int = 3) -> np.ndarray:
    """The clip's frame (every `step`-th looked at) where the mesh finds the mouth most closed."""
    from models.faces import FaceDetector
    from models.mouth import mouth_reader

    detector, reader = FaceDetector("full"), mouth_reader()
    best, best_opening = clip.frames[0], np.inf
    for image in clip.frames[::step]:
        boxes = detector.detect(image)
        reading = reader.read(image, boxes[0]) if boxes else None
        if reading is not None and reading.opening < best_opening:
            best, best_opening = image, reading.opening
    return best


def listening(image: np.ndarray, t: float, seed: int) -> np.ndarray:
    """A held frame as a listener's at time t: slow sub-pixel head sway and zoom, and fresh sensor noise."""
    from PIL import Image

    rng = np.random.default_rng([seed, int(t * 1000)])
    dx = 1.5 * np.sin(2 * np.pi * 0.31 * t + seed) + 0.3 * rng.standard_normal()
    dy = 1.0 * np.sin(2 * np.pi * 0.23 * t + 2 * seed) + 0.3 * rng.standard_normal()
    zoom = 1.0 + 0.01 * np.sin(2 * np.pi * 0.17 * t + seed)
    h, w = image.shape[:2]
    cx, cy = w / 2, h / 2
    # output (x, y) samples input (a x + b y + c, d x + e y + f)
    coefficients = (1 / zoom, 0.0, cx - cx / zoom + dx, 0.0, 1 / zoom, cy - cy / zoom + dy)
    moved = np.asarray(Image.fromarray(image).transform((w, h), Image.Transform.AFFINE, coefficients,
                                                        resample=Image.Resampling.BILINEAR))
    noisy = moved.astype(np.float32) + rng.normal(0.0, 2.0, moved.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Turn:
    t0: float  # in the conversation (s)
    t1: float
    voice: str  # the speaker's clip name, or the off-screen voice's name
    clip_t0: float  # where in the speaker's clip (or off-screen audio) the turn starts


def speech_chunks(speech: list[tuple[float, float]], audio: np.ndarray, turn_s: float) -> list[tuple[float, float]]:
    """The stretch from the first to the last speech cut into turns of about turn_s, each cut at the quietest
    moment within 0.6 s of where it would fall."""
    from speech.vad import quietest_sample

    start, end = speech[0][0], speech[-1][1]
    count = max(1, int(round((end - start) / turn_s)))
    cuts = [start]
    for k in range(1, count):
        nominal = start + k * (end - start) / count
        sample, _ = quietest_sample(audio, int((nominal - 0.6) * SAMPLE_RATE), int((nominal + 0.6) * SAMPLE_RATE))
        cuts.append(sample / SAMPLE_RATE)
    cuts.append(end)
    return list(zip(cuts[:-1], cuts[1:]))


@dataclass
class Conversation:
    """The made conversation: who speaks when, its audio, and its frames on demand."""

    speakers: list[PanelClip]  # on screen, left to right
    listener: PanelClip | None  # a face that never speaks, right of the speakers
    off_screen: dict[str, np.ndarray]  # voice name → its audio (16 kHz)
    turns: list[Turn]
    audio: np.ndarray
    duration: float
    max_side: int = 640  # the composite is scaled to this longer side, as the pipeline scales frames

    def panels(self) -> list[str]:
        return [c.name for c in self.speakers] + ([self.listener.name] if self.listener else [])

    def turn_at(self, t: float) -> Turn | None:
        return next((turn for turn in self.turns if turn.t0 <= t < turn.t1), None)

    def frame_at(self, t: float) -> np.ndarray:
        from models.images import resize

        turn = self.turn_at(t)
        images = []
        for i, clip in enumerate(self.speakers):
            if turn is not None and turn.voice == clip.name:
                images.append(clip.frame_at(turn.clip_t0 + t - turn.t0))
            else:
                images.append(listening(clip.held, t, seed=i + 1))
        if self.listener is not None:
            images.append(self.listener.looped_frame_at(t))
        composite = np.ascontiguousarray(np.hstack(images))
        h, w = composite.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        if scale < 1.0:
            composite = resize(composite, int(w * scale) // 2 * 2, int(h * scale) // 2 * 2)
        return composite

    def panel_of(self, box: tuple[float, float, float, float], width: int) -> str:
        """The panel a face box (in a frame of this width) lies in."""
        names = self.panels()
        centre = (box[0] + box[2]) / 2
        return names[min(int(centre / width * len(names)), len(names) - 1)]


def make_conversation(speakers: list[PanelClip], listener: PanelClip | None = None,
                      off_screen: dict[str, np.ndarray] | None = None, turn_s: float = 2.5, gap_s: float = 1.0,
                      rounds: int = 2, lead_s: float = 1.0, level: float = 0.05, seed: int = 0) -> Conversation:
    """The speakers (and the off-screen voices) take turns in order, each turn a next piece of the speaker's own
    speech, with gap_s of silence (no voice, faint noise) between turns; `rounds` times through all their speech
    (a second round repeats the same pieces)."""
    off_screen = off_screen or {}
    pieces: dict[str, list[tuple[float, float]]] = {}
    sources: dict[str, np.ndarray] = {}
    for clip in speakers:
        pieces[clip.name] = speech_chunks(clip.speech, clip.audio, turn_s)
        sources[clip.name] = clip.audio
        if clip.held.size == 0:
            clip.held = most_closed_frame(clip)
    for name, audio in off_screen.items():
        pieces[name] = speech_chunks(speech_regions(audio), audio, turn_s)
        sources[name] = audio
    order = [c.name for c in speakers] + list(off_screen)
    turns: list[Turn] = []
    t = lead_s
    for _ in range(rounds):
        for k in range(max(len(p) for p in pieces.values())):
            for name in order:
                if k < len(pieces[name]):
                    c0, c1 = pieces[name][k]
                    turns.append(Turn(t, t + (c1 - c0), name, c0))
                    t += (c1 - c0) + gap_s
    duration = t + lead_s
    rng = np.random.default_rng(seed)
    audio = rng.normal(0.0, 3e-4, int(duration * SAMPLE_RATE)).astype(np.float32)  # faint room noise
    for turn in turns:
        src = sources[turn.voice]
        a = int(turn.clip_t0 * SAMPLE_RATE)
        piece = src[a:a + int((turn.t1 - turn.t0) * SAMPLE_RATE)]
        rms = float(np.sqrt(np.mean(piece ** 2))) or 1.0
        at = int(turn.t0 * SAMPLE_RATE)
        audio[at:at + len(piece)] += piece * (level / rms)
    return Conversation(list(speakers), listener, dict(off_screen), turns, audio, duration)


def write_conversation(conv: Conversation, path: Path, fps: float = 25.0) -> Path:
    """The conversation as a real video file (H.264 at `fps` and AAC at 16 kHz mono in an mp4): what the pipeline
    replays or streams."""
    import fractions

    import av

    first = conv.frame_at(0.0)
    h, w = first.shape[:2]
    rate = fractions.Fraction(fps).limit_denominator(1000)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.options = {"crf": "23", "preset": "veryfast"}
        sound = container.add_stream("aac", rate=SAMPLE_RATE)
        sound.layout = "mono"
        for i in range(int(conv.duration * fps)):
            frame = av.VideoFrame.from_ndarray(conv.frame_at(i / fps), format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode())
        samples = np.clip(conv.audio, -1.0, 1.0).astype(np.float32)
        step = 1024
        for at in range(0, len(samples), step):
            chunk = av.AudioFrame.from_ndarray(samples[None, at:at + step], format="flt", layout="mono")
            chunk.sample_rate = SAMPLE_RATE
            chunk.pts = at
            container.mux(sound.encode(chunk))
        container.mux(sound.encode())
    return path


TALKERS = ("vna_original_2.mp4", "vna_test.mp4")  # two real talking heads, side by side
LISTENER = "pyfeat_WolfgangLanger_Pexels.mp4"  # a real face that never speaks, right of them


def talkers_and_listener(videos: Path, rounds: int = 2, off_screen: dict[str, np.ndarray] | None = None
                         ) -> Conversation:
    """The made conversation the speaker tests and benchmarks share: TALKERS taking turns with their own voices and
    LISTENER beside them (the clips from the folder `videos`), and any off-screen voices."""
    return make_conversation([load_panel_clip(videos / name) for name in TALKERS],
                             load_panel_clip(videos / LISTENER), off_screen, rounds=rounds)
