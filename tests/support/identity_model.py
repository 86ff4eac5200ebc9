"""An identity ONNX model (x = y1): inference costs nothing, so what a test or benchmark measures
through it is the gateway and the transport, not the network."""
from __future__ import annotations

from pathlib import Path


def make_identity_onnx(path, io: str = "float32") -> Path:
    """io float32: y1, y2 float32 [N, 3, H, W] -> x = y1 (the float32 contract); io uint8/uint16:
    [N, H, W, 3] pixels (the pixel-typed contract; io.size_multiple 1, as an export that pads in
    its graph). y2 is read by nothing."""
    import onnx
    from onnx import TensorProto, helper

    elem = {"float32": TensorProto.FLOAT, "uint8": TensorProto.UINT8, "uint16": TensorProto.UINT16}[io]
    shape = ["batch", 3, "height", "width"] if io == "float32" else ["batch", "height", "width", 3]
    inputs = [helper.make_tensor_value_info(name, elem, shape) for name in ("y1", "y2")]
    output = helper.make_tensor_value_info("x", elem, shape)
    graph = helper.make_graph([helper.make_node("Identity", ["y1"], ["x"])], f"identity_{io}", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    metadata = {"model_name": f"identity_{io}", "model_version": "1"}
    if io != "float32":
        metadata["io.size_multiple"] = "1"
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
