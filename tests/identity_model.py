"""An identity ONNX model with the float32 contract (x = y1): inference costs nothing, so what a
test or benchmark measures through it is the gateway and the transport, not the network."""
from __future__ import annotations

from pathlib import Path


def make_identity_onnx(path) -> Path:
    """y1, y2 float32 [N, 3, H, W] -> x = y1 (y2 is read by nothing, as in a model that ignores it)."""
    import onnx
    from onnx import TensorProto, helper

    shape = ["batch", 3, "height", "width"]
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name in ("y1", "y2")]
    output = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    graph = helper.make_graph([helper.make_node("Identity", ["y1"], ["x"])], "identity", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in {"model_name": "identity", "model_version": "1"}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
