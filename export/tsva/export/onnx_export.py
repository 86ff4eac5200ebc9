"""ONNX export to the gateway's contract, metadata, parity check and the fp16 variant.

Contract: inputs `y1`, `y2`, output `x`, float32 NCHW in [0, 1], batch/height/width dynamic
(height and width multiples of 16), opset >= 17. A defocus-conditioned network has a third input,
`dd` float32 [batch, 1]: the pair's dD in um (half the distance between the two shots' planes).
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np
import onnx
import torch
from tsva.common.contract import INPUT_DD, INPUT_Y1, INPUT_Y2, OUTPUT_X
from tsva.common.metadata import ModelMetadata

from .network import Clamped

OPSET = 17
INPUTS = (INPUT_Y1, INPUT_Y2)
DEFOCUS_INPUT = INPUT_DD
OUTPUT = OUTPUT_X
PARITY_TOLERANCE = 1e-4


class _Fp16Inside(torch.nn.Module):
    """fp16 arithmetic with the contract's float32 inputs and outputs (for GPU serving)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = copy.deepcopy(net).half()

    def forward(self, y1, y2, dd=None):
        return self.net(y1.half(), y2.half(), None if dd is None else dd.half()).float()


def export_onnx(net: torch.nn.Module, path: str | Path, metadata: ModelMetadata | Mapping[str, str] | None = None,
                fp16: bool = False, sample_size: int = 64) -> Path:
    """Write `net` (called as net(y1, y2)) as ONNX with clamped output and the model's metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = Clamped(net).eval()
    if fp16:
        model = _Fp16Inside(model)
    sample = torch.rand(1, 3, sample_size, sample_size)
    dynamic = {name: {0: "batch", 2: "height", 3: "width"} for name in (*INPUTS, OUTPUT)}
    args, names = (sample, sample), list(INPUTS)
    if getattr(getattr(net, "config", None), "conditioned", False):
        args, names = (sample, sample, torch.full((1, 1), 1.5)), [*INPUTS, DEFOCUS_INPUT]
        dynamic[DEFOCUS_INPUT] = {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter: needs no onnxscript, and handles this plain conv net exactly.
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), dynamo=False, opset_version=OPSET,
                          input_names=names, output_names=[OUTPUT], dynamic_axes=dynamic,
                          do_constant_folding=True)
    proto = onnx.load(str(path))
    _keep_both_inputs(proto)
    set_metadata(proto, metadata or {})
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def _keep_both_inputs(proto: onnx.ModelProto) -> None:
    """The U-Net baseline ignores y2 and the tracer drops unused inputs; the contract has both,
    so an unused `y2` of the same type is declared again (valid ONNX, costs nothing)."""
    names = [i.name for i in proto.graph.input]
    for name in INPUTS:
        if name not in names:
            twin = copy.deepcopy(proto.graph.input[0])
            twin.name = name
            proto.graph.input.append(twin)
    order = (*INPUTS, DEFOCUS_INPUT)
    ordered = sorted(proto.graph.input, key=lambda i: order.index(i.name) if i.name in order else len(order))
    del proto.graph.input[:]
    proto.graph.input.extend(ordered)


def set_metadata(proto: onnx.ModelProto, metadata: ModelMetadata | Mapping[str, str]) -> None:
    """Sets these metadata_props on `proto` (keys it already has are overwritten, others kept)."""
    if isinstance(metadata, ModelMetadata):
        metadata = metadata.to_props()
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in metadata.items():
        if key in existing:
            existing[key].value = str(value)
        else:
            proto.metadata_props.add(key=key, value=str(value))


def onnx_session(path: str | Path, threads: int = 1):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_parity(net: torch.nn.Module, path: str | Path, sizes=((1, 64, 64), (2, 96, 128)),
                 seed: int = 0) -> float:
    """Max abs difference ONNX Runtime vs PyTorch over the given (batch, height, width) sizes."""
    session = onnx_session(path)
    model = Clamped(net).eval()
    conditioned = getattr(getattr(net, "config", None), "conditioned", False)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for batch, h, w in sizes:
        y1 = rng.random((batch, 3, h, w), dtype=np.float32)
        y2 = rng.random((batch, 3, h, w), dtype=np.float32)
        dd = rng.uniform(0.5, 3.0, (batch, 1)).astype(np.float32) if conditioned else None
        with torch.no_grad():
            expected = model(torch.from_numpy(y1), torch.from_numpy(y2),
                             None if dd is None else torch.from_numpy(dd)).numpy()
        feeds = {INPUTS[0]: y1, INPUTS[1]: y2, **({DEFOCUS_INPUT: dd} if conditioned else {})}
        got = session.run([OUTPUT], feeds)[0]
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst
