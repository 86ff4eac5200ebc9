"""Which file of a model the embedded backend runs: the float32 ONNX file or its int8 form.

`tsva quantize MODEL` writes the int8 (QDQ) form beside the model as NAME.int8.onnx, with the
SHA-256 of the float file it came from in its metadata. On a CPU the int8 form computes faster;
the embedded backend uses it only while it still belongs to the float file next to it, so a
retrained or replaced model.onnx is never served through a stale quantisation of its predecessor.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from tsva.common.metadata import read_onnx_metadata

PRECISIONS = ("auto", "float32", "int8")
INT8_SUFFIX = ".int8.onnx"


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def int8_sibling(model: str | Path) -> Path:
    """model.onnx -> model.int8.onnx (where `tsva quantize` writes and the gateway looks)."""
    model = Path(model)
    return model.with_name(model.name.removesuffix(".onnx") + INT8_SUFFIX)


def matching_int8(model: str | Path) -> tuple[Path | None, str]:
    """(the int8 sibling, "") when it exists and was quantised from `model` as it is now, else
    (None, why not)."""
    sibling = int8_sibling(model)
    if not sibling.is_file():
        return None, f"no {sibling.name} beside it"
    try:
        source = read_onnx_metadata(sibling).quantization_source_sha256
    except Exception as exc:  # unreadable: served as float, and the log says why
        return None, f"{sibling.name} is not readable ({exc})"
    if source != file_sha256(model):
        return None, f"{sibling.name} was quantised from another version of {Path(model).name}"
    return sibling, ""
