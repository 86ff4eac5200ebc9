"""Small ONNX models with the float32 contract (inputs y1, y2, output x, NCHW, dynamic N/H/W),
built with onnx.helper: a pointwise "tiny" model and a random-weight U-Net."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tsva.common.metadata import ModelMetadata, OpticsMetadata


def _contract_io(channels: int | None = 3):
    from onnx import TensorProto, helper

    shape = ["batch", channels, "height", "width"]
    return ([helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name in ("y1", "y2")],
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)])


def _save(graph, path: Path, metadata: dict[str, str] | None) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every ONNX Runtime in use here
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


# The metadata_props of the tiny test model: its optics and one key the product does not know.
TINY_METADATA = ModelMetadata(
    model_name="tiny", model_version="7",
    optics=OpticsMetadata(numerical_aperture=0.75, refractive_index=1.0, pixel_size_um=0.25,
                          wavelengths_um=(0.61, 0.53, 0.47), defocus_um=(0.5, 1.0, 1.5), focus_sigma_um=1.0),
    extra={"note": "test model"},
).to_props()


def make_tiny_onnx(path, *, w1: float = 0.75, w2: float = 0.25, bias: float = 0.0,
                   fail_on_white: bool = False, metadata: dict[str, str] | None = None) -> Path:
    """x = clip(w1*y1 + w2*y2 + bias, 0, 1): pointwise, so patch-wise and whole-tile results agree
    exactly, and an asymmetric w1/w2 shows which shot the gateway fed as Y1.

    fail_on_white: fault injection for backend-failure tests (a real ONNX Runtime error, not a mock):
    the model reshapes to an impossible shape whenever max(y1) > 0.999, so a white tile makes
    session.run fail while darker inputs (and readiness probes with zeros) succeed.
    """
    from onnx import TensorProto, helper

    inputs, outputs = _contract_io(channels=None)
    const = lambda name, value, dtype=TensorProto.FLOAT: helper.make_tensor(name, dtype, [], [value])  # noqa: E731
    nodes = [
        helper.make_node("Mul", ["y1", "w1"], ["a"]),
        helper.make_node("Mul", ["y2", "w2"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["s"]),
        helper.make_node("Add", ["s", "bias"], ["t"]),
        helper.make_node("Clip", ["t", "lo", "hi"], ["x" if not fail_on_white else "clipped"]),
    ]
    inits = [const("w1", w1), const("w2", w2), const("bias", bias), const("lo", 0.0), const("hi", 1.0)]
    if fail_on_white:
        # D = 1 normally; D = 1000003 (a prime no tensor size here is divisible by) on white input.
        nodes += [
            helper.make_node("ReduceMax", ["y1"], ["m"], keepdims=0),
            helper.make_node("Greater", ["m", "threshold"], ["white"]),
            helper.make_node("Cast", ["white"], ["white_i"], to=TensorProto.INT64),
            helper.make_node("Mul", ["white_i", "prime"], ["extra"]),
            helper.make_node("Add", ["extra", "one"], ["d"]),
            helper.make_node("Unsqueeze", ["d", "axis0"], ["d_1d"]),
            helper.make_node("Concat", ["minus_one", "d_1d"], ["flat_shape"], axis=0),
            helper.make_node("Reshape", ["clipped", "flat_shape"], ["flat"]),
            helper.make_node("Shape", ["clipped"], ["shape"]),
            helper.make_node("Reshape", ["flat", "shape"], ["x"]),
        ]
        inits += [const("threshold", 0.999), const("prime", 1000002, TensorProto.INT64),
                  const("one", 1, TensorProto.INT64),
                  helper.make_tensor("minus_one", TensorProto.INT64, [1], [-1]),
                  helper.make_tensor("axis0", TensorProto.INT64, [1], [0])]
    graph = helper.make_graph(nodes, "tiny_tsva", inputs, outputs, initializer=inits)
    return _save(graph, path, TINY_METADATA if metadata is None else metadata)


def make_unet_onnx(path, *, seed: int = 0, width: int = 16, depth: int = 3, channels: int = 3,
                   residual_scale: float = 0.2, metadata: dict[str, str] | None = None) -> Path:
    """A random-weight U-Net-like model (two 3x3 convs per level, stride-2 downsampling, nearest
    upsampling, skip concatenation, residual on Y1), zero-padded like a real network: its receptive
    field (about 200 pixels at the default depth 3 and base width 16, the shipped model's) is what
    makes patch borders differ from the whole tile. H and W must be multiples of 2**depth.
    """
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    inputs, outputs = _contract_io(channels)
    nodes, inits = [], []
    counter = iter(range(10_000))

    def conv(x, c_in, c_out, k=3, stride=1, relu=True, scale=1.0):
        i = next(counter)
        w = rng.normal(0, scale * np.sqrt(2.0 / (c_in * k * k)), (c_out, c_in, k, k)).astype(np.float32)
        b = rng.normal(0, 0.01, c_out).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")])
        out = f"c{i}"
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [out], kernel_shape=[k, k],
                                      pads=[k // 2] * 4, strides=[stride, stride]))
        if relu:
            nodes.append(helper.make_node("Relu", [out], [out + "r"]))
            out += "r"
        return out

    nodes.append(helper.make_node("Concat", ["y1", "y2"], ["yy"], axis=1))
    x, c, skips = "yy", 2 * channels, []
    for level in range(depth):
        c_out = width * 2 ** level
        x = conv(conv(x, c, c_out), c_out, c_out)
        skips.append((x, c_out))
        x, c = conv(x, c_out, c_out, stride=2), c_out
    x = conv(conv(x, c, 2 * c), 2 * c, 2 * c)
    c = 2 * c
    inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
    for level in reversed(range(depth)):
        i = next(counter)
        nodes.append(helper.make_node("Resize", [x, "", "scales"], [f"up{i}"], mode="nearest"))
        skip, c_skip = skips[level]
        nodes.append(helper.make_node("Concat", [f"up{i}", skip], [f"cat{i}"], axis=1))
        x = conv(conv(f"cat{i}", c + c_skip, c_skip), c_skip, c_skip)
        c = c_skip
    r = conv(x, c, channels, k=1, relu=False, scale=residual_scale)
    nodes.append(helper.make_node("Add", ["y1", r], ["x"]))
    graph = helper.make_graph(nodes, "random_unet", inputs, outputs, initializer=inits)
    return _save(graph, path, {"model_name": "random-unet", "model_version": str(seed)}
                 if metadata is None else metadata)
