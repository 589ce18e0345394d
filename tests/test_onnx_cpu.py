"""The CPU encoders on ONNX Runtime (models/onnx_cpu.py): the same embeddings as torch on real inputs, a fresh export
per weights, and torch again whenever the export cannot be made or trusted."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from models import onnx_cpu
from models.text import TextEmbedder
from models.visual import SceneEmbedder, load_image
from testkit.data import need_data

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.models]  # each test loads real models

SENTENCES = ["I love this so much, thank you!", "This is the worst day of my life.", "ok",
             "The committee will meet again on Tuesday to discuss the budget for next year."]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDSENT_CACHE", str(tmp_path))
    return tmp_path / "onnx"


def torch_embeddings(embedder: TextEmbedder, texts: list[str]) -> np.ndarray:
    embedder.use_torch()
    return embedder.embed(texts)


def test_text_embeddings_on_onnx_runtime_equal_torch_and_follow_a_delta(cache):
    embedder = TextEmbedder("cpu")
    on_onnx = embedder.embed(SENTENCES)
    assert embedder._session is not None, "the CPU embedder should run on ONNX Runtime"
    assert [p.name.split("-")[0] for p in cache.glob("*.onnx")] == ["minilm"]
    np.testing.assert_allclose(on_onnx, torch_embeddings(TextEmbedder("cpu"), SENTENCES), atol=1e-5)

    # new weights (a head's fine-tuned delta) → a new export for them, never the stale one
    from models.heads import load_head

    head = load_head("text")
    if head is None or not head.card.get("encoder_delta"):
        pytest.skip("the shipped text head uses the plain encoder")
    embedder.load_delta(head.sibling(head.card["encoder_delta"]))
    tuned = embedder.embed(SENTENCES)
    assert len(list(cache.glob("minilm-*.onnx"))) == 2
    reference = TextEmbedder("cpu")
    reference.load_delta(head.sibling(head.card["encoder_delta"]))
    np.testing.assert_allclose(tuned, torch_embeddings(reference, SENTENCES), atol=1e-5)
    assert not np.allclose(tuned, on_onnx, atol=1e-3)


def _malloc_trim():
    """glibc's malloc_trim (gives freed heap pages back to the OS, so RSS shows what is in use), or None."""
    import ctypes

    try:
        return ctypes.CDLL(None).malloc_trim
    except AttributeError:
        return None


def _trimmed_rss_mib() -> float:
    _malloc_trim()(0)
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) / 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/status") or _malloc_trim() is None,
                    reason="needs /proc and glibc's malloc_trim")
def test_the_text_session_keeps_no_buffers_of_its_largest_batch(cache):
    """A server embeds batches of transcripts and their leave-one-word-out variants that grow as longer
    transcripts come; ONNX Runtime's arena would keep the largest batch's buffers for good (with it, a server's
    RSS grew by 5.2-5.5 % from the 10th to the 60th minute of a stream, without it by 3.3-3.7 %)."""
    embedder = TextEmbedder("cpu")
    embedder.embed(SENTENCES)
    assert embedder._session[1].get_session_options().enable_cpu_mem_arena is False
    before = _trimmed_rss_mib()
    longest = " ".join(["the committee will meet again on tuesday to discuss the budget"] * 12)
    embedder.embed([longest] * 64)
    assert _trimmed_rss_mib() - before < 15


def test_scene_embeddings_on_onnx_runtime_equal_torch_on_real_frames(cache):
    images = [load_image(need_data("videos", name)) for name in ("pyfeat_single_face.jpg", "pyfeat_multi_face.jpg")]
    scene = SceneEmbedder("cpu")
    assert scene._onnx is not None
    on_onnx = scene.embed(images)
    scene._onnx = None  # the torch path of the same object
    np.testing.assert_allclose(on_onnx, scene.embed(images), atol=1e-4)
    assert SceneEmbedder("cpu")._onnx is not None and len(list(cache.glob("scene-*.onnx"))) == 1  # export reused


def test_an_export_that_fails_or_disagrees_leaves_torch_running(cache, monkeypatch, caplog):
    def broken_export(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(onnx_cpu, "_export", broken_export)
    with caplog.at_level(logging.WARNING, logger="models.onnx_cpu"):
        embedder = TextEmbedder("cpu")
        vectors = embedder.embed(SENTENCES[:2])
    assert embedder._session is None and not embedder.onnx
    assert "minilm runs on torch, not ONNX Runtime (RuntimeError: exporter exploded)" in caplog.text
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    # an export whose output is not torch's (here: another model's file under this key) is refused and removed
    monkeypatch.undo()
    monkeypatch.setenv("VIDSENT_CACHE", str(cache.parent))
    SceneEmbedder("cpu")  # writes scene's export
    scene_file = next(cache.glob("scene-*.onnx"))
    wrong = onnx_cpu.onnx_path("scene", "another model id")
    wrong.write_bytes(scene_file.read_bytes())
    monkeypatch.setattr(SceneEmbedder, "model_id", "another model id")
    scrambled = SceneEmbedder.__new__(SceneEmbedder)
    scrambled.device = "cpu"
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from models.visual import pooled_features

    scrambled.model = EfficientNet.from_name("efficientnet-lite0").eval()  # random weights: not the exported ones
    scrambled.pooled = pooled_features(scrambled.model)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="models.onnx_cpu"), torch.inference_mode():
        assert scrambled._cpu_session() is None
    assert "its output differs from torch's" in caplog.text and not wrong.exists()


def test_fine_tuning_switches_the_embedder_to_torch(cache):
    from training.text_finetune import FinetuneConfig, finetune_top_layers

    embedder = TextEmbedder("cpu")
    embedder.embed(["warm"])
    assert embedder._session is not None
    finetune_top_layers(embedder, ["good", "bad", "great", "awful"], np.array([1, 0, 1, 0]), 2,
                        FinetuneConfig(tune_layers=1, epochs=1, batch_size=4))
    assert embedder._session is None and not embedder.onnx
