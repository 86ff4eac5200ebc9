"""The model contract (float32 NCHW or uint8/uint16 NHWC pixels), the pixel-typed export and the
whole-tile patch plan.

- the contract is read from a model's inputs, and a model matching neither is refused by name;
- `tsva export --io uint8|uint16` wraps a float32 model: its output is the float32 path's,
  rounded the same way, for tile sizes that are no multiple of 16 (the graph pads and crops);
- its Triton config parses strictly and agrees with the ONNX file it serves;
- through a gateway process (embedded backend) and through a real tritonserver, the pixel-typed
  whole-tile path gives the float32 path's tile within rounding, and whole tiles stay within the
  patch-wise result's >= 50 dB;
- `tsva serve` with a model of unknown inputs exits 2 naming the inputs it found.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from tsva.common.contract import ContractError, contract_from_io
from tsva.export.pixel_io import PixelIOError, pixel_triton_config, wrap_pixel_io, write_pixel_model

from tests.support.paths import REPO_ROOT
from tests.support.pixel_models import (  # noqa: F401 (fixtures)
    assert_pixel_config_agrees,
    pair,
    unet,
    unet_u8,
    unet_u16,
)

FLOAT_IO = {"y1": ("tensor(float)", [3, "h", "w"]), "y2": ("tensor(float)", [3, "h", "w"])}


def test_size_multiple_read_from_the_model():
    """io.size_multiple where the model has one, else 16 or the network's size_multiple (2**depth,
    as `tsva export` writes it) where larger; patch origins follow that stride either way."""
    out = {"x": ("tensor(float)", [3, "h", "w"])}
    plain = contract_from_io(FLOAT_IO, out)
    assert (plain.size_multiple, plain.stride) == (16, 16)
    shipped_depth = contract_from_io(FLOAT_IO, out, {"size_multiple": "8", "depth": "3"})
    assert (shipped_depth.size_multiple, shipped_depth.stride) == (16, 16)  # as it has always been served
    deeper = contract_from_io(FLOAT_IO, out, {"size_multiple": "32", "depth": "5"})
    assert (deeper.size_multiple, deeper.stride) == (32, 32)
    padded_in_graph = contract_from_io(FLOAT_IO, out, {"size_multiple": "32", "io.size_multiple": "1"})
    assert (padded_in_graph.size_multiple, padded_in_graph.stride) == (1, 32)
    assert contract_from_io(FLOAT_IO, out, {"size_multiple": "x"}).size_multiple == 16  # unreadable: the default


def test_both_contracts_are_recognised():
    f32 = contract_from_io(FLOAT_IO, {"x": ("tensor(float)", [3, "h", "w"])})
    assert (f32.name, f32.layout, f32.size_multiple, f32.triton_datatype) == ("float32-nchw", "NCHW", 16, "FP32")
    # As Triton's JSON config spells them, with the pixel-typed export's parameters.
    u16 = contract_from_io({n: ("TYPE_UINT16", ["-1", "-1", "3"]) for n in ("y1", "y2")},
                           {"x": ("TYPE_UINT16", ["-1", "-1", "3"])}, {"io.size_multiple": "1", "io.min_size": "16"})
    assert (u16.name, u16.triton_datatype, u16.size_multiple, u16.min_size) == ("uint16-nhwc", "UINT16", 1, 16)
    assert u16.canvas_size(1024, 1224) == (1024, 1224) and u16.canvas_size(5, 40) == (16, 40)
    assert f32.canvas_size(1024, 1224) == (1024, 1232)


@pytest.mark.parametrize("inputs, outputs", [
    ({"image": ("tensor(float)", [3, "h", "w"])}, {"x": ("tensor(float)", [3, "h", "w"])}),   # other names
    (FLOAT_IO, {"x": ("tensor(uint8)", ["h", "w", 3])}),                                     # mixed types
    ({n: ("tensor(int32)", ["h", "w", 3]) for n in ("y1", "y2")}, {"x": ("tensor(int32)", ["h", "w", 3])}),
    ({n: ("tensor(uint8)", [3, "h", "w"]) for n in ("y1", "y2")}, {"x": ("tensor(uint8)", [3, "h", "w"])}),  # NCHW pixels
])
def test_a_model_matching_neither_contract_is_refused_naming_what_it_has(inputs, outputs):
    with pytest.raises(ContractError) as caught:
        contract_from_io(inputs, outputs, where="m.onnx")
    message = str(caught.value)
    assert "m.onnx" in message and all(name in message for name in inputs)


def test_padding_matches_the_patch_paths_symmetric_padding():
    contract = contract_from_io(FLOAT_IO, {"x": ("tensor(float)", [3, "h", "w"])})
    for h, w in ((20, 21), (16, 16), (5, 3), (33, 47)):
        tile = np.random.default_rng(h).integers(0, 256, (h, w, 3), dtype=np.uint8)
        hh, ww = contract.canvas_size(h, w)
        out = np.empty(contract.item_shape(hh, ww), np.float32)
        contract.write_padded_item(tile, out)
        reference = np.pad(tile, ((0, hh - h), (0, ww - w), (0, 0)), mode="symmetric")
        assert np.array_equal(out, reference.transpose(2, 0, 1) * np.float32(1 / 255))
        assert np.array_equal(contract.item_to_pixels(out, h, w, np.uint8, 3), tile)


@pytest.mark.parametrize("io", ["uint8", "uint16"])
def test_pixel_export_returns_the_float_paths_rounded_pixels(unet, io):
    model = wrap_pixel_io(onnx.load(str(unet)), io)
    floats = ort.InferenceSession(str(unet), providers=["CPUExecutionProvider"])
    pixels = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    dtype = np.dtype(io)
    for height, width in ((40, 56), (37, 50), (16, 16)):  # 37 x 50: padded to 48 x 64 in the graph
        a, b = pair(height, width, dtype, seed=height)
        (x,) = pixels.run(["x"], {"y1": a[None], "y2": b[None]})
        assert x.dtype == dtype and x.shape == (1, height, width, 3)
        hh, ww = -(-height // 16) * 16, -(-width // 16) * 16
        pad = lambda t: np.pad(t, ((0, hh - height), (0, ww - width), (0, 0)), mode="symmetric")  # noqa: E731
        scale = np.float32(1.0 / np.iinfo(dtype).max)
        (f,) = floats.run(["x"], {"y1": (pad(a).transpose(2, 0, 1) * scale)[None],
                                  "y2": (pad(b).transpose(2, 0, 1) * scale)[None]})
        expected = np.rint(np.clip(f[0, :, :height, :width], 0, 1) * np.iinfo(dtype).max).astype(dtype)
        assert np.array_equal(x[0], expected.transpose(1, 2, 0))
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["io.contract"] == f"{io}-nhwc" and metadata["io.size_multiple"] == "1"


def test_pixel_export_refuses_a_model_that_is_not_float32_contract(unet_u8, tmp_path):
    with pytest.raises(PixelIOError, match="not a float32-contract model"):
        wrap_pixel_io(onnx.load(str(unet_u8)), "uint8")
    with pytest.raises(PixelIOError, match="overwrite"):
        write_pixel_model(unet_u8, unet_u8, "uint8")


@pytest.mark.parametrize("io", ["uint8", "uint16"])
def test_gpu_pixel_config_profiles_cover_whole_tiles(io, unet_u8, unet_u16):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    config = text_format.Parse(pixel_triton_config(f"tsva_{io}", io), mc.ModelConfig())
    assert_pixel_config_agrees(config, unet_u8 if io == "uint8" else unet_u16, f"TYPE_{io.upper()}")
    assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    params = dict(accelerator.parameters)
    shapes = {w: [int(d) for d in params[f"trt_profile_{w}_shapes"].split(",")[0].split(":")[1].split("x")]
              for w in ("min", "opt", "max")}
    assert shapes["max"][0] == config.max_batch_size and shapes["min"][0] == 1
    assert shapes["max"][1] >= 1024 and shapes["max"][2] >= 1232 and shapes["opt"][1:3] == [1024, 1232]


def test_auto_plan_follows_the_backend_and_the_engines_profile():
    """`--patch-size auto`: whole tiles on CPU and GPUs (on CPU, tiles over 1536x1536 as 224-px
    patches), except for a GPU model whose TensorRT profile was built for patches (the shipped
    float32 GPU config: sides up to 320)."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2 as mc
    from tsva.server.backends.triton import profile_max_side
    from tsva.server.config import Config

    def as_json(text):  # as tritonclient's get_model_config(as_json=True) gives it
        return json_format.MessageToDict(text_format.Parse(text, mc.ModelConfig()), preserving_proto_field_name=True)

    f32 = contract_from_io(FLOAT_IO, {"x": ("tensor(float)", [3, "h", "w"])})
    u8 = contract_from_io({n: ("TYPE_UINT8", [-1, -1, 3]) for n in ("y1", "y2")}, {"x": ("TYPE_UINT8", [-1, -1, 3])})
    shipped_gpu = profile_max_side(as_json((REPO_ROOT / "model_repository/tsva/config.pbtxt").read_text()), f32)
    pixel_gpu = profile_max_side(as_json(pixel_triton_config("tsva_uint8", "uint8")), u8)
    assert (shipped_gpu, pixel_gpu) == (320, 2048)
    auto = Config()
    assert auto.patch_side("cpu") == 0 and auto.patch_side("gpu") == 0
    assert auto.large_tile_side("cpu") == 224 and auto.large_tile_side("gpu") == 0
    assert Config(patch_size="tile").large_tile_side("cpu") == 0  # an explicit plan is kept as given
    assert auto.patch_side("gpu", shipped_gpu) == 224 and auto.patch_side("gpu", pixel_gpu) == 0
    assert Config(patch_size="tile").patch_side("cpu") == 0 and Config(patch_size="96").patch_side("gpu") == 96
