"""A real RTSP server on loopback that serves a media file as a live-paced H.264 (+ AAC) stream, for tests.

Run it with Debian's Python, whose GStreamer bindings (python3-gi, gir1.2-gst-rtsp-server-1.0) are not in the venv:

    /usr/bin/python3 testkit/rtsp_server.py --port 8554 --mount /clip --file clip.mp4 [--loop]

It prints "READY rtsp://127.0.0.1:<port>/<mount>" on stdout once it listens (``--port 0`` picks a free port) and
exits cleanly on SIGTERM or SIGINT. Each client gets its own playback from the start of the file, paced in real
time by the server's clock; with ``--loop`` the file repeats forever with continuous timestamps.

Imported from pytest (the venv's Python, which has no ``gi``), this module offers ``start_rtsp_server``, ``stop``
and ``rtsp_server_available``; GStreamer is imported only when the file runs as the server.
"""

from __future__ import annotations

import argparse
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
READY = "READY"
HOST = "127.0.0.1"
MAX_WIDTH = 1280

_PROBE = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
    "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
    "missing = [e for e in ('x264enc', 'rtph264pay', 'avenc_aac', 'rtpmp4apay', 'decodebin', 'appsrc', 'appsink') "
    "if Gst.ElementFactory.find(e) is None]; "
    "print('missing GStreamer elements: ' + ' '.join(missing) if missing else 'ok')"
)


# ---------------------------------------------------------------- helpers for pytest (no gi here)

def rtsp_server_available() -> tuple[bool, str]:
    """Whether Debian's Python can run the server: gi, GstRtspServer and the encoders are installed."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False, f"{SYSTEM_PYTHON} not found (the RTSP test server needs Debian's python3-gi)"
    try:
        done = subprocess.run([SYSTEM_PYTHON, "-c", _PROBE], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return False, "probing GStreamer with /usr/bin/python3 timed out"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return False, f"GStreamer RTSP server not importable ({last}); install .ci/apt-packages.txt"
    if done.stdout.strip() != "ok":
        return False, done.stdout.strip() + "; install .ci/apt-packages.txt"
    return True, "ok"


def start_rtsp_server(file: str | Path, port: int | None = None, loop: bool = False, mount: str = "/clip",
                      ready_timeout_s: float = 20.0) -> tuple[subprocess.Popen, str]:
    """Start the server on ``file`` and wait until it listens. Returns the process and the stream URL.

    ``port=None`` lets the server bind a free port itself (no race with other tests); give a port to restart a
    server on the same address.
    """
    cmd = [SYSTEM_PYTHON, str(Path(__file__).resolve()), "--file", str(file), "--port", str(port or 0),
           "--mount", mount]
    if loop:
        cmd.append("--loop")
    # stderr goes to a file: a pipe nobody reads would stall a chatty server once its buffer fills.
    errors = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, text=True)
    deadline = time.monotonic() + ready_timeout_s
    assert proc.stdout is not None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            stop(proc)
            raise TimeoutError(f"RTSP server did not print {READY} within {ready_timeout_s} s")
        readable, _, _ = select.select([proc.stdout], [], [], remaining)
        if not readable:
            continue
        line = proc.stdout.readline()
        if line.startswith(READY):
            return proc, line.split()[1]
        if line == "":  # stdout closed: the server is exiting
            proc.wait(timeout=5)
            errors.seek(0)
            raise RuntimeError(f"RTSP server exited with code {proc.returncode}: {errors.read().strip()[-2000:]}")


def stop(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
    """SIGTERM the server and wait for it; SIGKILL it if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)
    if proc.stdout is not None:
        proc.stdout.close()


# ---------------------------------------------------------------- the server (runs under /usr/bin/python3)

def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", required=True, type=Path, help="media file to serve")
    parser.add_argument("--port", type=int, default=8554, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--mount", default="/clip", help="path of the stream in the URL")
    parser.add_argument("--loop", action="store_true", help="repeat the file forever")
    parser.add_argument("--max-width", type=int, default=MAX_WIDTH, help="downscale wider video to this width")
    args = parser.parse_args(argv)
    if not args.mount.startswith("/"):
        args.mount = "/" + args.mount
    return args


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if not args.file.is_file():
        print(f"error: no such file: {args.file}", file=sys.stderr)
        return 2

    import signal

    import gi
    gi.require_version("Gst", "1.0")
    gi.require_version("GstPbutils", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstPbutils, GstRtspServer

    Gst.init(None)
    uri = args.file.resolve().as_uri()
    try:
        info = GstPbutils.Discoverer.new(10 * Gst.SECOND).discover_uri(uri)
    except GLib.Error as exc:
        print(f"error: cannot read {args.file}: {exc.message}", file=sys.stderr)
        return 2
    videos, audios = info.get_video_streams(), info.get_audio_streams()
    if not videos and not audios:
        print(f"error: {args.file} has neither video nor audio", file=sys.stderr)
        return 2

    video_caps = ""
    if videos:
        w, h = videos[0].get_width(), videos[0].get_height()
        scale = min(1.0, args.max_width / w)
        video_caps = (f"video/x-raw,format=I420,width={_even(w * scale)},height={_even(h * scale)},"
                      "pixel-aspect-ratio=1/1")

    # The decoding pipeline runs per client, as fast as the RTSP media pipeline takes its buffers; the media pipeline
    # is paced by the clock in the server's sinks. Splitting them lets a loop restart the file with a flushing seek
    # while the timestamps the encoders see keep increasing.
    decode_desc = f"filesrc location=\"{args.file.resolve()}\" ! decodebin name=d"
    media_desc = ""
    if videos:
        decode_desc += f" d. ! queue ! videoconvert ! videoscale ! {video_caps} ! appsink name=vsink sync=false"
        media_desc += (" appsrc name=vsrc format=time block=true max-bytes=8000000"
                       " ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30"
                       " ! rtph264pay name=pay0 pt=96 config-interval=1")
    if audios:
        decode_desc += " d. ! queue ! audioconvert ! audioresample ! appsink name=asink sync=false"
        media_desc += (f" appsrc name=asrc format=time block=true max-bytes=400000"
                       f" ! audioconvert ! avenc_aac ! rtpmp4apay name=pay{1 if videos else 0} pt=97")

    playbacks: set[Playback] = set()

    class Playback:
        """One client's decoding pipeline, feeding its media's appsrc elements."""

        def __init__(self, media: GstRtspServer.RTSPMedia) -> None:
            self.pipeline = Gst.parse_launch(decode_desc)
            self.closed = False
            self.offset = 0  # ns added to every timestamp: the length of the loops already played
            self.end = 0  # ns: the latest buffer end seen in this pass over the file
            element = media.get_element()
            for sink_name, src_name in (("vsink", "vsrc"), ("asink", "asrc")):
                sink, src = self.pipeline.get_by_name(sink_name), element.get_by_name(src_name)
                if sink is not None:
                    sink.set_property("emit-signals", True)
                    sink.connect("new-sample", self.forward, src)
            bus = self.pipeline.get_bus()
            bus.add_signal_watch()
            bus.connect("message::eos", self.on_eos, element)
            bus.connect("message::error", self.on_error)
            media.connect("unprepared", lambda _media: self.close())
            self.pipeline.set_state(Gst.State.PLAYING)

        def forward(self, sink: Gst.Element, src: Gst.Element) -> Gst.FlowReturn:
            sample = sink.emit("pull-sample")
            buf = sample.get_buffer().copy()
            running = sample.get_segment().to_running_time(Gst.Format.TIME, buf.pts)
            buf.pts = running + self.offset
            buf.dts = Gst.CLOCK_TIME_NONE
            if buf.duration != Gst.CLOCK_TIME_NONE:
                self.end = max(self.end, running + buf.duration)
            caps = sample.get_caps()
            current = src.get_property("caps")
            if current is None or not current.is_equal(caps):
                src.set_property("caps", caps)
            result = src.emit("push-buffer", buf)
            # A closed media flushes its appsrc: stop decoding quietly instead of posting an error.
            return Gst.FlowReturn.OK if result == Gst.FlowReturn.FLUSHING else result

        def on_eos(self, _bus: Gst.Bus, _msg: Gst.Message, element: Gst.Element) -> None:
            if args.loop:
                self.offset += self.end
                self.end = 0
                self.pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)
                return
            for name in ("vsrc", "asrc"):
                src = element.get_by_name(name)
                if src is not None:
                    src.emit("end-of-stream")

        def on_error(self, _bus: Gst.Bus, msg: Gst.Message) -> None:
            err, debug = msg.parse_error()
            print(f"decode error: {err.message} ({debug})", file=sys.stderr)

        def close(self) -> None:
            if self.closed:
                return
            self.closed = True
            self.pipeline.set_state(Gst.State.NULL)
            self.pipeline.get_bus().remove_signal_watch()
            playbacks.discard(self)

    def on_media_configure(_factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        playbacks.add(Playback(media))

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f"({media_desc} )")
    factory.set_shared(False)
    factory.connect("media-configure", on_media_configure)

    server = GstRtspServer.RTSPServer()
    server.set_address(HOST)
    server.set_service(str(args.port))
    server.get_mount_points().add_factory(args.mount, factory)
    try:
        if server.attach(None) == 0:
            raise GLib.Error("attach failed")
    except GLib.Error as exc:
        print(f"error: cannot listen on {HOST}:{args.port}: {exc.message}", file=sys.stderr)
        return 2

    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, lambda: (loop.quit(), GLib.SOURCE_REMOVE)[1])
    print(f"{READY} rtsp://{HOST}:{server.get_bound_port()}{args.mount}", flush=True)
    loop.run()
    for playback in list(playbacks):
        playback.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
