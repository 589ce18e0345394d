"""The torch encoders run on ONNX Runtime on a CPU: the same weights, exported once, several times faster.

On this project's 2-core CPU, with one intra-op thread as the scoring thread has, EfficientNet-Lite0 takes about
11 ms per frame on ONNX Runtime against 30-40 ms in eager torch, and MiniLM a window's transcript with its
evidence variants about 50 ms against 70 ms. The outputs agree within 1e-5, so the heads, the embedding caches and
their model ids are the same on either runtime.

`cpu_session(name, key, module, inputs, ...)` exports `module` with torch's ONNX exporter to
$VIDSENT_CACHE/onnx/<name>-<digest of key>.onnx (written to a temporary file and renamed, so processes starting
together never read a half-written model), opens it, and checks it against torch on `inputs`. Anything that goes
wrong (onnx not installed, an export or a check that fails) is logged once and returns None: the caller keeps torch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.assets import cache_dir

log = logging.getLogger(__name__)

OPSET = 17
TOLERANCE = 1e-4  # largest absolute difference from torch's output accepted on the check input


def onnx_path(name: str, key: str) -> Path:
    import torch

    digest = hashlib.sha256(f"{key}|torch={torch.__version__}|opset={OPSET}".encode()).hexdigest()[:16]
    return cache_dir() / "onnx" / f"{name}-{digest}.onnx"


def _export(module, inputs: tuple, path: Path, input_names: Sequence[str], output_names: Sequence[str],
            dynamic_axes: dict[str, dict[int, str]]) -> None:
    import warnings

    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's notes on Python control flow in transformers' code
            torch.onnx.export(module, inputs, tmp, input_names=list(input_names), output_names=list(output_names),
                              dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _options(threads: int, arena: bool = True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = arena
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # idle pool threads must not spin: speech recognition runs beside the scorers on the same cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def cpu_session(name: str, key: str, module, inputs: tuple, input_names: Sequence[str],
                output_names: Sequence[str], dynamic_axes: dict[str, dict[int, str]], threads: int = 1,
                arena: bool = True):
    """An onnxruntime InferenceSession equal to `module(*inputs)` (its first output), or None (torch stays).

    arena=False: the session allocates its tensors per run and frees them after, instead of keeping them in
    ONNX Runtime's memory arena, which grows to the largest input the session has seen and never shrinks."""
    import torch

    path = onnx_path(name, key)
    try:
        import onnxruntime as ort

        if not path.exists():
            log.info("exporting %s to ONNX (once per model version): %s", name, path)
            _export(module, inputs, path, input_names, output_names, dynamic_axes)
        session = ort.InferenceSession(str(path), _options(threads, arena), providers=["CPUExecutionProvider"])
        with torch.inference_mode():
            expected = module(*inputs)
        got = session.run(None, feeds(input_names, inputs))[0]
        difference = float(np.max(np.abs(got - expected.numpy()))) if got.size else 0.0
        if not difference <= TOLERANCE:
            raise ValueError(f"its output differs from torch's by {difference:.2g}")
        return session
    except Exception as exc:  # noqa: BLE001 - torch is always there to fall back on
        log.warning("%s runs on torch, not ONNX Runtime (%s: %s)", name, type(exc).__name__, exc)
        if path.exists() and not isinstance(exc, ImportError):
            path.unlink(missing_ok=True)  # a bad export is made again next time
        return None


def feeds(input_names: Sequence[str], inputs: Sequence[Any]) -> dict[str, np.ndarray]:
    return {n: (x.numpy() if hasattr(x, "numpy") else np.asarray(x)) for n, x in zip(input_names, inputs)}
