"""A small float model and calibration pairs for the int8 quantisation tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from skimage import data
from skimage.filters import gaussian
from tsva.export.dataset import PairPool
from tsva.export.metadata import model_metadata
from tsva.export.network import NetworkConfig, build_network
from tsva.export.onnx_export import export_onnx
from tsva.export.optics import Optics, Sample

REPO = Path(__file__).resolve().parents[2]


def _float_model(path: Path, seed: int = 0) -> Path:
    """A width-4, depth-2 TSVA with random weights everywhere (a zero head would quantise trivially)."""
    torch.manual_seed(seed)
    net = build_network(NetworkConfig(arch="tsva", base_width=4, depth=2))
    torch.nn.init.normal_(net.decoder.head.weight, std=0.05)
    meta = model_metadata(net.config, Optics(), patch_size=64, training_data="test", training_command="tsva train --test",
                          evaluation_summary="not evaluated", sample=Sample())
    return export_onnx(net.eval(), path, meta)


def _pool(pairs: int = 8, size: int = 64) -> PairPool:
    """Calibration pairs from scikit-image's histology image: a lightly and a strongly blurred crop
    (stand-ins for the simulator's shots; what matters here is realistic value ranges)."""
    image = data.immunohistochemistry() / 255.0
    rng = np.random.default_rng(0)
    y1, y2, truth = (np.empty((pairs, 3, size, size), dtype) for dtype in (np.uint8, np.uint8, np.float16))
    for i in range(pairs):
        y, x = rng.integers(0, image.shape[0] - size, 2)
        crop = image[y:y + size, x:x + size]
        truth[i] = crop.transpose(2, 0, 1)
        y1[i] = np.round(gaussian(crop, 1.0, channel_axis=-1) * 255).transpose(2, 0, 1)
        y2[i] = np.round(gaussian(crop, 2.5, channel_axis=-1) * 255).transpose(2, 0, 1)
    return PairPool(y1, y2, truth, np.full(pairs, 1.0, np.float32),
                    simulation={"optics": Optics().to_dict(), "sample": Sample().to_dict()})
