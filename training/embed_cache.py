"""A resumable on-disk cache of embeddings: Parquet files keyed by content hash, one folder per model id + settings.

Layout: <root>/<modality>/<sha256(model_id)[:16]>/part-<n>.parquet, each part with columns `key` (the item's
content hash) and `embedding` (float32 list), and the model id in its metadata. A part is written to a temporary
name and renamed, so an interrupted run leaves only whole parts: the next run reads them and computes only what is
missing. When a run completes, its parts are compacted into one.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from media import SAMPLE_RATE
from models.assets import cache_dir, file_sha256

PART_PREFIX = "part-"


def text_key(text: str) -> str:
    return "t:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_key(path: str | Path) -> str:
    return "f:" + file_sha256(path)


class Progress:
    """A one-line progress report on stderr (a bar when stderr is a terminal, a line every few seconds when not)."""

    def __init__(self, total: int, label: str, enabled: bool = True, every_s: float = 5.0):
        self.total, self.label, self.enabled, self.every_s = total, label, enabled and total > 0, every_s
        self.done = 0
        self.started = self.last = time.time()
        self.tty = sys.stderr.isatty()

    def update(self, n: int) -> None:
        self.done += n
        now = time.time()
        if self.enabled and (self.tty or now - self.last >= self.every_s or self.done >= self.total):
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            width = 30
            filled = int(width * self.done / self.total)
            line = (f"{self.label}: [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                    f"{rate:.1f}/s eta {eta:.0f}s")
            sys.stderr.write(("\r" + line) if self.tty else (line + "\n"))
            if self.tty and self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


class ParquetParts:
    """An append-only store of Parquet parts in one folder (<folder>/part-<ns>-<pid>.parquet), each written
    atomically, so several runs may add to it and an interruption loses at most the part being written."""

    def __init__(self, folder: Path):
        self.folder = folder

    def parts(self) -> list[Path]:
        return sorted(self.folder.glob(f"{PART_PREFIX}*.parquet"))

    def tables(self, what: str):
        """Each readable part as a pyarrow Table; an unreadable part is reported and skipped (its items are
        computed again)."""
        import pyarrow.parquet as pq

        for part in self.parts():
            try:
                yield pq.read_table(part)
            except Exception as exc:  # a part damaged outside this code
                print(f"{what} cache: ignoring unreadable {part} ({exc})", file=sys.stderr)

    def write(self, table) -> Path:
        import pyarrow.parquet as pq

        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{PART_PREFIX}{time.time_ns():020d}-{os.getpid()}.parquet"
        tmp = self.folder / (name + ".tmp")
        pq.write_table(table, tmp)
        tmp.replace(self.folder / name)
        return self.folder / name

    def compact(self, table) -> None:
        """Replace every part with `table` (everything they held, merged by the caller)."""
        parts = self.parts()
        self.write(table)
        for part in parts:
            part.unlink(missing_ok=True)


def _settings_folder(root: Path, kind: str, settings_id: str) -> Path:
    return root / kind / hashlib.sha256(settings_id.encode()).hexdigest()[:16]


class EmbeddingCache:
    """Embedding vectors keyed by item (file hash + span, or text hash), per modality and embedding model id."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else cache_dir() / "embeddings"

    def folder(self, modality: str, model_id: str) -> Path:
        return _settings_folder(self.root, modality, model_id)

    def load(self, modality: str, model_id: str) -> dict[str, np.ndarray]:
        """Every cached embedding for this model id: key → vector."""
        found: dict[str, np.ndarray] = {}
        for table in ParquetParts(self.folder(modality, model_id)).tables("embedding"):
            keys = table.column("key").to_pylist()
            values = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
            values = values.reshape(len(keys), -1).astype(np.float32, copy=False)
            found.update(zip(keys, values))
        return found

    @staticmethod
    def _table(model_id: str, keys: list[str], vectors: np.ndarray):
        import pyarrow as pa

        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
        column = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
        return pa.table({"key": pa.array(keys, pa.string()), "embedding": column}, metadata={"model_id": model_id})

    def _write_part(self, folder: Path, model_id: str, keys: list[str], vectors: np.ndarray) -> Path:
        return ParquetParts(folder).write(self._table(model_id, keys, vectors))

    def compact(self, modality: str, model_id: str) -> None:
        store = ParquetParts(self.folder(modality, model_id))
        if len(store.parts()) <= 1:
            return
        found = self.load(modality, model_id)
        keys = list(found)
        store.compact(self._table(model_id, keys, np.stack([found[k] for k in keys])))

    def get_or_compute(self, keys: Sequence[str], compute: Callable[[list[int]], np.ndarray], *, modality: str,
                       model_id: str, batch_size: int = 64, save_every: int = 256,
                       progress: bool = True) -> np.ndarray:
        """Embeddings for keys, in order. compute(indices) embeds the items at those indices of `keys` and is
        called only for keys not cached yet (each distinct key once), batch_size indices at a time; results are
        saved every save_every items, so an interruption loses at most that much work."""
        folder = self.folder(modality, model_id)
        cached = self.load(modality, model_id)
        todo: list[int] = []
        seen: set[str] = set()
        for i, k in enumerate(keys):
            if k not in cached and k not in seen:
                seen.add(k)
                todo.append(i)
        bar = Progress(len(todo), f"embedding {modality} ({len(set(keys)) - len(todo)} cached)", enabled=progress)
        pending_keys: list[str] = []
        pending: list[np.ndarray] = []
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            vectors = np.asarray(compute(batch), dtype=np.float32)
            if vectors.shape[0] != len(batch):
                raise RuntimeError(f"the embedder returned {vectors.shape[0]} vectors for {len(batch)} items")
            for i, v in zip(batch, vectors):
                cached[keys[i]] = v
                pending_keys.append(keys[i])
                pending.append(v)
            bar.update(len(batch))
            if len(pending_keys) >= save_every:
                self._write_part(folder, model_id, pending_keys, np.stack(pending))
                pending_keys, pending = [], []
        if pending_keys:
            self._write_part(folder, model_id, pending_keys, np.stack(pending))
        if todo:
            self.compact(modality, model_id)
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([cached[k] for k in keys])


# ------------------------------------------------------------------------------------------------- manifests
def make_embedder(modality: str, device: str = "auto", asr: str = "tiny.en", text_delta: Path | None = None):
    """The embedder of a manifest modality: text → MiniLM, audio → Whisper encoder + prosody, visual → scene."""
    if modality == "text":
        from models.text import TextEmbedder

        return TextEmbedder(device, encoder_delta=text_delta)
    if modality == "audio":
        from models.audio import AudioEmbedder

        return AudioEmbedder(asr, device=device)
    if modality == "visual":
        from models.visual import SceneEmbedder

        return SceneEmbedder(device)
    raise ValueError(f"no single embedder for modality {modality!r}")


def load_audio(path: Path) -> np.ndarray:
    """Any audio or video file's sound as 16 kHz mono float32 (FFmpeg through PyAV, as faster-whisper decodes)."""
    from faster_whisper.audio import decode_audio

    try:
        return np.asarray(decode_audio(str(path), sampling_rate=SAMPLE_RATE), dtype=np.float32)
    except Exception as exc:  # PyAV raises many error types for unreadable media
        raise ValueError(f"cannot decode audio from {path}: {exc}") from exc


def audio_seconds(path: Path) -> float:
    """A media file's audio duration from its container (no decoding); a ValueError when it has no audio."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise ValueError(f"{path} has no audio stream")
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            return float(container.duration or 0) / av.time_base
    except av.FFmpegError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc


def audio_part(audio: np.ndarray, start: float | None, end: float | None) -> np.ndarray:
    """The samples between start and end seconds (None: the clip's start / end); an empty part is an error."""
    if start is None and end is None:
        return audio
    a = int(round((start or 0.0) * SAMPLE_RATE))
    b = len(audio) if end is None else int(round(end * SAMPLE_RATE))
    part = audio[a:b]
    if len(part) == 0:
        raise ValueError(f"the part {start}-{end} s is beyond the audio's {len(audio) / SAMPLE_RATE:.2f} s")
    return part


def _span_suffix(item) -> str:
    if item.start is None and item.end is None:
        return ""
    start = "" if item.start is None else repr(float(item.start))
    end = "" if item.end is None else repr(float(item.end))
    return f"@{start}-{end}"


def embed_manifest(manifest, embedder, cache: EmbeddingCache | None = None, progress: bool = True,
                   batch_size: int | None = None) -> np.ndarray:
    """(n, dim) embeddings of a text, audio or visual manifest's items, through the cache."""
    modality = manifest.modality
    cache = cache or EmbeddingCache()
    items = manifest.items
    if modality == "text":
        keys = [text_key(it.text) for it in items]

        def compute(idx: list[int]) -> np.ndarray:
            return embedder.embed([items[i].text for i in idx])
    elif modality == "audio":
        file_keys = {p: file_key(p) for p in dict.fromkeys(it.path for it in items)}
        keys = [file_keys[it.path] + _span_suffix(it) for it in items]

        decoded: dict[Path, np.ndarray] = {}  # the last file decoded: its parts are usually consecutive items

        def compute(idx: list[int]) -> np.ndarray:
            clips = []
            for i in idx:
                try:
                    if items[i].path not in decoded:
                        decoded.clear()
                        decoded[items[i].path] = load_audio(items[i].path)
                    clips.append(audio_part(decoded[items[i].path], items[i].start, items[i].end))
                except ValueError as exc:
                    raise ValueError(f"{manifest.path}: row {items[i].row}: {exc}") from exc
            return embedder.embed(clips)
    elif modality == "visual":
        from models.visual import load_image

        keys = [file_key(it.path) for it in items]

        def compute(idx: list[int]) -> np.ndarray:
            images = []
            for i in idx:
                try:
                    images.append(load_image(items[i].path))
                except (ValueError, FileNotFoundError) as exc:
                    raise ValueError(f"{manifest.path}: row {items[i].row}: {exc}") from exc
            return embedder.embed(images)
    else:
        raise ValueError(f"embed_manifest handles text, audio and visual manifests, not {modality!r}")
    size = batch_size or {"text": 256, "audio": 8, "visual": 16}[modality]
    return cache.get_or_compute(keys, compute, modality=modality, model_id=embedder.model_id, batch_size=size,
                                save_every=max(size, 64), progress=progress)


# ------------------------------------------------------------------------------------------------- CLI
def text_delta_of(heads_dir: Path | None, name: str = "text") -> Path | None:
    """The fine-tuned encoder file the text head in heads_dir was trained with, if any."""
    from models.heads import load_head

    head = load_head(name, heads_dir) if heads_dir is not None else None
    if head is None or not head.card.get("encoder_delta"):
        return None
    return head.sibling(head.card["encoder_delta"])


class RecordCache:
    """JSON records (per-clip analyses that are more than one vector) in Parquet, keyed like the embedding cache:
    <root>/<kind>/<sha256(settings_id)[:16]>/part-*.parquet with columns key and record (JSON text)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else cache_dir() / "records"

    def folder(self, kind: str, settings_id: str) -> Path:
        return _settings_folder(self.root, kind, settings_id)

    def load(self, kind: str, settings_id: str) -> dict[str, dict]:
        import json

        found: dict[str, dict] = {}
        for table in ParquetParts(self.folder(kind, settings_id)).tables("record"):
            for key, record in zip(table.column("key").to_pylist(), table.column("record").to_pylist()):
                found[key] = json.loads(record)
        return found

    @staticmethod
    def _table(settings_id: str, records: dict[str, dict]):
        import json

        import pyarrow as pa

        return pa.table({"key": pa.array(list(records), pa.string()),
                         "record": pa.array([json.dumps(r) for r in records.values()], pa.string())},
                        metadata={"settings_id": settings_id})

    def add(self, kind: str, settings_id: str, records: dict[str, dict]) -> None:
        if records:
            ParquetParts(self.folder(kind, settings_id)).write(self._table(settings_id, records))

    def compact(self, kind: str, settings_id: str) -> None:
        store = ParquetParts(self.folder(kind, settings_id))
        if len(store.parts()) > 1:
            store.compact(self._table(settings_id, self.load(kind, settings_id)))
