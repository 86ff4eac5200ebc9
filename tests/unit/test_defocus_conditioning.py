"""A defocus-conditioned model's `dd` input: the model contract reads it, and the pixel-typed
Triton model directory of such a model declares it (config input, warm-up, TensorRT profiles).
Through a real gateway and a real tritonserver: tests/e2e/test_defocus_conditioning.py."""
from __future__ import annotations

import pytest
from tsva.common.contract import ContractError, contract_from_io


def test_contract_reads_the_optional_defocus_input():
    io = {"y1": ("tensor(float)", [3, None, None]), "y2": ("tensor(float)", [3, None, None])}
    out = {"x": ("tensor(float)", [3, None, None])}
    assert contract_from_io(io, out).defocus_input is None
    assert contract_from_io({**io, "dd": ("tensor(float)", [1])}, out).defocus_input == "dd"
    with pytest.raises(ContractError, match="dd must be float32"):
        contract_from_io({**io, "dd": ("tensor(uint8)", [1])}, out)


def test_a_conditioned_models_triton_directory_declares_dd(tmp_path):
    import onnx
    import torch
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc
    from tsva.export.metadata import model_metadata
    from tsva.export.network import NetworkConfig, build_network
    from tsva.export.onnx_export import export_onnx
    from tsva.export.optics import Optics
    from tsva.export.pixel_io import write_triton_variant

    torch.manual_seed(0)
    net = build_network(NetworkConfig(base_width=4, depth=2, condition="defocus")).eval()
    source = tmp_path / "cond.onnx"
    export_onnx(net, source, model_metadata(net.config, Optics(), patch_size=64, training_data="test",
                                            training_command="test", evaluation_summary="none"))
    model_dir = write_triton_variant(source, tmp_path / "repo", "uint8")
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), mc.ModelConfig())
    (dd,) = [t for t in config.input if t.name == "dd"]
    assert dd.data_type == mc.TYPE_FP32 and list(dd.dims) == [1]
    assert [t.name for t in config.input] == ["y1", "y2", "dd"]
    assert all("dd" in warmup.inputs for warmup in config.model_warmup)
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    profiles = [dict(accelerator.parameters)[f"trt_profile_{w}_shapes"] for w in ("min", "opt", "max")]
    assert all(f"dd:{batch}x1" in p for p, batch in zip(profiles, (1, 4, 8)))
    assert "dd" in [i.name for i in onnx.load(str(model_dir / "1" / "model.onnx")).graph.input]
