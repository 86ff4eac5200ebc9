"""The ONNX model's metadata_props as one typed record: what the training side writes into an
exported model and what the gateway, `tsva info` and fine-tuning read back.

The props are flat string keys (ONNX allows nothing else). `ModelMetadata.from_props` reads them
tolerantly, as the gateway always has: a missing key is None, an unreadable number is None too and
its text is kept in `unreadable` (so it is written back unchanged and `require` can name it), keys
this module does not know are kept in `extra`. `to_props` writes the same keys and strings the
exporter always wrote (numbers as `:g`, lists comma-separated); None is left out.

Keys (the writers: tsva.export.metadata, pixel_io, quantize):
  model_name, model_version, architecture, condition ("none" | "defocus": a `dd` input)
  optics.numerical_aperture, optics.refractive_index, optics.pixel_size_um, optics.focus_sigma_um,
  optics.wavelengths_um, optics.defocus_um (comma-separated)
  sample.thickness_um, sample.layers (one fixed section), or sample.distribution (a description)
  with distribution.* (comma-separated numbers: the per-pair section and sensor ranges)
  patch_size, base_width, depth, size_multiple, training_data, training_command, evaluation_summary
  io.contract, io.size_multiple, io.min_size (pixel-typed exports: `tsva export --io`)
  precision, quantization, quantization.source_sha256 (`tsva quantize`)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

DISTRIBUTION_PREFIX = "distribution."


class MetadataError(ValueError):
    """A key a caller needs is missing from the model's metadata or is not a number."""


@dataclass(frozen=True)
class OpticsMetadata:
    """optics.*: the microscope the model was trained for (um; wavelengths R, G, B)."""
    numerical_aperture: float | None = None
    refractive_index: float | None = None
    pixel_size_um: float | None = None
    wavelengths_um: tuple[float, ...] | None = None
    defocus_um: tuple[float, ...] | None = None   # the pair dD values it was trained for
    focus_sigma_um: float | None = None


@dataclass(frozen=True)
class SectionMetadata:
    """sample.* and distribution.*: the section the model was trained on, one fixed section
    (thickness_um, layers) or a per-pair distribution (its description and ranges)."""
    thickness_um: float | None = None
    layers: int | None = None
    distribution: str | None = None
    # distribution.<name> -> its numbers, name without the prefix (thin_fraction, thickness_um, ...)
    distribution_ranges: Mapping[str, tuple[float, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class PixelIOMetadata:
    """io.*: a pixel-typed export's contract (uint8-nhwc / uint16-nhwc) and its size rules."""
    contract: str | None = None
    size_multiple: int | None = None
    min_size: int | None = None


def _float(text: str) -> float:
    return float(text)


def _int(text: str) -> int:
    return int(text)


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def _format(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, tuple, list)):
        return str(value)
    if isinstance(value, (tuple, list)):
        return ",".join(_format(v) for v in value)
    if isinstance(value, int):
        return str(value)
    short = f"{value:g}"  # what the exporter always wrote; more digits only where :g would lose some
    return short if not math.isfinite(value) or float(short) == value else repr(value)


# key -> (group attribute or None, field name, parser); the order is the order the exporter writes.
_HEAD = (
    ("model_name", None, "model_name", str),
    ("model_version", None, "model_version", str),
    ("architecture", None, "architecture", str),
    ("condition", None, "condition", str),
    ("optics.numerical_aperture", "optics", "numerical_aperture", _float),
    ("optics.refractive_index", "optics", "refractive_index", _float),
    ("optics.pixel_size_um", "optics", "pixel_size_um", _float),
    ("optics.wavelengths_um", "optics", "wavelengths_um", _floats),
    ("optics.defocus_um", "optics", "defocus_um", _floats),
    ("optics.focus_sigma_um", "optics", "focus_sigma_um", _float),
    ("sample.thickness_um", "section", "thickness_um", _float),
    ("sample.layers", "section", "layers", _int),
    ("sample.distribution", "section", "distribution", str),
)
_TAIL = (
    ("patch_size", None, "patch_size", _int),
    ("base_width", None, "base_width", _int),
    ("depth", None, "depth", _int),
    ("size_multiple", None, "size_multiple", _int),
    ("training_data", None, "training_data", str),
    ("training_command", None, "training_command", str),
    ("evaluation_summary", None, "evaluation_summary", str),
    ("io.contract", "io", "contract", str),
    ("io.size_multiple", "io", "size_multiple", _int),
    ("io.min_size", "io", "min_size", _int),
    ("precision", None, "precision", str),
    ("quantization", None, "quantization", str),
    ("quantization.source_sha256", None, "quantization_source_sha256", str),
)
_KEYS = {key: (group, name, parse) for key, group, name, parse in (*_HEAD, *_TAIL)}
_NUMBERS = (_float, _int, _floats)


@dataclass(frozen=True)
class ModelMetadata:
    model_name: str | None = None
    model_version: str | None = None
    architecture: str | None = None
    condition: str | None = None          # "none" or "defocus"; older models lack the key ("none")
    optics: OpticsMetadata = field(default_factory=OpticsMetadata)
    section: SectionMetadata = field(default_factory=SectionMetadata)
    patch_size: int | None = None
    base_width: int | None = None
    depth: int | None = None
    size_multiple: int | None = None
    training_data: str | None = None
    training_command: str | None = None
    evaluation_summary: str | None = None
    io: PixelIOMetadata = field(default_factory=PixelIOMetadata)
    precision: str | None = None          # absent: float32
    quantization: str | None = None
    quantization_source_sha256: str | None = None
    unreadable: Mapping[str, str] = field(default_factory=dict)  # known number keys whose text is no number
    extra: Mapping[str, str] = field(default_factory=dict)       # keys this module does not know

    # ---- props -> record -----------------------------------------------------------------------

    @classmethod
    def from_props(cls, props: Mapping[str, str]) -> "ModelMetadata":
        """Tolerant: missing or empty keys are None; an unreadable number is None and kept in
        `unreadable`; unknown keys go to `extra` unchanged."""
        top: dict[str, Any] = {}
        groups: dict[str, dict[str, Any]] = {"optics": {}, "section": {}, "io": {}}
        ranges: dict[str, tuple[float, ...]] = {}
        unreadable: dict[str, str] = {}
        extra: dict[str, str] = {}
        for key, text in props.items():
            text = str(text)
            if key in _KEYS:
                group, name, parse = _KEYS[key]
                if parse in _NUMBERS and not text.strip():
                    continue  # an empty number is a missing one
                try:
                    value = parse(text)
                except ValueError:
                    unreadable[key] = text
                    continue
                (groups[group] if group else top)[name] = value
            elif key.startswith(DISTRIBUTION_PREFIX):
                try:
                    ranges[key[len(DISTRIBUTION_PREFIX):]] = _floats(text)
                except ValueError:
                    unreadable[key] = text
            else:
                extra[key] = text
        return cls(**top, optics=OpticsMetadata(**groups["optics"]),
                   section=SectionMetadata(**groups["section"], distribution_ranges=ranges),
                   io=PixelIOMetadata(**groups["io"]), unreadable=unreadable, extra=extra)

    # ---- record -> props -----------------------------------------------------------------------

    def to_props(self) -> dict[str, str]:
        """The metadata_props as the exporter writes them; None is left out, `unreadable` and
        `extra` are written back unchanged."""
        def put(spec) -> None:
            for key, group, name, _ in spec:
                value = getattr(getattr(self, group) if group else self, name)
                if value is not None:
                    props[key] = _format(value)

        props: dict[str, str] = {}
        put(_HEAD)
        for name, values in self.section.distribution_ranges.items():
            props[DISTRIBUTION_PREFIX + name] = _format(tuple(values))
        put(_TAIL)
        for key, text in self.unreadable.items():
            props.setdefault(key, text)
        for key, text in self.extra.items():
            props.setdefault(key, text)
        return props

    # ---- reading helpers -----------------------------------------------------------------------

    def require(self, name: str) -> Any:
        """A top-level field a caller cannot do without (base_width, depth, ...): its value, or
        MetadataError naming the key and why (missing, or its text when it is no number)."""
        key = next(k for k, (group, n, _) in _KEYS.items() if group is None and n == name)
        value = getattr(self, name)
        if value is not None:
            return value
        if key in self.unreadable:
            raise MetadataError(f"metadata {key}: {self.unreadable[key]!r} is not a number")
        raise MetadataError(f"metadata {key}: missing")

    @property
    def conditioned(self) -> bool:
        """The model takes the pair's dD (a third input `dd`)."""
        return self.condition == "defocus"


def read_onnx_props(path: str | Path) -> dict[str, str]:
    """An ONNX file's metadata_props as stored, without loading external weight files.
    Needs the onnx package (tsva-server and tsva-export depend on it; the client does not)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def read_onnx_metadata(path: str | Path) -> ModelMetadata:
    """The typed metadata of the ONNX file at `path`."""
    return ModelMetadata.from_props(read_onnx_props(path))


__all__ = ["DISTRIBUTION_PREFIX", "MetadataError", "ModelMetadata", "OpticsMetadata", "PixelIOMetadata",
           "SectionMetadata", "read_onnx_metadata", "read_onnx_props"]
