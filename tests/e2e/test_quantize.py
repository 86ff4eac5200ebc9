"""int8 quantisation (tsva.export.quantize, `tsva quantize`): a tiny random TSVA network quantised
on a small calibration pool loads in ONNX Runtime, keeps the float32 contract and metadata, stays
close to its float model, and keeps the residual tail in float; the gateway serves an int8 model
over real gRPC."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from tsva.common.images import decode_image, encode_image
from tsva.common.metadata import read_onnx_props
from tsva.v1 import tsva_pb2 as pb
from tsva.v1 import tsva_pb2_grpc as pb_grpc

from tests.support.gateway import start_gateway
from tests.support.quantize_models import REPO, _float_model, _pool

pytestmark = pytest.mark.usefixtures("torch_one_thread")


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


@pytest.mark.slow
def test_the_gateway_runs_the_int8_form_beside_the_model_on_the_cpu(tmp_path):
    """`tsva quantize MODEL` without -o writes MODEL's int8 form beside it; a gateway process given
    the float file then runs the int8 form (GetInfo says int8), `--precision float32` the float
    file; once the float file is replaced, the stale int8 form is left alone and the log says why."""
    source = _float_model(tmp_path / "model.onnx")
    _pool(6).save(tmp_path / "pool.npz")
    done = subprocess.run([sys.executable, "-m", "tsva.common.cli", "quantize", str(source), "--pool",
                           str(tmp_path / "pool.npz"), "--batch", "3"], capture_output=True, text=True,
                          timeout=180, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert f"wrote {tmp_path / 'model.int8.onnx'}" in done.stdout

    def served(**flags):
        shot = np.random.default_rng(3).integers(0, 256, (64, 80, 3), dtype=np.uint8)
        with start_gateway(source, patch_size=64, patch_overlap=16, **flags) as gw, gw.channel() as channel:
            stub = pb_grpc.VirtualAutofocusStub(channel)
            precision = stub.GetInfo(pb.GetInfoRequest(), timeout=30).model_metadata.get("precision", "float32")
            fused = decode_image(stub.Fuse(pb.FuseRequest(tile_id="p", shot_a=encode_image(shot),
                                                          shot_b=encode_image(shot)), timeout=60).fused)
        return precision, fused, gw.logs()

    int8_precision, int8_tile, _ = served()
    float_precision, float_tile, _ = served(precision="float32")
    assert (int8_precision, float_precision) == ("int8", "float32")
    assert np.abs(int8_tile.astype(int) - float_tile).max() < 40  # the same network, other arithmetic
    _float_model(source, seed=1)  # retrained: the int8 form no longer belongs to it
    precision, _, log = served()
    assert precision == "float32" and "model.int8.onnx was quantised from another version of model.onnx" in log
