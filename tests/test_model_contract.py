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

import subprocess
import sys

import grpc
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from conftest import REPO_ROOT, make_unet_onnx, metric, start_gateway
from test_triton_config import assert_bounded_queue, onnx_io, parse
from triton_harness import TritonServer
from tsva.client.images import decode_image, encode_image
from tsva.export.pixel_io import PixelIOError, pixel_triton_config, wrap_pixel_io, write_pixel_model
from tsva.server.contract import ContractError, contract_from_io
from tsva.v1 import tsva_pb2 as pb
from tsva.v1 import tsva_pb2_grpc as pb_grpc

FLOAT_IO = {"y1": ("tensor(float)", [3, "h", "w"]), "y2": ("tensor(float)", [3, "h", "w"])}


def pair(height: int, width: int, dtype=np.uint8, seed: int = 0, channels: int = 3):
    """Two smooth textured shots (a blurred one and a sharper one), values over the whole range."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    scene = gaussian_filter(rng.random((height, width, channels)), sigma=(2, 2, 0))
    scene = (scene - scene.min()) / np.ptp(scene)
    peak = np.iinfo(dtype).max
    return [np.rint(np.clip(gaussian_filter(scene, sigma=(s, s, 0)), 0, 1) * peak).astype(dtype)
            for s in (0.5, 2.0)]


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(peak ** 2 / mse)


# ------------------------------------------------------------------ reading the contract

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


# ------------------------------------------------------------------ the pixel-typed export

@pytest.fixture(scope="module")
def unet(tmp_path_factory):
    return make_unet_onnx(tmp_path_factory.mktemp("unet") / "unet.onnx", width=4, depth=3)


@pytest.fixture(scope="module")
def unet_u8(unet):
    return write_pixel_model(unet, unet.with_name("unet_uint8.onnx"), "uint8")


@pytest.fixture(scope="module")
def unet_u16(unet):
    return write_pixel_model(unet, unet.with_name("unet_uint16.onnx"), "uint16")


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


def test_export_verb_writes_the_model_and_its_triton_directory(unet, tmp_path):
    done = subprocess.run([sys.executable, "-m", "tsva.client.cli", "export", str(unet), "--io", "uint8",
                           "-o", str(tmp_path / "m.onnx"), "--triton-dir", str(tmp_path / "repo")],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    model_dir = tmp_path / "repo" / "tsva_uint8"
    config = parse(model_dir / "config.pbtxt")
    assert config.name == "tsva_uint8" and (model_dir / "1" / "model.onnx").is_file()
    assert_pixel_config_agrees(config, model_dir / "1" / "model.onnx", "TYPE_UINT8")


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


# ------------------------------------------------------------------ through real processes

def fuse_all(gateway, tiles, **request_fields) -> list[pb.FuseResponse]:
    """Every tile through one FuseTiles stream (so tiles of one size can share a batch)."""
    requests = [pb.FuseRequest(tile_id=f"t{i}", shot_a=encode_image(a), shot_b=encode_image(b), **request_fields)
                for i, (a, b) in enumerate(tiles)]
    with gateway.channel() as channel:
        replies = list(pb_grpc.VirtualAutofocusStub(channel).FuseTiles(iter(requests), timeout=300))
    by_id = {r.tile_id: r for r in replies}  # a stream answers in completion order
    assert sorted(by_id) == sorted(f"t{i}" for i in range(len(tiles))) and len(replies) == len(tiles)
    assert all(not r.HasField("error") for r in replies), [r.error for r in replies if r.HasField("error")]
    return [by_id[f"t{i}"] for i in range(len(tiles))]


TILES = [pair(136, 200, seed=1), pair(136, 200, seed=2), pair(136, 200, seed=3), pair(70, 90, seed=4)]


@pytest.mark.slow
def test_whole_pixel_tiles_through_a_gateway_match_the_float32_path(unet, unet_u8):
    """Embedded backend, real gateway processes: uint8 whole tiles vs float32 whole tiles (within
    rounding: 1 LSB), and vs the float32 patch path (>= 50 dB, the patch-wise bound)."""
    with start_gateway(unet_u8, patch_size="tile", max_batch=4, max_delay_ms=500) as gw:
        pixel = fuse_all(gw, TILES)
        with gw.channel() as channel:
            info = pb_grpc.VirtualAutofocusStub(channel).GetInfo(pb.GetInfoRequest(), timeout=10)
        # Three 136x200 tiles and one 70x90: the three share batches, the odd one goes alone.
        batches = metric(gw.metrics_url, "tsva_backend_batch_size_count")
        assert batches < len(TILES), f"{batches} batches for {len(TILES)} tiles: same-size tiles did not batch"
        sent = metric(gw.metrics_url, "tsva_backend_tensor_bytes_total", direction="sent")
        assert sent == sum(2 * a.nbytes for a, _ in TILES), "pixel tiles must go unpadded and uncast"
    assert info.patch_size == 0  # whole tiles
    with start_gateway(unet, patch_size="tile", max_batch=4) as gw:
        floats = fuse_all(gw, TILES)
    with start_gateway(unet, patch_size=64, patch_overlap=32, max_batch=16) as gw:
        patches = fuse_all(gw, TILES)
    for (a, _), p, f, q in zip(TILES, pixel, floats, patches):
        ours, theirs, patchwise = (decode_image(r.fused) for r in (p, f, q))
        assert ours.shape == a.shape and ours.dtype == np.uint8
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
        assert p.y1_shot == f.y1_shot and p.brenner_a == f.brenner_a
        assert psnr(ours, patchwise, 255) >= 50


@pytest.mark.slow
def test_grey_and_uint16_tiles_through_a_uint16_model(unet, unet_u16):
    grey = [tuple(s[:, :, :1] for s in pair(64, 80, np.uint16, seed=5))]
    colour = [pair(64, 80, np.uint16, seed=6)]
    with start_gateway(unet_u16, patch_size="tile") as gw:
        pixel = fuse_all(gw, grey + colour)
    with start_gateway(unet, patch_size="tile") as gw:
        floats = fuse_all(gw, grey + colour)
    (g_ours, c_ours), (g_theirs, c_theirs) = ([decode_image(r.fused) for r in rs] for rs in (pixel, floats))
    assert g_ours.shape == g_theirs.shape == grey[0][0].shape and c_ours.shape == colour[0][0].shape
    assert g_ours.dtype == c_ours.dtype == np.uint16
    assert np.abs(c_ours.astype(int) - c_theirs.astype(int)).max() <= 1
    # Grey through an RGB model: the graph clips and rounds each channel, then the gateway takes
    # their mean (1 LSB more); the float path clips the mean, so they part only where one
    # channel of the model's output saturates.
    diff = np.abs(g_ours.astype(int) - g_theirs.astype(int))
    assert np.mean(diff <= 2) >= 0.99, f"{np.mean(diff > 2):.2%} of grey pixels differ by > 2 LSB"


@pytest.mark.slow
def test_whole_pixel_tiles_through_a_real_tritonserver(unet, unet_u8):
    """The same pixel-typed file served by tritonserver (its config as the harness derives it:
    UINT8 NHWC, the export's io.* parameters), whole tiles."""
    with TritonServer({"tsva": unet_u8}) as triton:
        with start_gateway(backend="triton", triton_urls=triton.url, model_path=unet_u8, patch_size="tile",
                           max_batch=4) as gw:
            via_triton = fuse_all(gw, TILES)
            sent = metric(gw.metrics_url, "tsva_backend_tensor_bytes_total", direction="sent")
            received = metric(gw.metrics_url, "tsva_backend_tensor_bytes_total", direction="received")
    with start_gateway(unet, patch_size="tile") as gw:
        floats = fuse_all(gw, TILES)
    pixels = sum(a.shape[0] * a.shape[1] for a, _ in TILES)
    assert (sent + received) / pixels == 9.0  # 3 + 3 bytes in, 3 out per pixel
    for t, f in zip(via_triton, floats):
        assert np.abs(decode_image(t.fused).astype(int) - decode_image(f.fused).astype(int)).max() <= 1


@pytest.mark.slow
def test_a_model_with_unknown_inputs_is_a_start_up_error(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["x"])], "foreign",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"]),
         helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["n", 1, "h", "w"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "foreign.onnx"
    onnx.save(model, str(path))
    done = subprocess.run([sys.executable, "-m", "tsva.server", "--model-path", str(path), "--host", "127.0.0.1",
                           "--port", "0", "--metrics-port", "0"], capture_output=True, text=True, timeout=120,
                          cwd=REPO_ROOT)
    assert done.returncode == 2
    assert "image tensor(float)" in done.stderr and "mask tensor(float)" in done.stderr
    assert "expected inputs y1, y2" in done.stderr


# ------------------------------------------------------------------ the patch plan

def test_auto_plan_follows_the_backend_and_the_engines_profile():
    """`--patch-size auto`: 224 on CPU, whole tiles on GPUs, except for a GPU model whose TensorRT
    profile was built for patches (the shipped float32 GPU config: sides up to 320)."""
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
    assert auto.patch_side("cpu") == 224 and auto.patch_side("gpu") == 0
    assert auto.patch_side("gpu", shipped_gpu) == 224 and auto.patch_side("gpu", pixel_gpu) == 0
    assert Config(patch_size="tile").patch_side("cpu") == 0 and Config(patch_size="96").patch_side("gpu") == 96
