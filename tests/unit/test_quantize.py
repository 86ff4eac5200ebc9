"""int8 quantisation (tsva.export.quantize, `tsva quantize`): a tiny random TSVA network quantised
on a small calibration pool loads in ONNX Runtime, keeps the float32 contract and metadata, stays
close to its float model, and keeps the residual tail in float; the gateway serves an int8 model
over real gRPC."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from tsva.common.metadata import read_onnx_props
from tsva.export.onnx_export import onnx_session
from tsva.export.quantize import file_sha256, float_tail, max_abs_difference, quantize_model

from tests.support.quantize_models import REPO, _float_model, _pool

pytestmark = pytest.mark.usefixtures("torch_one_thread")


SHIPPED_FLOAT = REPO / "model_repository" / "tsva" / "1" / "model.onnx"


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quantize")
    source = _float_model(tmp / "float.onnx")
    added = quantize_model(source, tmp / "int8.onnx", _pool(), batch=4, calibration="test pool")
    return source, tmp / "int8.onnx", added


def test_int8_model_loads_runs_and_keeps_the_contract(quantized):
    source, int8, _ = quantized
    session = onnx_session(int8)
    assert [i.name for i in session.get_inputs()] == ["y1", "y2"] and session.get_outputs()[0].name == "x"
    assert all(i.type == "tensor(float)" for i in session.get_inputs())
    y = np.random.default_rng(1).random((2, 3, 48, 80), dtype=np.float32)  # another batch and size
    out = session.run(["x"], {"y1": y, "y2": y[:, :, ::-1].copy()})[0]
    assert out.shape == y.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_int8_output_stays_close_to_the_float_model(quantized):
    source, int8, _ = quantized
    worst, psnr = max_abs_difference(source, int8, _pool(4, 96), batch=2)  # pairs it was not calibrated on
    assert 0 < worst < 0.1 and psnr > 40, (worst, psnr)


def test_residual_tail_stays_float(quantized):
    """y1 reaches the `+ y1` unquantised, and the Add/Clip and the head conv have no QDQ."""
    _, int8, _ = quantized
    model = onnx.load(str(int8))
    (add,) = [n for n in model.graph.node if n.op_type == "Add"]
    assert "y1" in add.input
    producers = {o: n for n in model.graph.node for o in n.output}
    head = producers[next(i for i in add.input if i != "y1")]
    assert head.op_type == "Conv"
    weight = producers.get(head.input[1])
    assert weight is None or weight.op_type != "DequantizeLinear"
    (clip,) = [n for n in model.graph.node if n.op_type == "Clip"]
    assert clip.output == ["x"] and producers[clip.input[0]] is add


def test_the_full_resolution_convs_stay_float_and_the_rest_are_int8(quantized):
    """float_convs=2 (the default): the first two and the last two convolutions before the head
    read float weights, every other conv int8 weights through a DequantizeLinear."""
    _, int8, _ = quantized
    model = onnx.load(str(int8))
    producers = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    quantized_weight = [getattr(producers.get(c.input[1]), "op_type", None) == "DequantizeLinear" for c in convs]
    assert len(convs) > 6 and convs[-1].name in float_tail(model)  # the last conv is the head
    assert quantized_weight[:2] == [False, False] and quantized_weight[-3:] == [False, False, False]
    assert all(quantized_weight[2:-3])
    assert "first and last 2 convs" in read_onnx_props(int8)["quantization"]


def test_float_tail_names_the_head_conv():
    model = onnx.load(str(SHIPPED_FLOAT))
    ops = {n.name: n.op_type for n in model.graph.node}
    assert sorted(ops[name] for name in float_tail(model)) == ["Add", "Clip", "Conv"]


def test_metadata_is_carried_and_says_int8(quantized):
    source, int8, added = quantized
    before, after = read_onnx_props(source), read_onnx_props(int8)
    assert {k: after[k] for k in before} == before  # every key of the float model, unchanged
    assert after["precision"] == "int8" and added["precision"] == "int8"
    assert "per channel" in after["quantization"] and "8 simulated 64px pairs of test pool" in after["quantization"]
    assert after["quantization.source_sha256"] == file_sha256(source)
    assert not any(k.startswith("onnx.") for k in after)  # the tools' own bookkeeping is dropped


def test_an_int8_model_is_not_quantised_again(quantized, tmp_path):
    from tsva.export.errors import TsvaExportError

    with pytest.raises(TsvaExportError, match="already int8"):
        quantize_model(quantized[1], tmp_path / "again.onnx", _pool(2))


def test_quantize_command_bad_input_is_one_line(tmp_path, capsys):
    from tsva.common.cli import main

    assert main(["quantize", str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "o.onnx")]) == 2
    assert capsys.readouterr().err.strip() == f"tsva quantize: model {tmp_path / 'missing.onnx'}: no such file"
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    pool = tmp_path / "pool.npz"
    _pool(2).save(pool)
    assert main(["quantize", str(tmp_path / "junk.onnx"), "--pool", str(pool), "-o", str(tmp_path / "o.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tsva quantize: ") and "not a readable ONNX model" in err and err.count("\n") == 1
    assert not (tmp_path / "o.onnx").exists()
