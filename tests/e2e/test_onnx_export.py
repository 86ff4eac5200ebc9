"""ONNX export: the gateway's contract (names, dtype, dynamic axes, opset), metadata, parity with
PyTorch at two input sizes, the fp16 variant, and `tsva export` end to end."""
from __future__ import annotations

import subprocess
import sys

import pytest
from tsva.common.metadata import read_onnx_props
from tsva.export.checkpoint import save_checkpoint
from tsva.export.optics import Optics

from tests.support.networks import _trained_looking

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.mark.slow
def test_export_command_end_to_end(tmp_path):
    """The real `tsva export` in a subprocess: writes the model, checks parity, reports it."""
    net = _trained_looking()
    save_checkpoint(tmp_path / "best.pt", net, net.config, optics=Optics().to_dict(), train={"patch_size": 96},
                    training_data="tiny", training_command="tsva train --tiny")
    (tmp_path / "evaluation.json").write_text('{"summary": "TSVA 40 dB everywhere (test)"}')
    done = subprocess.run([sys.executable, "-m", "tsva.common.cli", "export", str(tmp_path / "best.pt"),
                           "-o", str(tmp_path / "out.onnx"), "--evaluation", str(tmp_path / "evaluation.json"),
                           "--fp16", str(tmp_path / "out_fp16.onnx"), "--model-version", "7"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "parity ONNX Runtime vs PyTorch: max abs diff" in done.stdout
    meta = read_onnx_props(tmp_path / "out.onnx")
    assert meta["evaluation_summary"] == "TSVA 40 dB everywhere (test)"
    assert meta["training_command"] == "tsva train --tiny" and meta["model_version"] == "7"
    assert (tmp_path / "out_fp16.onnx").is_file()
