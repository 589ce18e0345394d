"""The scene: EfficientNet-Lite0's pooled features of a whole frame, for the scene head."""

from __future__ import annotations

import numpy as np

from models.assets import efficientnet_lite0_weights
from models.images import check_image, resize
from models.runtime import resolve_device

# EfficientNet-Lite was trained in TensorFlow on (pixel - 127) / 128 (efficientnet/lite/efficientnet_lite_builder.py
# MEAN_RGB / STDDEV_RGB), and these weights are a direct conversion of that checkpoint; not ImageNet mean/std.
SCENE_PIXEL_MEAN = 127.0
SCENE_PIXEL_STD = 128.0
SCENE_SIZE = 224
SCENE_DIM = 1280




class SceneEmbedder:
    """EfficientNet-Lite0 (ImageNet) pooled 1280-d penultimate features of the whole frame."""

    model_id = "efficientnet-lite0-57934424/avgpool1280/crop224/norm127"

    def __init__(self, device: str = "auto") -> None:
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        self.device = resolve_device(device)
        model = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(efficientnet_lite0_weights(), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        self.model = model.eval().to(self.device)
        self.pooled = pooled_features(self.model)
        self._onnx = self._cpu_session() if self.device == "cpu" else None

    def _cpu_session(self):
        import torch

        from models.onnx_cpu import cpu_session
        from models.runtime import runtime_plan

        probe = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (2, 3, SCENE_SIZE, SCENE_SIZE))
                                 .astype(np.float32))
        return cpu_session("scene", self.model_id, self.pooled, (probe,), ["pixels"],
                           ["features"], {"pixels": {0: "n"}, "features": {0: "n"}},
                           threads=runtime_plan().torch_threads)

    @staticmethod
    def preprocess(image: np.ndarray) -> np.ndarray:
        """The centre square of the frame resized to 224x224 (ImageNet-style centre crop); uint8 HxWx3."""
        image = check_image(image)
        h, w = image.shape[:2]
        side = min(h, w)
        y0, x0 = (h - side) // 2, (w - side) // 2
        return resize(image[y0:y0 + side, x0:x0 + side], SCENE_SIZE, SCENE_SIZE)

    def embed(self, images: list[np.ndarray], batch_size: int | None = None) -> np.ndarray:
        """(n, 1280) float32. On CPU, batches were no faster per image than single frames (2 cores), so the CPU
        default is 1; on a GPU, 32."""
        import torch

        if not images:
            return np.zeros((0, SCENE_DIM), dtype=np.float32)
        batch_size = batch_size or (1 if self.device == "cpu" else 32)
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                batch = np.stack([self.preprocess(im) for im in images[start:start + batch_size]])
                if self._onnx is not None:
                    pixels = (batch.transpose(0, 3, 1, 2).astype(np.float32) - SCENE_PIXEL_MEAN) / SCENE_PIXEL_STD
                    out.append(self._onnx.run(None, {"pixels": pixels})[0])
                    continue
                x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float()
                x = (x - SCENE_PIXEL_MEAN) / SCENE_PIXEL_STD
                out.append(self.pooled(x).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)


def pooled_features(model):
    """EfficientNet's last feature map averaged over space, as a torch module: what the scene head reads (and
    what is exported to ONNX)."""
    import torch

    class PooledFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixels):
            return self.model.extract_features(pixels).mean(dim=(2, 3))

    return PooledFeatures().eval()
