"""The Triton model repository and the generated TensorRT-plan variant.

The official container (ONNX Runtime / TensorRT backends, GPUs) cannot run here, so its configs
are checked by a strict parse with Triton's own model_config protobuf (unknown or misspelt fields
fail) and by agreement with the shipped ONNX model; the GPU-free tritonserver tests
(test_triton_backend.py, test_triton_gateway.py) serve tsva_cpu's config for real."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc
from tsva.common.precision import int8_sibling, matching_int8
from tsva.export import tensorrt as trt

from tests.support.triton_config import assert_bounded_queue, onnx_io, parse

REPO = Path(__file__).resolve().parents[2] / "model_repository"

SHIPPED_ONNX = REPO / "tsva" / "1" / "model.onnx"

FP32 = mc.DataType.Value("TYPE_FP32")


def patch_size() -> int:
    """The gateway's patch size for the float32 models (its CPU plan; `--patch-size auto`):
    warm-up and TensorRT profiles must match what it sends (the model's own `patch_size` metadata
    is the size it was trained on, which may be smaller)."""
    from tsva.server.config import CPU_PATCH_SIZE
    return CPU_PATCH_SIZE


def profile(value: str) -> dict[str, list[int]]:
    """`y1:1x3x64x64,y2:...` -> {"y1": [1, 3, 64, 64], ...}"""
    out = {}
    for item in value.split(","):
        name, dims = item.split(":")
        out[name] = [int(d) for d in dims.split("x")]
    return out


def assert_agrees_with_onnx(config: mc.ModelConfig, onnx_path: Path) -> None:
    io = onnx_io(onnx_path)
    declared = list(config.input) + list(config.output)
    assert {t.name for t in config.input} == {"y1", "y2"} and [t.name for t in config.output] == ["x"]
    assert {t.name for t in declared} == set(io), "config and ONNX model name different tensors"
    for tensor in declared:
        elem_type, dims = io[tensor.name]
        assert tensor.data_type == FP32 and elem_type == onnx.TensorProto.FLOAT, tensor.name
        # max_batch_size > 0: Triton's dims leave out the batch axis, which ONNX keeps dynamic.
        assert config.max_batch_size > 0 and dims[0] is None, tensor.name
        assert len(tensor.dims) == len(dims) - 1, tensor.name
        for ours, theirs in zip(tensor.dims, dims[1:]):
            assert ours == (theirs if theirs is not None else -1), (tensor.name, list(tensor.dims), dims)


def assert_warmup_at_patch_size(config: mc.ModelConfig) -> None:
    assert config.model_warmup, "no warm-up: the first tile would pay for session/engine set-up"
    for warmup in config.model_warmup:
        assert 1 <= warmup.batch_size <= config.max_batch_size
        assert set(warmup.inputs) == {"y1", "y2"}
        for tensor in warmup.inputs.values():
            assert list(tensor.dims) == [3, patch_size(), patch_size()] and tensor.data_type == FP32


def test_every_model_directory_is_loadable_as_is():
    """Triton exits at start-up when a model of the repository fails to load: every directory must
    be a complete model (config named like it, a version folder with its model file)."""
    models = sorted(p for p in REPO.iterdir() if p.is_dir())
    assert [m.name for m in models] == ["tsva", "tsva_cpu"]
    for model_dir in models:
        config = parse(model_dir / "config.pbtxt")
        assert config.name == model_dir.name
        assert config.platform == "onnxruntime_onnx"
        assert (model_dir / "1" / "model.onnx").is_file(), model_dir


def test_one_copy_of_the_onnx_file():
    link = REPO / "tsva_cpu" / "1" / "model.onnx"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link)), "must be a relative link"
    assert link.resolve() == SHIPPED_ONNX.resolve()
    real = sorted(p for p in REPO.rglob("*.onnx") if not p.is_symlink())
    assert real == sorted([SHIPPED_ONNX, int8_sibling(SHIPPED_ONNX)])


def test_the_shipped_int8_form_belongs_to_the_shipped_model():
    """Re-exporting model.onnx without `tsva quantize` would leave a stale int8 form, which the
    gateway would then not use on CPUs: the two ship together."""
    assert matching_int8(SHIPPED_ONNX) == (int8_sibling(SHIPPED_ONNX), "")


def test_gpu_config():
    config = parse(REPO / "tsva" / "config.pbtxt")
    assert_agrees_with_onnx(config, SHIPPED_ONNX)
    assert_warmup_at_patch_size(config)
    assert_bounded_queue(config)
    assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    params = dict(accelerator.parameters)
    assert accelerator.name == "tensorrt"
    assert params["precision_mode"] == "FP16"
    assert int(params["max_workspace_size_bytes"]) >= 1 << 30
    assert params["trt_engine_cache_enable"] == "1" and params["trt_engine_cache_path"].startswith("/")
    shapes = {which: profile(params[f"trt_profile_{which}_shapes"]) for which in ("min", "opt", "max")}
    for which, by_input in shapes.items():
        assert set(by_input) == {"y1", "y2"} and by_input["y1"] == by_input["y2"], which
    lo, opt, hi = shapes["min"]["y1"], shapes["opt"]["y1"], shapes["max"]["y1"]
    # The engine's profile covers every batch Triton can form and the warm-up's patch size.
    assert lo[0] == 1 and lo[0] <= opt[0] <= hi[0] == config.max_batch_size
    assert lo[2] <= patch_size() <= hi[2] and opt[2:] == [patch_size(), patch_size()]
    assert all(d % 16 == 0 for d in lo[2:] + hi[2:])


def test_cpu_config_serves_the_same_contract():
    gpu, cpu = parse(REPO / "tsva" / "config.pbtxt"), parse(REPO / "tsva_cpu" / "config.pbtxt")
    assert_agrees_with_onnx(cpu, REPO / "tsva_cpu" / "1" / "model.onnx")
    assert_warmup_at_patch_size(cpu)
    assert_bounded_queue(cpu)
    assert [g.kind for g in cpu.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
    assert not cpu.optimization.execution_accelerators.gpu_execution_accelerator
    assert list(cpu.input) == list(gpu.input) and list(cpu.output) == list(gpu.output)


def test_tensorrt_config_parses_and_agrees_with_onnx():
    profile_ = trt.ShapeProfile(min_batch=1, opt_batch=16, max_batch=48)
    config = text_format.Parse(trt.tensorrt_config("tsva_trt", profile_), mc.ModelConfig())
    assert config.platform == "tensorrt_plan" and config.name == "tsva_trt"
    assert config.max_batch_size == 48  # must equal the plan's max batch, or Triton refuses it
    assert_agrees_with_onnx(config, SHIPPED_ONNX)
    assert_warmup_at_patch_size(config)
    assert_bounded_queue(config)
    assert [w.batch_size for w in config.model_warmup] == [1, 48]
    assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]


def test_trtexec_command_has_the_shape_profiles():
    command = trt.trtexec_command("in.onnx", "out.plan", trt.ShapeProfile(opt_batch=8, max_batch=128,
                                                                           min_side=192, max_side=256))
    args = dict(a.split("=", 1) for a in command[1:] if "=" in a)
    assert command[0] == "trtexec" and "--fp16" in command
    assert args["--onnx"] == "in.onnx" and args["--saveEngine"] == "out.plan"
    assert profile(args["--minShapes"]) == {"y1": [1, 3, 192, 192], "y2": [1, 3, 192, 192]}
    assert profile(args["--optShapes"]) == {"y1": [8, 3, 224, 224], "y2": [8, 3, 224, 224]}
    assert profile(args["--maxShapes"]) == {"y1": [128, 3, 256, 256], "y2": [128, 3, 256, 256]}
    assert "--fp16" not in trt.trtexec_command("a", "b", fp16=False)


@pytest.mark.parametrize("kwargs, message", [
    (dict(min_batch=4, opt_batch=2), "batch profile"),
    (dict(max_side=200), "side profile|multiple of 16"),
    (dict(min_side=8, opt_side=16, max_side=16), "side profile"),
])
def test_bad_profiles_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        trt.ShapeProfile(**kwargs)


def test_variant_refuses_a_file_as_output(tmp_path):
    # `tsva export`'s default -o is the shipped model.onnx: it must not be overwritten.
    with pytest.raises(trt.TensorRTBuildError, match="model directory"):
        trt.write_tensorrt_variant(SHIPPED_ONNX, tmp_path / "model.onnx", run_trtexec=False)


def test_asking_for_trtexec_where_there_is_none(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no trtexec on PATH
    if Path(trt.TRTEXEC_IN_CONTAINER).exists():
        pytest.skip("inside a TensorRT container")
    with pytest.raises(trt.TensorRTBuildError, match="trtexec not found"):
        trt.write_tensorrt_variant(SHIPPED_ONNX, tmp_path / "out", run_trtexec=True)


def test_variant_runs_trtexec_when_present(tmp_path, monkeypatch):
    """trtexec (TensorRT, GPU) cannot run here: a stand-in script on PATH records its arguments and
    writes the plan file, to check that the builder calls it with the profile and paths."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "trtexec"
    fake.write_text(f"#!{sys.executable}\n"
                    "import sys, pathlib\n"
                    "args = dict(a.split('=', 1) for a in sys.argv[1:] if '=' in a)\n"
                    "pathlib.Path(args['--saveEngine']).write_text(' '.join(sys.argv[1:]))\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    model_dir = trt.build_plan(SHIPPED_ONNX, tmp_path / "out")
    recorded = (model_dir / "1" / "model.plan").read_text()
    assert f"--onnx={model_dir / 'build' / 'model.onnx'}" in recorded
    assert "--maxShapes=y1:64x3x224x224,y2:64x3x224x224" in recorded and "--fp16" in recorded
