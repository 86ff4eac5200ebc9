"""Pixel-typed model fixtures and checks shared by the model-contract tests."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto
from tsva.export.pixel_io import write_pixel_model

from tests.support.models import make_unet_onnx
from tests.support.triton_config import assert_bounded_queue, onnx_io


def pair(height: int, width: int, dtype=np.uint8, seed: int = 0, channels: int = 3):
    """Two smooth textured shots (a blurred one and a sharper one), values over the whole range."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    scene = gaussian_filter(rng.random((height, width, channels)), sigma=(2, 2, 0))
    scene = (scene - scene.min()) / np.ptp(scene)
    peak = np.iinfo(dtype).max
    return [np.rint(np.clip(gaussian_filter(scene, sigma=(s, s, 0)), 0, 1) * peak).astype(dtype)
            for s in (0.5, 2.0)]


@pytest.fixture(scope="module")
def unet(tmp_path_factory):
    return make_unet_onnx(tmp_path_factory.mktemp("unet") / "unet.onnx", width=4, depth=3)


@pytest.fixture(scope="module")
def unet_u8(unet):
    return write_pixel_model(unet, unet.with_name("unet_uint8.onnx"), "uint8")


@pytest.fixture(scope="module")
def unet_u16(unet):
    return write_pixel_model(unet, unet.with_name("unet_uint16.onnx"), "uint16")


def assert_pixel_config_agrees(config, onnx_path, data_type: str) -> None:
    from tritonclient.grpc import model_config_pb2 as mc

    io = onnx_io(onnx_path)
    elem = {"TYPE_UINT8": TensorProto.UINT8, "TYPE_UINT16": TensorProto.UINT16}[data_type]
    assert {t.name for t in config.input} == {"y1", "y2"} and [t.name for t in config.output] == ["x"]
    for tensor in [*config.input, *config.output]:
        assert tensor.data_type == mc.DataType.Value(data_type) and io[tensor.name][0] == elem
        assert list(tensor.dims) == [-1, -1, 3] and io[tensor.name][1][1:] == [None, None, 3]
    assert config.max_batch_size > 0 and dict(config.parameters)["io.size_multiple"].string_value == "1"
    assert_bounded_queue(config)
    for warmup in config.model_warmup:
        for tensor in warmup.inputs.values():
            assert tensor.data_type == mc.DataType.Value(data_type) and tensor.dims[-1] == 3
            assert all(d % 16 == 0 for d in tensor.dims[:2])
