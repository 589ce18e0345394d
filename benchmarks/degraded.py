"""Does the verdict degrade gracefully? Real labelled clips and degraded copies of them through the live pipeline.

    .venv/bin/python benchmarks/degraded.py [--data ../shared/data] [--work DIR] [--out degraded.json]

Every positive or negative music video (../shared/data/musicvideos, 42 clips) and the labelled talking head
(videos/vna_mosi_2.6.mp4, CMU-MOSI +2.6) is copied three ways with ffmpeg (made once, in --work):
  small    the picture scaled to 96 px wide (faces of 6-30 px, the scene head reads a thumbnail);
  noise    white noise as loud as the clip itself added at 48 kHz (0 dB SNR there; about 5 dB SNR in the 0-8 kHz the
           scorers hear at 16 kHz);
  music    a 4Q song (the same one for every clip, Q4/calm) mixed under the sound 6 dB below it.
Each clip and copy goes through the live pipeline as `vidsent analyze` runs it (training.clips, cached per file);
its verdict is the fused score of its per-modality means with the shipped fusion, with each modality's quality
(the documented rule of models.fusion) and with the quality ignored. For every copy of a clip whose clean verdict
was right: did the degraded verdict stay on its side of 0.5 ("not across"), and did it move towards 0.5 or stay
("towards the middle")? Also each modality's mean quality, clean and degraded.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from models.assets import cache_dir  # noqa: E402

DEGRADATIONS = ("small", "noise", "music")
MUSIC_UNDER = "music4q/Q4/MT0000054705.opus"
VALENCE = {"Excited": "positive", "Relaxation": "positive", "Fear": "negative", "Sad": "negative",
           "Tension": "negative"}


def ffmpeg(*args) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *map(str, args)], check=True)


def clip_rms(path: Path) -> float:
    from training.embed_cache import load_audio

    audio = load_audio(path)
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0


def degrade(src: Path, kind: str, dst: Path, data: Path) -> Path:
    if dst.exists():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    if kind == "small":
        ffmpeg("-i", src, "-vf", "scale=96:-2", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "copy", dst)
    elif kind == "noise":
        # white noise with the clip's own RMS: 0 dB SNR
        amplitude = max(clip_rms(src), 1e-4) * np.sqrt(3.0)  # a uniform white noise of this amplitude has that RMS
        ffmpeg("-i", src, "-filter_complex",
               f"anoisesrc=color=white:amplitude={amplitude:.5f}:sample_rate=48000[n];"
               "[0:a]aresample=48000[a];[a][n]amix=inputs=2:duration=first:normalize=0[out]",
               "-map", "0:v", "-map", "[out]", "-c:v", "copy", "-c:a", "aac", dst)
    elif kind == "music":
        song = data / MUSIC_UNDER
        gain = max(clip_rms(src), 1e-4) / max(clip_rms(song), 1e-4) * 10 ** (-6 / 20)
        ffmpeg("-i", src, "-stream_loop", "-1", "-i", song, "-filter_complex",
               f"[1:a]volume={gain:.5f},aresample=48000[m];[0:a]aresample=48000[a];"
               "[a][m]amix=inputs=2:duration=first:normalize=0[out]",
               "-map", "0:v", "-map", "[out]", "-c:v", "copy", "-c:a", "aac", dst)
    else:
        raise ValueError(kind)
    return dst


def verdicts(record: dict, params) -> tuple[float | None, float | None]:
    """The fused score of a clip record's per-modality means, with their quality and with it ignored."""
    from models.fusion import fuse
    from training.clips import modality_score

    scores = {m: modality_score(r) for m, r in record["modalities"].items()}
    plain = {m: replace(s, quality=None) for m, s in scores.items()}
    return fuse(scores, "weighted", params).score, fuse(plain, "weighted", params).score


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=cache_dir() / "bench" / "degraded")
    parser.add_argument("--out", type=Path, default=Path("degraded.json"))
    parser.add_argument("--limit", type=int, default=0, help="only the first N clips (a smoke run)")
    args = parser.parse_args(argv)

    from models.fusion import FusionParams
    from models.heads import DEFAULT_HEADS_DIR
    from training.clips import LiveClipAnalyzer
    from training.embed_cache import RecordCache

    with open(args.data / "musicvideos" / "labels.csv") as f:
        clips = [(args.data / "musicvideos" / r["path"], VALENCE[r["emotion"]]) for r in csv.DictReader(f)
                 if r["emotion"] in VALENCE]
    clips.append((args.data / "videos" / "vna_mosi_2.6.mp4", "positive"))
    if args.limit:
        clips = clips[:args.limit]
    copies = {kind: [degrade(src, kind, args.work / kind / f"{i:03d}{src.suffix}", args.data)
                     for i, (src, _) in enumerate(clips)] for kind in DEGRADATIONS}
    analyzer = LiveClipAnalyzer(device="cpu", records=RecordCache(args.work / "records"))
    clean = analyzer.records_of([src for src, _ in clips])
    degraded = {kind: analyzer.records_of(paths) for kind, paths in copies.items()}
    params = FusionParams.load(DEFAULT_HEADS_DIR / "fusion.json")

    def quality(records: list[dict], m: str) -> float | None:
        values = [r["modalities"][m].get("quality", {}).get("value") for r in records
                  if r["modalities"][m].get("available")]
        values = [v for v in values if v is not None]
        return round(float(np.mean(values)), 3) if values else None

    report: dict = {"clips": len(clips), "clean": {}, "degraded": {}}
    for rule, pick in (("with quality", 0), ("quality ignored", 1)):
        clean_scores = [verdicts(r, params)[pick] for r in clean]
        right = [i for i, (s, (_, label)) in enumerate(zip(clean_scores, clips))
                 if s is not None and (s > 0.5) == (label == "positive")]
        report["clean"][rule] = {"right": len(right), "accuracy": round(len(right) / len(clips), 3)}
        for kind in DEGRADATIONS:
            scores = [verdicts(r, params)[pick] for r in degraded[kind]]
            not_across = towards = right_after = 0
            for i in right:
                before, after = clean_scores[i], scores[i]
                assert before is not None
                if after is None:  # nothing left to judge: the verdict is missing, not flipped
                    not_across += 1
                    towards += 1
                    continue
                side = 1 if before > 0.5 else -1
                not_across += (after - 0.5) * side >= 0
                towards += abs(after - 0.5) <= abs(before - 0.5) + 1e-9 and (after - 0.5) * side >= 0
                right_after += (after > 0.5) == (side > 0)
            row = report["degraded"].setdefault(kind, {})
            row[rule] = {"clean_right": len(right), "not_across": round(not_across / max(len(right), 1), 3),
                         "towards_middle": round(towards / max(len(right), 1), 3),
                         "accuracy_all": round(sum((s is not None and (s > 0.5) == (label == "positive"))
                                                   for s, (_, label) in zip(scores, clips)) / len(clips), 3)}
    for kind, records in (("clean", clean), *degraded.items()):
        report.setdefault("quality", {})[kind] = {m: quality(records, m) for m in ("text", "audio", "visual")}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
