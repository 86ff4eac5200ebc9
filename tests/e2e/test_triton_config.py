"""The Triton model repository and the generated TensorRT-plan variant.

The official container (ONNX Runtime / TensorRT backends, GPUs) cannot run here, so its configs
are checked by a strict parse with Triton's own model_config protobuf (unknown or misspelt fields
fail) and by agreement with the shipped ONNX model; the GPU-free tritonserver tests
(test_triton_backend.py, test_triton_gateway.py) serve tsva_cpu's config for real."""
from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from tsva.export import tensorrt as trt

from tests.support.triton_config import parse

REPO = Path(__file__).resolve().parents[2] / "model_repository"

SHIPPED_ONNX = REPO / "tsva" / "1" / "model.onnx"


def test_variant_directory_without_trtexec(tmp_path):
    model_dir = trt.write_tensorrt_variant(SHIPPED_ONNX, tmp_path / "trt", run_trtexec=False)
    assert model_dir == tmp_path / "trt" / "tsva_trt"
    assert parse(model_dir / "config.pbtxt").platform == "tensorrt_plan"
    assert (model_dir / "build" / "model.onnx").read_bytes() == SHIPPED_ONNX.read_bytes()
    script = model_dir / "build" / "build_plan.sh"
    assert script.stat().st_mode & stat.S_IXUSR
    subprocess.run(["sh", "-n", str(script)], check=True)  # valid shell
    text = script.read_text()
    assert trt.DEFAULT_TRITON_IMAGE in text and "--saveEngine=/work/1/model.plan" in text
    assert not (model_dir / "1").exists()  # no empty version folder that would fail to load
