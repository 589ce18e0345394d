"""`vidsent embed MANIFEST --modality M`: fill the embedding cache for a manifest (videos: run them through the
live pipeline and cache their clip records), so that training and evaluation afterwards run no encoder."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from app.options import add_model_arguments
from training.clips import LiveClipAnalyzer
from training.embed_cache import (
    EmbeddingCache,
    RecordCache,
    embed_manifest,
    make_embedder,
    text_delta_of,
)
from training.manifest import ManifestError, read_manifest


def add_embed_arguments(parser) -> None:
    parser.add_argument("manifest", type=Path, help="CSV manifest (see training/manifest.py for the columns)")
    parser.add_argument("--modality", required=True, choices=("text", "audio", "visual", "video"))
    parser.add_argument("--classes", help="comma-separated class names, when the labels are not sentiment classes")
    parser.add_argument("--label-column", help="the manifest column holding the label")
    parser.add_argument("--cache", type=Path, help="cache folder (default: $VIDSENT_CACHE/embeddings)")
    add_model_arguments(parser, threads=True, asr_help="Whisper model whose encoder embeds audio (and transcribes "
                                                       "video); a text head's fine-tuned layers come from --heads")


def main_embed(args) -> int:
    _set_threads(args.threads)
    classes = args.classes.split(",") if args.classes else None
    try:
        manifest = read_manifest(args.manifest, args.modality, classes, args.label_column)
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cache = EmbeddingCache(args.cache / "embeddings" if args.cache else None)
    started = time.time()
    if args.modality == "video":
        records = RecordCache(args.cache / "records" if args.cache else None)
        LiveClipAnalyzer(device=args.device, asr=args.asr, heads_dir=args.heads, records=records).records_of(
            [it.media_path for it in manifest.items])
        print(f"analysed {len(manifest.items)} clips through the live pipeline in {time.time() - started:.1f}s",
              file=sys.stderr)
        return 0
    delta = text_delta_of(args.heads) if args.modality == "text" else None
    embedder = make_embedder(args.modality, args.device, args.asr, delta)
    try:
        X = embed_manifest(manifest, embedder, cache)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(X)} {args.modality} embeddings ({X.shape[1]}-d, {embedder.model_id}) in "
          f"{time.time() - started:.1f}s, cached under {cache.folder(args.modality, embedder.model_id)}",
          file=sys.stderr)
    return 0


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))
