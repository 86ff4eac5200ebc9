"""Static int8 quantisation of an exported float32 TSVA model, for serving on CPUs.

ONNX Runtime's static quantisation in QDQ form: per-output-channel int8 weights, uint8 activations
whose ranges come from running the float model on calibration pairs simulated by this project's
own simulator (the serving patch size, the model's optics and section). The model keeps the float32
contract (inputs `y1`, `y2`, output `x`, NCHW in [0, 1]), so the gateway and Triton serve it as they
serve the float file.

Two choices measured on this project's CPUs (docs/performance.md):
- `reduce_range` (7-bit weights): on x86 CPUs without VNNI, ONNX Runtime's u8s8 kernels sum pairs
  of products in int16 (VPMADDUBSW) and saturate with full 8-bit weights; the fused output then
  drifted to ~36 dB of the float model's, against ~53 dB with 7-bit weights.
- The residual tail stays float: the head conv that predicts the correction, the `+ y1` and the
  clamp. Quantising them would round the output (and y1 itself) to 256 levels; they cost almost
  nothing next to the U-Net's 3x3 convolutions.
- The convolutions at full resolution stay float too (`float_convs`: the first 2 and the last 2
  before the head, the U-Net's top level on both sides): they carry the tile's finest detail, and
  8-bit activations there cost the most PSNR. Shipped model, `tsva evaluate`'s 24 cells: worst
  cell -0.35 dB with every conv in int8, -0.19 with the first 2 float, -0.10 with both ends
  (docs/performance.md); they are about a quarter of the multiply-adds.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from tsva.common.contract import INPUT_Y1, INPUT_Y2, OUTPUT_X
from tsva.common.metadata import ModelMetadata
from tsva.common.precision import file_sha256

from .dataset import PairPool
from .errors import TsvaExportError
from .onnx_export import set_metadata

INPUTS = (INPUT_Y1, INPUT_Y2)

# Op types of the float tail (see the module docstring); the head conv is found as the Conv feeding it.
FLOAT_TAIL_OPS = ("Add", "Clip")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def pool_batches(pool: PairPool, batch: int) -> Iterator[dict[str, np.ndarray]]:
    """The pool's pairs as the model's float32 inputs, `batch` pairs at a time."""
    for start in range(0, len(pool), batch):
        y1, y2, _ = pool.tensors(slice(start, start + batch))
        yield {INPUTS[0]: y1.numpy(), INPUTS[1]: y2.numpy()}


def float_tail(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes kept in float32: the Add/Clip tail and the Conv whose output it adds."""
    tail = [n for n in model.graph.node if n.op_type in FLOAT_TAIL_OPS]
    tail_inputs = {name for n in tail for name in n.input}
    heads = [n for n in model.graph.node if n.op_type == "Conv" and set(n.output) & tail_inputs]
    return [n.name for n in tail + heads]


def end_convs(model: onnx.ModelProto, count: int) -> list[str]:
    """Names of the first `count` and the last `count` Conv nodes in graph (topological) order, the
    head conv of the float tail not counted: the encoder's and the decoder's full-resolution ones."""
    tail = set(float_tail(model))
    convs = [n.name for n in model.graph.node if n.op_type == "Conv" and n.name not in tail]
    count = max(count, 0)
    return convs if 2 * count >= len(convs) else convs[:count] + convs[len(convs) - count:]


def _unquantized_tail_inputs(model: onnx.ModelProto) -> None:
    """The quantiser shares one QuantizeLinear/DequantizeLinear pair per tensor among its consumers,
    so the float `+ y1` would still add the 8-bit y1. Feed the tail's nodes the float tensors
    themselves (Q/DQ pairs left without consumers are removed)."""
    producers = {o: n for n in model.graph.node for o in n.output}

    def float_source(name: str) -> str:
        dq = producers.get(name)
        q = producers.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        return q.input[0] if q is not None and q.op_type == "QuantizeLinear" else name

    for node in model.graph.node:
        if node.op_type in FLOAT_TAIL_OPS:
            node.input[:] = [float_source(i) for i in node.input]
    while True:  # drop Q/DQ nodes nobody reads any more
        used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
        dead = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not set(n.output) & used]
        if not dead:
            return
        for n in dead:
            model.graph.node.remove(n)


def quantize_model(source: str | Path, output: str | Path, pool: PairPool, *, batch: int = 8,
                   method: str = "minmax", per_channel: bool = True, reduce_range: bool = True,
                   calibration: str = "", float_convs: int = 2) -> dict[str, str]:
    """Writes the int8 (QDQ) model of the float32 ONNX file `source` to `output`, calibrated on
    `pool`; returns the metadata it adds. The source's metadata is carried over, with
    `precision` = int8 and a `quantization` description (`calibration`: where the pairs came from).
    The first and the last `float_convs` convolutions and the residual tail stay float32."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source, output = Path(source), Path(output)
    if method not in CALIBRATION_METHODS:
        raise TsvaExportError(f"--calibration-method: {method!r}, expected one of {', '.join(CALIBRATION_METHODS)}")
    if len(pool) == 0:
        raise TsvaExportError("quantisation needs at least one calibration pair")
    try:
        float_model = onnx.load(str(source))
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise TsvaExportError(f"{source}: not a readable ONNX model ({exc})") from None
    metadata = ModelMetadata.from_props({p.key: p.value for p in float_model.metadata_props})
    if (metadata.precision or "float32") != "float32":
        raise TsvaExportError(f"{source}: already {metadata.precision}; quantise the float32 model")
    names = {i.name for i in float_model.graph.input}
    if not set(INPUTS) <= names:
        raise TsvaExportError(f"{source}: inputs {sorted(names)}; quantisation needs the float32 contract "
                              f"({', '.join(INPUTS)})")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._batches = pool_batches(pool, batch)

        def get_next(self):
            return next(self._batches, None)

    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tsva-quantize-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Constant folding and shape inference first (ONNX Runtime's advice); symbolic shape
        # inference cannot follow the batch split of the shared encoder, and is not needed.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        prepared_model = onnx.load(str(prepared))
        quantize_static(
            str(prepared), str(Path(tmp) / "quantized.onnx"), Reader(), quant_format=QuantFormat.QDQ,
            per_channel=per_channel, reduce_range=reduce_range, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=end_convs(prepared_model, float_convs) + float_tail(prepared_model),
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                              "entropy": CalibrationMethod.Entropy}[method])
        quantized = onnx.load(str(Path(tmp) / "quantized.onnx"))
    _unquantized_tail_inputs(quantized)
    quantized_metadata = replace(
        metadata, precision="int8",
        quantization=(f"ONNX Runtime static QDQ: int8 weights ({'per channel' if per_channel else 'per tensor'}"
                      f"{', 7-bit range' if reduce_range else ''}), uint8 activations, {method} ranges from "
                      f"{len(pool)} simulated {pool.y1.shape[-1]}px pairs{' of ' + calibration if calibration else ''}"
                      f"; float32: {f'first and last {float_convs} convs, ' if float_convs > 0 else ''}"
                      f"{', '.join(FLOAT_TAIL_OPS)} tail and head conv"),
        quantization_source_sha256=file_sha256(source))
    # The pre-processing and quantiser add their own bookkeeping keys; the model's keys are kept.
    del quantized.metadata_props[:]
    set_metadata(quantized, quantized_metadata)
    props = quantized_metadata.to_props()
    added = {key: props[key] for key in ("precision", "quantization", "quantization.source_sha256")}
    quantized.producer_name = float_model.producer_name or quantized.producer_name
    onnx.checker.check_model(quantized)
    onnx.save(quantized, str(output))
    return added


def max_abs_difference(float_path: str | Path, int8_path: str | Path, pool: PairPool, batch: int = 8,
                       threads: int = 1) -> tuple[float, float]:
    """(max abs difference, PSNR in dB) of the int8 model's output against the float model's on
    `pool`: how far quantisation moves the fused image (not its quality against the truth)."""
    from .onnx_export import onnx_session

    a, b = onnx_session(float_path, threads), onnx_session(int8_path, threads)
    worst, squared, count = 0.0, 0.0, 0
    for feed in pool_batches(pool, batch):
        x, q = a.run([OUTPUT_X], feed)[0], b.run([OUTPUT_X], feed)[0]
        worst = max(worst, float(np.abs(x - q).max()))
        squared += float(((x.astype(np.float64) - q) ** 2).sum())
        count += x.size
    mse = squared / max(count, 1)
    return worst, float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))
