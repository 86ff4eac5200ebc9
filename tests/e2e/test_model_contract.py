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

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from tsva.common.images import decode_image, encode_image
from tsva.v1 import tsva_pb2 as pb
from tsva.v1 import tsva_pb2_grpc as pb_grpc

from tests.support.gateway import start_gateway
from tests.support.metrics import metric
from tests.support.paths import REPO_ROOT
from tests.support.pixel_models import (  # noqa: F401 (fixtures)
    assert_pixel_config_agrees,
    pair,
    unet,
    unet_u8,
    unet_u16,
)
from tests.support.triton_config import parse
from tests.support.triton_harness import TritonServer


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(peak ** 2 / mse)


def test_export_verb_writes_the_model_and_its_triton_directory(unet, tmp_path):
    done = subprocess.run([sys.executable, "-m", "tsva.common.cli", "export", str(unet), "--io", "uint8",
                           "-o", str(tmp_path / "m.onnx"), "--triton-dir", str(tmp_path / "repo")],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    model_dir = tmp_path / "repo" / "tsva_uint8"
    config = parse(model_dir / "config.pbtxt")
    assert config.name == "tsva_uint8" and (model_dir / "1" / "model.onnx").is_file()
    assert_pixel_config_agrees(config, model_dir / "1" / "model.onnx", "TYPE_UINT8")


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
