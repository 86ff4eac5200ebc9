"""int8 quantisation (tsva.export.quantize, `tsva quantize`): a tiny random TSVA network quantised
on a small calibration pool loads in ONNX Runtime, keeps the float32 contract and metadata, stays
close to its float model, and keeps the residual tail in float; the gateway serves an int8 model
over real gRPC."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data
from skimage.filters import gaussian
from tsva.common.images import decode_image, encode_image
from tsva.export.dataset import PairPool
from tsva.export.metadata import model_metadata
from tsva.export.network import NetworkConfig, build_network
from tsva.export.onnx_export import export_onnx
from tsva.common.metadata import read_onnx_props
from tsva.export.optics import Optics, Sample
from tsva.v1 import tsva_pb2 as pb
from tsva.v1 import tsva_pb2_grpc as pb_grpc

from tests.support.gateway import start_gateway

pytestmark = pytest.mark.usefixtures("torch_one_thread")

REPO = Path(__file__).resolve().parents[2]


def _float_model(path: Path) -> Path:
    """A width-4, depth-2 TSVA with random weights everywhere (a zero head would quantise trivially)."""
    torch.manual_seed(0)
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


@pytest.mark.slow
def test_quantize_command_end_to_end_and_served_by_the_gateway(tmp_path):
    """The real `tsva quantize` in a subprocess on a saved pool, then a gateway process serving the
    int8 model: a tile fused over real gRPC, and GetInfo shows the model's precision."""
    source = _float_model(tmp_path / "float.onnx")
    _pool(6).save(tmp_path / "pool.npz")
    done = subprocess.run([sys.executable, "-m", "tsva.common.cli", "quantize", str(source), "--pool",
                           str(tmp_path / "pool.npz"), "-o", str(tmp_path / "int8.onnx"), "--batch", "3"],
                          capture_output=True, text=True, timeout=180, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "int8 vs float32 on the calibration pairs: max abs diff" in done.stdout
    assert read_onnx_props(tmp_path / "int8.onnx")["precision"] == "int8"
    rng = np.random.default_rng(2)
    shot = rng.integers(0, 256, (100, 130, 3), dtype=np.uint8)
    with start_gateway(tmp_path / "int8.onnx", patch_size=64, patch_overlap=16) as gw, gw.channel() as channel:
        stub = pb_grpc.VirtualAutofocusStub(channel)
        info = stub.GetInfo(pb.GetInfoRequest(), timeout=30)
        reply = stub.Fuse(pb.FuseRequest(tile_id="int8", shot_a=encode_image(shot),
                                         shot_b=encode_image(shot // 2)), timeout=60)
    assert info.model_metadata["precision"] == "int8"
    fused = decode_image(reply.fused)
    assert fused.shape == shot.shape and fused.dtype == np.uint8
