"""ONNX export: the gateway's contract (names, dtype, dynamic axes, opset), metadata, parity with
PyTorch at two input sizes, the fp16 variant, and `tsva export` end to end."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from tsva.common.metadata import read_onnx_props
from tsva.export.metadata import model_metadata
from tsva.export.onnx_export import PARITY_TOLERANCE, check_parity, export_onnx, onnx_session
from tsva.export.optics import Optics, Sample

from tests.support.networks import _trained_looking

pytestmark = pytest.mark.usefixtures("torch_one_thread")

REQUIRED_KEYS = {"optics.numerical_aperture", "optics.refractive_index", "optics.pixel_size_um",
                 "optics.wavelengths_um", "optics.defocus_um", "optics.focus_sigma_um",
                 "sample.thickness_um", "sample.layers", "patch_size",
                 "base_width", "depth", "training_data", "training_command", "evaluation_summary",
                 "model_name", "model_version"}


def _metadata(net):
    return model_metadata(net.config, Optics(), patch_size=96, training_data="test textures",
                          training_command="tsva train --test", evaluation_summary="not evaluated",
                          sample=Sample(thickness_um=4.0, layers=5))


@pytest.mark.parametrize("arch", ["tsva", "unet"])
def test_export_follows_the_contract_and_matches_pytorch(tmp_path, arch):
    net = _trained_looking(arch)
    path = export_onnx(net, tmp_path / "model.onnx", _metadata(net))
    model = onnx.load(str(path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in model.graph.input] == ["y1", "y2"]
    assert [o.name for o in model.graph.output] == ["x"]
    for value in (*model.graph.input, *model.graph.output):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        dims = value.type.tensor_type.shape.dim
        assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    # Parity at two sizes (batch, H, W), as the export command checks.
    diff = check_parity(net, path, sizes=((1, 32, 48), (3, 64, 32)))
    assert diff <= PARITY_TOLERANCE
    out = onnx_session(path).run(["x"], {"y1": np.ones((1, 3, 16, 16), np.float32) * 2,
                                        "y2": np.zeros((1, 3, 16, 16), np.float32)})[0]
    assert out.max() <= 1.0  # clamped to the contract's range


def test_metadata_has_every_key_the_gateway_reads(tmp_path):
    net = _trained_looking()
    meta = read_onnx_props(export_onnx(net, tmp_path / "m.onnx", _metadata(net)))
    assert REQUIRED_KEYS <= set(meta)
    assert meta["model_name"] == "tsva"
    assert meta["optics.wavelengths_um"] == "0.61,0.53,0.47"
    assert meta["optics.defocus_um"] == "0.5,1,1.5,2,2.5,3"
    assert meta["base_width"] == "4" and meta["depth"] == "2" and meta["patch_size"] == "96"
    assert meta["sample.thickness_um"] == "4" and meta["sample.layers"] == "5"


def test_fp16_variant_keeps_float32_io_and_is_close(tmp_path):
    net = _trained_looking()
    fp32 = export_onnx(net, tmp_path / "a.onnx", _metadata(net))
    fp16 = export_onnx(net, tmp_path / "b.onnx", _metadata(net), fp16=True)
    y = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    a = onnx_session(fp32).run(["x"], {"y1": y, "y2": y[:, ::-1].copy()})[0]
    b = onnx_session(fp16).run(["x"], {"y1": y, "y2": y[:, ::-1].copy()})[0]
    assert b.dtype == np.float32 and np.abs(a - b).max() < 5e-3
    assert fp16.stat().st_size < 0.7 * fp32.stat().st_size


def test_export_of_a_foreign_file_is_one_clear_line(tmp_path, capsys):
    from tsva.common.cli import main
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    assert main(["export", str(tmp_path / "x.pt"), "-o", str(tmp_path / "o.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tsva export: checkpoint") and "not a readable" in err[0]
    assert not (tmp_path / "o.onnx").exists()
