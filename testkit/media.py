"""Media for the tests, made from the real clips: a clip's length, its video alone or with silent audio, 16 kHz
speech written as FLAC, and the bad-input matrix's awkward files with the file-mode helpers its unreadable case
needs."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from media import SAMPLE_RATE
from testkit.data import VIDEOS


def clip_duration(path: str | Path) -> float:
    """Seconds of media in a file, as its container says."""
    with av.open(str(path)) as container:
        return container.duration / av.time_base


def remux_without_audio(src: Path, dst: Path) -> Path:
    """A copy of a real clip's video track alone (no re-encoding)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        for packet in inp.demux(vin):
            if packet.dts is None:
                continue
            packet.stream = vout
            out.mux(packet)
    return dst


def with_silent_audio(src: Path, dst: Path) -> Path:
    """A copy of a real clip whose audio track is digital silence of the same length."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        aout = out.add_stream("aac", rate=16000, layout="mono")
        duration = float(inp.duration / av.time_base)
        for packet in inp.demux(vin):
            if packet.dts is None:
                continue
            packet.stream = vout
            out.mux(packet)
        total = int(duration * 16000)
        for start in range(0, total, 1024):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, min(1024, total - start)), np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate = 16000
            frame.pts = start
            for packet in aout.encode(frame):
                out.mux(packet)
        for packet in aout.encode(None):
            out.mux(packet)
    return dst


# -- the bad-input matrix ---------------------------------------------------------------------------------------
# Every kind of awkward file a user may hand vidsent, made from the real clips in ../shared/data/videos (FFmpeg and
# PyAV, a few seconds at most, so the whole folder builds in seconds). `build_bad_media(folder)` makes them all and
# returns {kind: file name inside folder}; a kind whose file must not exist ("missing") is named but not made.

ENGLISH = "vna_mosi_2.6.mp4"  # "I mean that was impressive." (1.3 s, 480x360, 44.1 kHz stereo)
FACE = "pyfeat_single_face.mp4"  # one face, close up (2.4 s, 640x360)
PHOTO = "pyfeat_single_face.jpg"
MANDARIN = ("vna_0001.mp4", "vna_0008.mp4", "vna_videogpt_raw.mp4")  # 1.3 + 2.7 + 4.0 s of Mandarin speech


def write_flac(path: str | Path, audio: np.ndarray) -> None:
    """16 kHz mono float audio in [-1, 1] as a 16-bit FLAC file."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("flac", rate=SAMPLE_RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray((np.clip(audio, -1, 1) * 32767).astype(np.int16)[None], format="s16",
                                           layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)


def ffmpeg(*args: str | Path) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *map(str, args)], check=True, timeout=120)


def video(name: str) -> Path:
    return VIDEOS / name


def zero_byte(dst: Path) -> None:
    dst.touch()


def _first_bytes(src: Path, dst: Path, share: float) -> None:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * share)])


def truncated(dst: Path) -> None:
    """An interrupted download: the first half of an mp4 whose index comes first, so that half still plays."""
    indexed_first = dst.with_name("indexed_first.tmp.mp4")
    ffmpeg("-i", video("vna_original_2.mp4"), "-c", "copy", "-movflags", "+faststart", indexed_first)
    _first_bytes(indexed_first, dst, 0.5)
    indexed_first.unlink()


def truncated_no_index(dst: Path) -> None:
    """The first 40 % of a real mp4 whose index is at its end: the index is gone, nothing can be played."""
    _first_bytes(video("vna_original_2.mp4"), dst, 0.4)


def random_bytes(dst: Path) -> None:
    dst.write_bytes(np.random.default_rng(14).bytes(256 * 1024))


def wrong_extension(dst: Path) -> None:
    """A real mp4 named as something else: FFmpeg probes the content, so it is media all the same."""
    shutil.copyfile(video(ENGLISH), dst)


def text_file(dst: Path) -> None:
    dst.write_text("Meeting notes\n- the demo went well\n- ship it on Friday\n" * 20)


def directory(dst: Path) -> None:
    dst.mkdir()
    shutil.copyfile(video(ENGLISH), dst / ENGLISH)


def unreadable(dst: Path) -> None:
    """A real clip with no permissions at all (root ignores file modes: see `FILE_OVERRIDE_CAPABILITIES`)."""
    shutil.copyfile(video(ENGLISH), dst)
    dst.chmod(0)


def audio_only(dst: Path) -> None:
    ffmpeg("-i", video(ENGLISH), "-vn", "-c:a", "copy", dst)


def video_only(dst: Path) -> None:
    remux_without_audio(video(ENGLISH), dst)


def silence(dst: Path) -> None:
    with_silent_audio(video(FACE), dst)


def one_frame(dst: Path) -> None:
    ffmpeg("-i", video(FACE), "-frames:v", "1", "-an", "-c:v", "libx264", "-preset", "ultrafast", dst)


def still_image(dst: Path) -> None:
    shutil.copyfile(video(PHOTO), dst)


def huge_resolution(dst: Path) -> None:
    """7680x4320 (8K UHD), one second at 2 fps, with the clip's sound."""
    ffmpeg("-i", video(FACE), "-t", "1", "-vf", "scale=7680:4320,fps=2", "-c:v", "libx264", "-preset", "ultrafast",
           "-c:a", "aac", dst)


def rotated(dst: Path) -> None:
    """How phones record: the pixels are stored turned a quarter counter-clockwise and the display matrix says to
    turn them back clockwise, so every player shows the face upright."""
    stored_sideways = dst.with_name("sideways.tmp.mp4")
    ffmpeg("-i", video(FACE), "-vf", "transpose=cclock", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "copy",
           stored_sideways)
    # FFmpeg 5.1's legacy tag (clockwise degrees) becomes a display matrix of -90 (counter-clockwise) degrees
    ffmpeg("-i", stored_sideways, "-c", "copy", "-metadata:s:v:0", "rotate=270", dst)
    stored_sideways.unlink()


def variable_frame_rate(dst: Path) -> None:
    """Bursts of three frames with gaps between them (time stamps 0, 33, 67, 333, 367 ms ...)."""
    ffmpeg("-i", video(ENGLISH), "-vf", r"select=lt(mod(n\,10)\,3)", "-fps_mode", "vfr", "-c:v", "libx264",
           "-preset", "ultrafast", "-c:a", "copy", dst)


def short_clip(dst: Path) -> None:
    ffmpeg("-i", video(ENGLISH), "-t", "0.3", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", dst)


def surround_96k(dst: Path) -> None:
    """The English clip with its sound upmixed to 6 channels (5.1) at 96 kHz."""
    ffmpeg("-i", video(ENGLISH), "-c:v", "copy", "-c:a", "aac", "-ac", "6", "-ar", "96000", dst)


def mandarin(dst: Path) -> None:
    """8 s of Mandarin speech (three clips' sound, one after the other) for an English-only speech recogniser."""
    inputs = [arg for name in MANDARIN for arg in ("-i", video(name))]
    ffmpeg(*inputs, "-filter_complex", "".join(f"[{i}:a]" for i in range(len(MANDARIN))) +
           f"concat=n={len(MANDARIN)}:v=0:a=1", "-vn", "-c:a", "aac", dst)


def empty_audio_track(dst: Path) -> None:
    """The face clip's video with an audio track that has no packets at all (Matroska keeps such a track; MP4 drops
    it)."""
    with av.open(str(video(FACE))) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        out.add_stream("aac", rate=44100, layout="stereo")
        for packet in inp.demux(vin):
            if packet.dts is None:
                continue
            packet.stream = vout
            out.mux(packet)


BAD_MEDIA: dict[str, tuple[str, Callable[[Path], None] | None]] = {
    # kind: (file name, maker); None: left unmade
    "zero_byte": ("empty.mp4", zero_byte),
    "truncated": ("truncated.mp4", truncated),
    "truncated_no_index": ("truncated_no_index.mp4", truncated_no_index),
    "random_bytes": ("random.mp4", random_bytes),
    "wrong_extension": ("talk.txt", wrong_extension),
    "text_file": ("notes.txt", text_file),
    "directory": ("folder.mp4", directory),
    "unreadable": ("locked.mp4", unreadable),
    "missing": ("missing.mp4", None),
    "audio_only": ("speech.m4a", audio_only),
    "video_only": ("mute.mp4", video_only),
    "silence": ("silence.mp4", silence),
    "one_frame": ("one_frame.mp4", one_frame),
    "still_image": ("photo.jpg", still_image),
    "huge_resolution": ("8k.mp4", huge_resolution),
    "rotated": ("rotated.mp4", rotated),
    "variable_frame_rate": ("vfr.mp4", variable_frame_rate),
    "short_clip": ("short.mp4", short_clip),
    "surround_96k": ("surround_96k.mp4", surround_96k),
    "mandarin": ("mandarin.m4a", mandarin),
    "empty_audio_track": ("empty_audio_track.mkv", empty_audio_track),
}


def build_bad_media(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, make in BAD_MEDIA.values():
        if make is not None:
            make(folder / name)
    return {kind: name for kind, (name, _) in BAD_MEDIA.items()}


# Root reads any file whatever its mode, through these two capabilities (CI runs as root). Without them root is held
# to file modes like anyone else, yet still owns and reads the venv, the model cache and pytest's folders, which an
# unprivileged user could not: so the "unreadable" case drops them instead of switching users.
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2
FILE_OVERRIDE_CAPABILITIES = (1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH)
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def file_modes_apply_argv() -> list[str]:
    """The prefix that runs a command with file modes applying to it: nothing for an ordinary user; for root,
    setpriv (util-linux) dropping the file-override capabilities from the bounding set, so exec cannot regain them."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise RuntimeError("running as root, the unreadable-file case needs setpriv (util-linux) to drop "
                           "CAP_DAC_OVERRIDE")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def apply_file_modes_in_this_thread() -> None:
    """Clears the file-override capabilities from the calling thread's effective set (Linux keeps capabilities per
    thread; a no-op for an ordinary user): a ThreadPoolExecutor initializer, so that what the server opens in its
    worker threads is held to file modes as an unprivileged server would be."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0), (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    data[0].effective &= ~FILE_OVERRIDE_CAPABILITIES
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
