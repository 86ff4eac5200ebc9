"""Pixel-typed model I/O: `tsva export --io uint8|uint16`.

Wraps a float32-contract ONNX model (y1, y2 -> x, float32 NCHW in [0, 1]) into one that takes
the shots as the scanner delivers them, uint8 or uint16 NHWC [N, H, W, 3], and returns the
fused tile the same way. The wrapper's nodes run on the serving device with the network:

    y (uintK NHWC, any H x W >= 16) -> mirror-pad H, W to multiples of 16 -> Transpose to NCHW
      -> Cast float32 -> Mul 1/max -> network
    network -> crop to H x W -> Clip [0, 1] -> Mul max -> Round (half to even) -> Cast uintK
      -> Transpose to NHWC -> x

These are the very operations the gateway does on the float32 path (symmetric padding at the
bottom/right, the same float32 scale constant, np.rint's rounding), so the fused pixels agree
with it; and the gateway sends a tile's pixels as they arrived, unpadded (metadata
io.size_multiple = 1, io.min_size = 16: only smaller tiles are padded by the gateway). Between gateway and backend a
pixel then costs 3 + 3 bytes in and 3 out (uint8) instead of 12 + 12 and 12.

Also writes the Triton model directory of such a model (`pixel_triton_config`): ONNX Runtime
with TensorRT on GPU, profiles sized for whole tiles, as the gateway sends them to a GPU.
"""
from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tsva.common.contract import INPUT_DD, INPUT_Y1, INPUT_Y2, OUTPUT_X
from tsva.common.metadata import ModelMetadata, PixelIOMetadata

INPUTS = (INPUT_Y1, INPUT_Y2)
OUTPUT = OUTPUT_X
CHANNELS = 3
SIZE_MULTIPLE = 16  # the network's total stride: the graph pads to it (mirror) and crops back
IO_TYPES = {"uint8": TensorProto.UINT8, "uint16": TensorProto.UINT16}
_TRITON_TYPES = {"uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16"}


class PixelIOError(ValueError):
    """The model cannot be wrapped (it does not follow the float32 contract)."""


def _check_float_contract(graph: onnx.GraphProto) -> None:
    found = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output]}
    wanted = {name: TensorProto.FLOAT for name in (*INPUTS, OUTPUT)}
    if {k: found.get(k) for k in wanted} != wanted:
        raise PixelIOError(f"not a float32-contract model: tensors {sorted(found)} (element types "
                           f"{found}); expected float32 {', '.join(INPUTS)} -> {OUTPUT}")


def wrap_pixel_io(model: onnx.ModelProto, io: str) -> onnx.ModelProto:
    """A copy of `model` (float32 contract) with uint8 or uint16 NHWC inputs and output."""
    if io not in IO_TYPES:
        raise PixelIOError(f"--io: {io!r}, expected one of {', '.join(IO_TYPES)}")
    model = copy.deepcopy(model)
    graph = model.graph
    _check_float_contract(graph)
    elem = IO_TYPES[io]
    inner = {name: f"{name}_f32" for name in (*INPUTS, OUTPUT)}
    # The network's own tensors are renamed; the new y1, y2 and x are the wrapper's.
    for node in graph.node:
        node.input[:] = [inner.get(n, n) for n in node.input]
        node.output[:] = [inner.get(n, n) for n in node.output]
    peak = float(np.iinfo(np.dtype(io)).max)
    graph.initializer.extend([
        numpy_helper.from_array(np.array(np.float32(1.0 / peak)), "tsva_io_scale"),
        numpy_helper.from_array(np.array(np.float32(peak)), "tsva_io_peak"),
        numpy_helper.from_array(np.array(np.float32(0.0)), "tsva_io_zero"),
        numpy_helper.from_array(np.array(np.float32(1.0)), "tsva_io_one"),
    ])
    graph.initializer.extend([
        numpy_helper.from_array(np.array([1], np.int64), "tsva_io_axis_h"),
        numpy_helper.from_array(np.array([2], np.int64), "tsva_io_axis_w"),
        numpy_helper.from_array(np.array([SIZE_MULTIPLE], np.int64), "tsva_io_multiple"),
        numpy_helper.from_array(np.array([-1], np.int64), "tsva_io_minus_one"),
        numpy_helper.from_array(np.array([0, 0], np.int64), "tsva_io_origin"),
        numpy_helper.from_array(np.array([2, 3], np.int64), "tsva_io_axes_hw"),
    ])
    pre = [helper.make_node("Shape", [INPUTS[0]], ["tsva_io_shape"], name="tsva_io_shape")]
    for axis in ("h", "w"):
        # pad = (16 - side % 16) % 16; the slice end -1 - pad takes the last `pad` rows reversed.
        pre += [
            helper.make_node("Gather", ["tsva_io_shape", f"tsva_io_axis_{axis}"], [f"tsva_io_{axis}"], axis=0,
                             name=f"tsva_io_{axis}"),
            helper.make_node("Mod", [f"tsva_io_{axis}", "tsva_io_multiple"], [f"tsva_io_{axis}_rem"],
                             name=f"tsva_io_{axis}_rem"),
            helper.make_node("Sub", ["tsva_io_multiple", f"tsva_io_{axis}_rem"], [f"tsva_io_{axis}_gap"],
                             name=f"tsva_io_{axis}_gap"),
            helper.make_node("Mod", [f"tsva_io_{axis}_gap", "tsva_io_multiple"], [f"tsva_io_{axis}_pad"],
                             name=f"tsva_io_{axis}_pad"),
            helper.make_node("Sub", ["tsva_io_minus_one", f"tsva_io_{axis}_pad"], [f"tsva_io_{axis}_end"],
                             name=f"tsva_io_{axis}_end"),
        ]
    for name in INPUTS:
        padded = name
        for axis in ("h", "w"):  # symmetric padding at the bottom, then at the right, as the gateway pads
            pre += [
                helper.make_node("Slice", [padded, "tsva_io_minus_one", f"tsva_io_{axis}_end", f"tsva_io_axis_{axis}",
                                           "tsva_io_minus_one"], [f"{name}_mirror_{axis}"],
                                 name=f"tsva_io_{name}_mirror_{axis}"),
                helper.make_node("Concat", [padded, f"{name}_mirror_{axis}"], [f"{name}_pad_{axis}"],
                                 axis=1 if axis == "h" else 2, name=f"tsva_io_{name}_pad_{axis}"),
            ]
            padded = f"{name}_pad_{axis}"
        pre += [
            helper.make_node("Transpose", [padded], [f"{name}_nchw"], perm=[0, 3, 1, 2], name=f"tsva_io_{name}_nchw"),
            helper.make_node("Cast", [f"{name}_nchw"], [f"{name}_cast"], to=TensorProto.FLOAT, name=f"tsva_io_{name}_cast"),
            helper.make_node("Mul", [f"{name}_cast", "tsva_io_scale"], [inner[name]], name=f"tsva_io_{name}_scale"),
        ]
    post = [
        helper.make_node("Concat", ["tsva_io_h", "tsva_io_w"], ["tsva_io_hw"], axis=0, name="tsva_io_hw"),
        helper.make_node("Slice", [inner[OUTPUT], "tsva_io_origin", "tsva_io_hw", "tsva_io_axes_hw"], ["x_crop"],
                         name="tsva_io_crop"),
        helper.make_node("Clip", ["x_crop", "tsva_io_zero", "tsva_io_one"], ["x_clip"], name="tsva_io_clip"),
        helper.make_node("Mul", ["x_clip", "tsva_io_peak"], ["x_peak"], name="tsva_io_peak"),
        helper.make_node("Round", ["x_peak"], ["x_round"], name="tsva_io_round"),
        helper.make_node("Cast", ["x_round"], ["x_nchw"], to=elem, name="tsva_io_cast"),
        helper.make_node("Transpose", ["x_nchw"], [OUTPUT], perm=[0, 2, 3, 1], name="tsva_io_x_nhwc"),
    ]
    nodes = pre + list(graph.node) + post
    del graph.node[:]
    graph.node.extend(nodes)
    shape = ["batch", "height", "width", CHANNELS]
    new_inputs = [helper.make_tensor_value_info(name, elem, shape) for name in INPUTS]
    others = [i for i in graph.input if i.name not in INPUTS]
    del graph.input[:]
    graph.input.extend(new_inputs + others)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT, elem, shape))
    # The gateway sends whole tiles as they are (the graph pads them); only smaller ones are padded.
    metadata = ModelMetadata.from_props({p.key: p.value for p in model.metadata_props})
    metadata = replace(metadata, io=PixelIOMetadata(contract=f"{io}-nhwc", size_multiple=1, min_size=SIZE_MULTIPLE))
    del model.metadata_props[:]
    for key, value in metadata.to_props().items():
        model.metadata_props.add(key=key, value=value)
    if not any(o.domain in ("", "ai.onnx") and o.version >= 13 for o in model.opset_import):
        raise PixelIOError("the model's opset is below 13 (Clip with bounds as inputs, Round)")
    onnx.checker.check_model(model)
    return model


def write_pixel_model(source: str | Path, output: str | Path, io: str) -> Path:
    """Reads the float32-contract ONNX file `source`, writes its pixel-typed form to `output`."""
    _write_pixel_model(source, output, io)
    return Path(output)


def _write_pixel_model(source: str | Path, output: str | Path, io: str) -> onnx.ModelProto:
    """write_pixel_model, returning the model it wrote."""
    output = Path(output)
    if Path(source).resolve() == output.resolve():
        raise PixelIOError(f"-o {output}: would overwrite the float32 model it is made from")
    if not Path(source).is_file():
        raise PixelIOError(f"{source}: no such ONNX file")
    try:
        model = onnx.load(str(source))
    except Exception as exc:  # a corrupt or foreign file
        raise PixelIOError(f"{source}: cannot read it as ONNX ({type(exc).__name__}: {exc})") from None
    output.parent.mkdir(parents=True, exist_ok=True)
    wrapped = wrap_pixel_io(model, io)
    onnx.save(wrapped, str(output))
    return wrapped


def pixel_triton_config(model_name: str, io: str, *, max_batch_size: int = 8, instances: int = 2,
                        opt_tile: tuple[int, int] = (1024, 1232), max_side: int = 2048,
                        gpu: bool = True, defocus: bool = False) -> str:
    """config.pbtxt of a pixel-typed model: ONNX Runtime (+ TensorRT FP16 on GPU), batches of
    whole tiles (the gateway's plan for GPUs), a bounded queue, a warm-up at the opt tile size.
    opt_tile is (height, width) padded to multiples of 16 (1224 x 1024 tiles -> 1024 x 1232).
    defocus: the model is conditioned on dD, a third input `dd` (float32, one value per item)."""
    if io not in _TRITON_TYPES:
        raise PixelIOError(f"--io: {io!r}, expected one of {', '.join(_TRITON_TYPES)}")
    if any(s % 16 for s in (*opt_tile, max_side)) or max(opt_tile) > max_side:
        raise PixelIOError(f"tile profile {opt_tile} / max {max_side}: multiples of 16, opt <= max")
    dtype = _TRITON_TYPES[io]
    tensor = lambda name: f'  {{ name: "{name}", data_type: {dtype}, dims: [ -1, -1, {CHANNELS} ] }}'  # noqa: E731
    h, w = opt_tile
    shapes = lambda b, hh, ww: ",".join([f"{n}:{b}x{hh}x{ww}x{CHANNELS}" for n in INPUTS]  # noqa: E731
                                        + ([f"{INPUT_DD}:{b}x1"] if defocus else []))
    dd_tensor = f'  {{ name: "{INPUT_DD}", data_type: TYPE_FP32, dims: [ 1 ] }}'
    inputs = [tensor(INPUTS[0]), tensor(INPUTS[1])] + ([dd_tensor] if defocus else [])
    lines = [
        f"# Generated by `tsva export --io {io} --triton-dir` (tsva.export.pixel_io): the shots as",
        f"# {io} NHWC [N, H, W, 3] in, the fused tile as {io} NHWC out; casts inside the graph.",
        f'name: "{model_name}"',
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {max_batch_size}",
        "version_policy: { latest: { num_versions: 1 } }",
        "input [", ",\n".join(inputs), "]",
        "output [", tensor(OUTPUT), "]",
        "dynamic_batching {",
        "  max_queue_delay_microseconds: 2000",
        "  default_queue_policy {",
        "    timeout_action: REJECT",
        "    default_timeout_microseconds: 30000000",
        "    allow_timeout_override: true",
        f"    max_queue_size: {4 * max_batch_size}",
        "  }",
        "}",
        f"instance_group [ {{ count: {instances}, kind: {'KIND_GPU' if gpu else 'KIND_CPU'} }} ]",
        "# Read by the gateway (Triton does not expose the ONNX metadata): the graph pads to 16 itself.",
        'parameters { key: "io.size_multiple", value: { string_value: "1" } }',
        f'parameters {{ key: "io.min_size", value: {{ string_value: "{SIZE_MULTIPLE}" }} }}',
    ]
    if gpu:
        lines += [
            "optimization {",
            "  execution_accelerators {",
            "    gpu_execution_accelerator: [ {",
            '      name: "tensorrt"',
            '      parameters { key: "precision_mode", value: "FP16" }',
            '      parameters { key: "max_workspace_size_bytes", value: "8589934592" }',
            "      # Whole tiles of any size up to max_side, batches 1..max_batch_size.",
            f'      parameters {{ key: "trt_profile_min_shapes", value: "{shapes(1, 16, 16)}" }}',
            f'      parameters {{ key: "trt_profile_opt_shapes", value: "{shapes(max(1, max_batch_size // 2), h, w)}" }}',
            f'      parameters {{ key: "trt_profile_max_shapes", value: "{shapes(max_batch_size, max_side, max_side)}" }}',
            '      parameters { key: "trt_engine_cache_enable", value: "1" }',
            '      parameters { key: "trt_engine_cache_path", value: "/var/cache/tsva-trt" }',
            '      parameters { key: "trt_timing_cache_enable", value: "1" }',
            '      parameters { key: "trt_timing_cache_path", value: "/var/cache/tsva-trt" }',
            "    } ]",
            "  }",
            "}",
        ]
    warm = lambda n: (f'    inputs {{ key: "{n}", value: {{ data_type: {dtype}, dims: [ {h}, {w}, {CHANNELS} ], '  # noqa: E731
                      f"zero_data: true }} }}")
    lines += [
        "model_warmup [",
        "  {",
        f'    name: "tile_{h}x{w}_batch_1"',
        "    batch_size: 1",
        warm(INPUTS[0]), warm(INPUTS[1]),
        *([f'    inputs {{ key: "{INPUT_DD}", value: {{ data_type: TYPE_FP32, dims: [ 1 ], zero_data: true }} }}']
          if defocus else []),
        "  }",
        "]",
        "",
    ]
    return "\n".join(lines)


def write_triton_variant(source: str | Path, repository: str | Path, io: str, *,
                         model_name: str | None = None, **config) -> Path:
    """REPOSITORY/<name>/{config.pbtxt, 1/model.onnx} for the pixel-typed form of `source`;
    a complete model directory that Triton loads as is. Returns the model directory."""
    model_dir = Path(repository) / (model_name or f"tsva_{io}")
    if model_dir.exists() and not model_dir.is_dir():
        raise PixelIOError(f"--triton-dir: {model_dir} exists and is not a folder")
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    written = _write_pixel_model(source, model_dir / "1" / "model.onnx", io)
    conditioned = INPUT_DD in [i.name for i in written.graph.input]
    (model_dir / "config.pbtxt").write_text(pixel_triton_config(model_dir.name, io, defocus=conditioned, **config))
    return model_dir


__all__ = ["IO_TYPES", "PixelIOError", "pixel_triton_config", "wrap_pixel_io", "write_pixel_model",
           "write_triton_variant"]
