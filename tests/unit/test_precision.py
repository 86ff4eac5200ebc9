"""Which file the embedded backend runs (tsva.server.backends.embedded.model_file): the int8 form
beside the model on the CPU when it was quantised from that very file, the float file otherwise."""
from __future__ import annotations

import shutil

import pytest
from tsva.common.precision import int8_sibling, matching_int8
from tsva.export.quantize import quantize_model
from tsva.server.backends.embedded import ModelLoadError, model_file

from tests.support.quantize_models import _float_model, _pool

pytestmark = pytest.mark.usefixtures("torch_one_thread")
CPU, GPU = ["CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.fixture(scope="module")
def model_and_int8(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("precision")
    model = _float_model(tmp / "model.onnx")
    quantize_model(model, int8_sibling(model), _pool(4), batch=4)
    return model, int8_sibling(model)


def test_the_sibling_is_named_after_the_model(tmp_path):
    assert int8_sibling(tmp_path / "model.onnx") == tmp_path / "model.int8.onnx"
    assert int8_sibling("a/tsva.v2.onnx").name == "tsva.v2.int8.onnx"


def test_auto_runs_the_int8_form_on_the_cpu_only(model_and_int8):
    model, int8 = model_and_int8
    assert model_file(model, "auto", CPU)[0] == int8
    assert model_file(model, "auto", GPU) == (model, "the int8 form is for CPUs")
    assert model_file(model, "float32", CPU)[0] == model
    assert model_file(model, "int8", GPU)[0] == int8


def test_a_stale_int8_form_is_not_used(model_and_int8, tmp_path):
    """A model.onnx replaced after quantising (another network): auto falls back to the float file
    and says why; --precision int8 refuses to start."""
    _, int8 = model_and_int8
    model = tmp_path / "model.onnx"
    shutil.copy(int8, tmp_path / "model.int8.onnx")
    model.write_bytes(b"another model")
    path, why = model_file(model, "auto", CPU)
    assert path == model and why == "model.int8.onnx was quantised from another version of model.onnx"
    with pytest.raises(ModelLoadError, match="--precision int8: .*model.onnx: model.int8.onnx was quantised from"):
        model_file(model, "int8", CPU)


def test_no_int8_form(tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"x")
    assert matching_int8(model) == (None, "no model.int8.onnx beside it")
    assert model_file(model, "auto", CPU) == (model, "no model.int8.onnx beside it")
    with pytest.raises(ModelLoadError, match="--precision int8: .*no model.int8.onnx beside it .tsva quantize"):
        model_file(model, "int8", CPU)
    with pytest.raises(ModelLoadError, match="--precision: 'int4'"):
        model_file(model, "int4", CPU)
