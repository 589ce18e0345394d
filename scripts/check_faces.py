"""Face detection and expression check on real clips: faces per sampled frame, top emotions and timings.

    python scripts/check_faces.py ../shared/data/videos/*.mp4 --fps 1 --detectors full back
    python scripts/check_faces.py ../shared/data/musicvideos/*/*.mp4 --max-frames 4 --sheet /tmp/sheet.png
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.faces import EMOTIONS, ExpressionModel, FaceDetector, face_valence  # noqa: E402
from models.images import load_image, resize  # noqa: E402
from models.scene import SceneEmbedder  # noqa: E402
from stream.sources import sample_video  # noqa: E402


def sample_frames(path: Path, fps: float, max_frames: int) -> list[tuple[float, np.ndarray]]:
    """A still image, or the frames the live pipeline would sample from a video at `fps` (<= 640 px)."""
    if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
        return [(0.0, load_image(path))]
    return [(f.t, f.image) for f in sample_video(path, fps, max_frames)]


def draw_boxes(image: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
    out = image.copy()
    h, w = out.shape[:2]
    for x0, y0, x1, y1 in boxes:
        a, b = int(np.clip(x0, 0, w - 1)), int(np.clip(x1, 0, w - 1))
        c, d = int(np.clip(y0, 0, h - 1)), int(np.clip(y1, 0, h - 1))
        for t in range(2):
            out[c:d + 1, max(a - t, 0)] = out[c:d + 1, min(b + t, w - 1)] = (255, 0, 0)
            out[max(c - t, 0), a:b + 1] = out[min(d + t, h - 1), a:b + 1] = (255, 0, 0)
    return out


def save_png(image: np.ndarray, path: Path) -> None:
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "rgb24"
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--max-frames", type=int, default=8)
    parser.add_argument("--detectors", nargs="+", default=["full"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sheet", type=Path, help="write the first detector's boxes on a contact sheet PNG")
    parser.add_argument("--scene", action="store_true", help="also time the scene embedder")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    detectors = [FaceDetector(kind, num_threads=args.threads) for kind in args.detectors]
    expressions = ExpressionModel(num_threads=args.threads)
    timings: dict[str, list[float]] = {d.kind: [] for d in detectors}
    timings["expression"] = []
    tiles = []
    all_frames = []
    for path in args.paths:
        frames = sample_frames(path, args.fps, args.max_frames)
        all_frames += [f for _, f in frames]
        counts = {d.kind: [] for d in detectors}
        emotions = []
        for _t, image in frames:
            for i, det in enumerate(detectors):
                start = time.perf_counter()
                boxes = det.detect(image)
                timings[det.kind].append(time.perf_counter() - start)
                counts[det.kind].append(len(boxes))
                if i == 0:
                    if boxes:
                        start = time.perf_counter()
                        probs = expressions.predict(image, [b.box for b in boxes])
                        timings["expression"].append((time.perf_counter() - start) / len(boxes))
                        for p in probs:
                            em = dict(zip(EMOTIONS, map(float, p)))
                            emotions.append(f"{max(em, key=em.__getitem__)}:{face_valence(em):.2f}")
                    if args.sheet:
                        tiles.append(draw_boxes(image, [b.box for b in boxes]))
        shape = frames[0][1].shape if frames else None
        print(f"{path.name} {shape} frames={len(frames)} "
              + " ".join(f"{k}={v}" for k, v in counts.items()) + f" | {' '.join(emotions[:12])}")

    print("ms per call (median):", {k: round(1000 * float(np.median(v)), 2) for k, v in timings.items() if v})
    if args.scene and all_frames:
        scene = SceneEmbedder("cpu")
        frames = all_frames[:16]
        scene.embed(frames[:2])
        start = time.perf_counter()
        for image in frames:
            scene.preprocess(image)
        prep = (time.perf_counter() - start) / len(frames)
        start = time.perf_counter()
        scene.embed(frames)
        total = (time.perf_counter() - start) / len(frames)
        print(f"scene embedder: {1000 * total:.1f} ms per frame, of which {1000 * prep:.1f} ms crop+resize "
              f"({len(frames)} frames, torch threads {torch.get_num_threads()})")
    if args.sheet and tiles:
        tile_w, tile_h, cols = 320, 240, 6
        rows = (len(tiles) + cols - 1) // cols
        sheet = np.zeros((rows * tile_h, cols * tile_w, 3), dtype=np.uint8)
        for i, tile in enumerate(tiles):
            scale = min(tile_w / tile.shape[1], tile_h / tile.shape[0])
            small = resize(tile, max(2, int(tile.shape[1] * scale)), max(2, int(tile.shape[0] * scale)))
            r, c = divmod(i, cols)
            sheet[r * tile_h:r * tile_h + small.shape[0], c * tile_w:c * tile_w + small.shape[1]] = small
        save_png(sheet, args.sheet)
        print("sheet:", args.sheet)


if __name__ == "__main__":
    main()
