"""The one Whisper model of a process: loaded once, shared by incremental ASR and the audio scorer.

The audio embedding reads Whisper's encoder part-way up (see models/audio.py): `load_whisper_encoder` gives a
CTranslate2 Whisper model that runs only the first blocks of the encoder, made once from the full model's weights by
copying model.bin without the later blocks (CTranslate2 counts a model's layers from the weights it finds).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import threading
from functools import cache
from pathlib import Path

from models.assets import cache_dir, whisper_dir
from models.runtime import resolve_device, runtime_plan

_load_lock = threading.Lock()


@cache
def _load(size: str, device: str, dtype: str, cpu_threads: int, workers: int):
    from faster_whisper import WhisperModel

    return WhisperModel(str(whisper_dir(size)), device=device, compute_type=dtype, cpu_threads=cpu_threads,
                        num_workers=workers)


def compute_type(device: str) -> str:
    """Whisper's weights: int8 on a CPU, float16 on a GPU."""
    return "float16" if device == "cuda" else "int8"


def load_whisper(size: str = "tiny.en", device: str = "auto", cpu_threads: int | None = None):
    """The process's faster_whisper.WhisperModel for 'tiny.en' or 'base' (compute_type(device)); as many
    concurrent passes and threads per pass as the runtime's ThreadPlan says, unless cpu_threads is given."""
    resolved = resolve_device(device)
    plan = runtime_plan()
    threads = plan.asr_threads if cpu_threads is None else cpu_threads
    with _load_lock:
        return _load(size, resolved, compute_type(resolved), threads, plan.asr_workers)


@cache
def encoder_block_count(size: str) -> int:
    """How many transformer blocks the encoder of this Whisper model has (tiny 4, base 6)."""
    config = json.loads((whisper_dir(size) / "config.json").read_text())
    if "encoder_layers" in config:
        return int(config["encoder_layers"])
    return len(_encoder_layer_ids(_read_model_bin_names(whisper_dir(size) / "model.bin")))


@cache
def _load_encoder(size: str, blocks: int, device: str, dtype: str):
    import ctranslate2

    return ctranslate2.models.Whisper(str(truncated_whisper_dir(size, blocks)), device=device,
                                      compute_type=dtype, intra_threads=1)


def load_whisper_encoder(size: str, blocks: int | None, device: str = "auto"):
    """A CTranslate2 Whisper model whose encoder stops after `blocks` blocks (None or all blocks: the shared model's
    own). Only its `encode` is meant to be used."""
    resolved = resolve_device(device)
    if blocks is None or blocks >= encoder_block_count(size):
        return load_whisper(size, resolved).model
    with _load_lock:
        return _load_encoder(size, blocks, resolved, compute_type(resolved))


# --------------------------------------------------------------------------------------------- model.bin surgery
# CTranslate2's model.bin (binary version 6): u32 version, string spec name, u32 revision, u32 variable count, then
# per variable: string name, u8 rank, u32 dims, u8 dtype, u32 byte count, bytes; then u32 alias count and
# (string alias, string target) pairs. A string is u16 length (with its NUL), the UTF-8 bytes and a NUL.
_LAYER = re.compile(r"^encoder/layer_(\d+)/")


def _read_string(f) -> str:
    (n,) = struct.unpack("<H", f.read(2))
    return f.read(n)[:-1].decode("utf-8")


def _write_string(f, s: str) -> None:
    raw = s.encode("utf-8")
    f.write(struct.pack("<H", len(raw) + 1) + raw + b"\0")


def _iter_model_bin(path: Path, with_data: bool = True):
    """Yields ('header', (version, name, revision)), ('variable', (name, rank, dims, dtype, data)) and
    ('alias', (alias, target)) records of a CTranslate2 model.bin (data is None when with_data is False: the weights
    are skipped, not read)."""
    with open(path, "rb") as f:
        (version,) = struct.unpack("<I", f.read(4))
        if version != 6:
            raise ValueError(f"{path}: CTranslate2 model binary version {version}, expected 6")
        name = _read_string(f)
        (revision,) = struct.unpack("<I", f.read(4))
        yield "header", (version, name, revision)
        (count,) = struct.unpack("<I", f.read(4))
        for _ in range(count):
            var = _read_string(f)
            rank = f.read(1)[0]
            dims = struct.unpack(f"<{rank}I", f.read(4 * rank))
            dtype = f.read(1)[0]
            (nbytes,) = struct.unpack("<I", f.read(4))
            if with_data:
                data = f.read(nbytes)
            else:
                data = None
                f.seek(nbytes, os.SEEK_CUR)
            yield "variable", (var, rank, dims, dtype, data)
        (aliases,) = struct.unpack("<I", f.read(4))
        for _ in range(aliases):
            yield "alias", (_read_string(f), _read_string(f))


def _read_model_bin_names(path: Path) -> list[str]:
    return [rec[0] for kind, rec in _iter_model_bin(path, with_data=False) if kind == "variable"]


def _encoder_layer_ids(names: list[str]) -> set[int]:
    return {int(m.group(1)) for m in map(_LAYER.match, names) if m}


def truncated_whisper_dir(size: str, blocks: int) -> Path:
    """A copy of the Whisper model directory without encoder blocks >= `blocks`, made once in the cache."""
    source = whisper_dir(size)
    source_bin = source / "model.bin"
    stamp = {"source": str(source_bin), "bytes": source_bin.stat().st_size, "blocks": blocks}
    target = cache_dir() / f"whisper-{size}-encoder{blocks}"
    stamp_file = target / "vidsent-source.json"
    if stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.name != "model.bin" and item.is_file():
            shutil.copyfile(item, target / item.name)

    def dropped(name: str) -> bool:
        m = _LAYER.match(name)
        return m is not None and int(m.group(1)) >= blocks

    partial = target / f"model.bin.partial-{os.getpid()}"
    records = list(_iter_model_bin(source_bin))
    variables = [rec for kind, rec in records if kind == "variable" and not dropped(rec[0])]
    aliases = [rec for kind, rec in records if kind == "alias" and not (dropped(rec[0]) or dropped(rec[1]))]
    version, name, revision = records[0][1]
    with open(partial, "wb") as out:
        out.write(struct.pack("<I", version))
        _write_string(out, name)
        out.write(struct.pack("<II", revision, len(variables)))
        for var, rank, dims, dtype, data in variables:
            _write_string(out, var)
            out.write(struct.pack(f"<B{rank}IBI", rank, *dims, dtype, len(data)))
            out.write(data)
        out.write(struct.pack("<I", len(aliases)))
        for alias, target_name in aliases:
            _write_string(out, alias)
            _write_string(out, target_name)
    partial.replace(target / "model.bin")
    stamp_file.write_text(json.dumps(stamp))
    return target
