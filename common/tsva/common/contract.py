"""The model contract: what tensors a model takes and returns, read from the model itself.

Two contracts exist, told apart by the inputs' element type and shape:

- float32 NCHW (the shipped model): `y1`, `y2` -> `x`, float32 [N, 3, H, W], values in [0, 1].
- pixel-typed NHWC (`tsva export --io uint8|uint16`): the same names, uint8 or uint16
  [N, H, W, 3] in and out; the cast, scaling, layout change, clamp and rounding happen inside the
  graph, so the gateway sends the shots' own pixels and gets the fused tile's own pixels back
  (1 + 1 bytes per pixel and channel each way for uint8, instead of 4 + 4 + 4).

H and W must be multiples of `size_multiple`: the model's io.size_multiple where it has one (a
pixel-typed export pads inside its graph: io.size_multiple = 1, io.min_size = 16, so whole tiles
go to it as they arrived), else `stride`, the multiple the gateway pads to and aligns patch
origins to: 16, or the network's own size_multiple metadata (2**depth, written by `tsva export`)
where that is larger (a multiple of the network's stride keeps patches shift-equivariant; 16 is
what the shipped depth-3 network, stride 8, has always been served with). Metadata here means the
ONNX metadata_props or Triton config parameters. The gateway pads tiles (mirror) to what the contract asks, and every
conversion between tiles and model tensors lives here: `write_item` (tile -> one batch item),
`item_to_float` (one output item -> CHW float for stitching) and `item_to_pixels` (one output
item -> the fused tile).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

INPUT_Y1 = "y1"
INPUT_Y2 = "y2"
INPUT_DD = "dd"   # optional: a defocus-conditioned model's dD per item, float32 [N, 1] in um
OUTPUT_X = "x"
SIZE_MULTIPLE = 16
MODEL_CHANNELS = 3  # both contracts are RGB; grey tiles are fed as three equal channels

# Element type names as ONNX Runtime, Triton's model config and tritonclient spell them.
_DTYPES = {
    "tensor(float)": np.float32, "TYPE_FP32": np.float32, "FP32": np.float32, "float32": np.float32,
    "tensor(uint8)": np.uint8, "TYPE_UINT8": np.uint8, "UINT8": np.uint8, "uint8": np.uint8,
    "tensor(uint16)": np.uint16, "TYPE_UINT16": np.uint16, "UINT16": np.uint16, "uint16": np.uint16,
}
_TRITON_DATATYPE = {np.dtype(np.float32): "FP32", np.dtype(np.uint8): "UINT8", np.dtype(np.uint16): "UINT16"}


class ContractError(ValueError):
    """The model's inputs/outputs match neither contract; the message names what was found."""


@dataclass(frozen=True)
class ModelContract:
    pixel_type: np.dtype             # float32 (values in [0, 1]) or uint8/uint16 (the pixels themselves)
    layout: str                      # "NCHW" (float32) or "NHWC" (pixel-typed)
    channels: int = MODEL_CHANNELS
    size_multiple: int = SIZE_MULTIPLE  # H and W of a model tensor are multiples of this
    min_size: int = 1                # smallest H and W the model takes
    stride: int = SIZE_MULTIPLE      # a multiple of the network's total stride (patch origins align to it)
    inputs: tuple[str, str] = (INPUT_Y1, INPUT_Y2)
    output: str = OUTPUT_X
    defocus_input: str | None = None  # INPUT_DD when the model is conditioned on the pair's dD

    @property
    def pixel_typed(self) -> bool:
        return self.pixel_type != np.float32

    @property
    def name(self) -> str:
        """float32-nchw, uint8-nhwc or uint16-nhwc (logs, GetInfo metadata, docs)."""
        return f"{np.dtype(self.pixel_type).name}-{self.layout.lower()}"

    @property
    def triton_datatype(self) -> str:
        """FP32, UINT8 or UINT16: tritonclient's name of the tensors' element type."""
        return _TRITON_DATATYPE[np.dtype(self.pixel_type)]

    @property
    def bytes_per_pixel(self) -> int:
        """Bytes of one input tensor per model pixel (all channels)."""
        return self.channels * np.dtype(self.pixel_type).itemsize

    def item_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """Shape of one batch item (no batch axis) for a height x width canvas."""
        if self.layout == "NCHW":
            return (self.channels, height, width)
        return (height, width, self.channels)

    def item_size(self, shape: Sequence[int]) -> tuple[int, int]:
        """(height, width) of an item of `shape`."""
        return (shape[1], shape[2]) if self.layout == "NCHW" else (shape[0], shape[1])

    def canvas_size(self, height: int, width: int) -> tuple[int, int]:
        """The H x W the model is fed for a height x width tile (padded up as the contract asks)."""
        h, w = padded_size(max(height, self.min_size), max(width, self.min_size), self.size_multiple)
        return h, w

    def model_inputs(self, y1: np.ndarray, y2: np.ndarray, dd: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The model's inputs by name for a batch: y1, y2 and, for a conditioned model, each item's
        dD as float32 [N, 1] (0 where the caller has none, e.g. a readiness probe)."""
        inputs = {self.inputs[0]: y1, self.inputs[1]: y2}
        if self.defocus_input:
            inputs[self.defocus_input] = (np.zeros((len(y1), 1), np.float32) if dd is None else
                                          np.ascontiguousarray(dd, dtype=np.float32).reshape(len(y1), 1))
        return inputs

    def probe(self) -> np.ndarray:
        """A smallest valid batch of zeros (readiness probes, warm-up)."""
        side = max(self.canvas_size(1, 1))
        return np.zeros((1, *self.item_shape(side, side)), self.pixel_type)

    # ---- tiles -> model tensors ---------------------------------------------------------------

    def write_item(self, region: np.ndarray, out: np.ndarray) -> None:
        """Writes an H x W x C (C = 1 or 3) uint8/uint16 image region into one batch item `out`
        of the same H and W: scaled to [0, 1] and transposed for float32 NCHW, the pixels as they
        are for NHWC (a grey region is broadcast to the model's channels either way)."""
        if self.layout == "NCHW":
            scale = np.float32(1.0 / np.iinfo(region.dtype).max)
            np.multiply(region.transpose(2, 0, 1), scale, out=out, casting="unsafe")
        elif region.dtype == out.dtype:
            out[...] = region
        else:
            out[...] = rescale(region, out.dtype)

    def write_padded_item(self, tile: np.ndarray, out: np.ndarray) -> None:
        """Like write_item for a whole tile into a larger item: the tile at the top left, the rest
        mirrored from it (symmetric padding, as the patch path pads)."""
        height, width = tile.shape[:2]
        hh, ww = self.item_size(out.shape)
        core = out[:, :height, :width] if self.layout == "NCHW" else out[:height, :width]
        self.write_item(tile, core)
        if (hh, ww) != (height, width):
            _mirror_pad(out, height, width, channels_first=self.layout == "NCHW")

    # ---- model tensors -> tiles ---------------------------------------------------------------

    def item_to_float(self, item: np.ndarray) -> np.ndarray:
        """One output item as float32 C x H x W in [0, 1] (what the stitcher blends)."""
        if self.layout == "NCHW":
            return item
        scale = np.float32(1.0 / np.iinfo(item.dtype).max)
        return np.multiply(item.transpose(2, 0, 1), scale, dtype=np.float32)

    def item_to_pixels(self, item: np.ndarray, height: int, width: int, dtype, channels: int) -> np.ndarray:
        """One output item of a whole tile -> the fused H x W x channels tile of `dtype` (cropped
        from the padded canvas; clipped and rounded where the model returns floats)."""
        dtype = np.dtype(dtype)
        if self.layout == "NCHW":
            fused = item[:, :height, :width]
            if channels == 1 and fused.shape[0] != 1:
                fused = fused.mean(axis=0, keepdims=True)
            fused = np.clip(fused, 0.0, 1.0)
            fused *= np.iinfo(dtype).max
            np.rint(fused, out=fused)
            return np.ascontiguousarray(fused.transpose(1, 2, 0), dtype=dtype)
        fused = item[:height, :width]
        if fused.dtype != dtype:
            fused = rescale(fused, dtype)
        if channels == 1 and fused.shape[2] != 1:
            fused = np.rint(fused.mean(axis=2, keepdims=True, dtype=np.float32)).astype(dtype)
        return np.ascontiguousarray(fused)


def rescale(pixels: np.ndarray, dtype) -> np.ndarray:
    """uint8 <-> uint16 at the same brightness (x 257 exactly up; rounded down)."""
    dtype = np.dtype(dtype)
    if pixels.dtype == dtype:
        return pixels
    if dtype == np.uint16:
        return pixels.astype(np.uint16) * np.uint16(257)
    return ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _mirror_pad(out: np.ndarray, height: int, width: int, *, channels_first: bool) -> None:
    """Fills out's right/bottom margin by mirroring its top-left height x width core in place
    ('symmetric': the edge pixel repeated, as np.pad(mode='symmetric') does)."""
    view = np.moveaxis(out, 0, -1) if channels_first else out   # H x W x C view either way
    hh, ww = view.shape[:2]
    if hh > 2 * height or ww > 2 * width:  # a margin wider than the core: np.pad repeats the mirror
        core = np.pad(view[:height, :width], ((0, hh - height), (0, ww - width), (0, 0)), mode="symmetric")
        view[...] = core
        return
    if ww > width:
        view[:height, width:] = view[:height, 2 * width - ww:width][:, ::-1]
    if hh > height:
        view[height:] = view[2 * height - hh:height][::-1]


def padded_size(height: int, width: int, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    up = lambda n: -(-n // multiple) * multiple  # noqa: E731
    return up(height), up(width)


def _dims(shape: Sequence) -> list[int | None]:
    """Symbolic or unknown dimensions (names, None, -1) as None; Triton's JSON gives "3" for 3."""
    dims = []
    for d in shape:
        try:
            d = int(d)
        except (TypeError, ValueError):
            d = -1
        dims.append(d if d >= 0 else None)
    return dims


def contract_from_io(inputs: Mapping[str, tuple[str, Sequence]], outputs: Mapping[str, tuple[str, Sequence]],
                     metadata: Mapping[str, str] | None = None, *, where: str = "model") -> ModelContract:
    """The contract of a model whose tensors are name -> (element type, dims WITHOUT the batch
    axis), element types as ONNX Runtime, Triton's config or tritonclient spell them.

    Raises ContractError naming the inputs and outputs found when they match neither contract."""
    metadata = metadata or {}

    def found() -> str:
        show = lambda ts: ", ".join(f"{n} {t} {list(d)}" for n, (t, d) in ts.items()) or "none"  # noqa: E731
        return f"inputs: {show(inputs)}; outputs: {show(outputs)}"

    expected = (f"expected inputs {INPUT_Y1}, {INPUT_Y2} and output {OUTPUT_X}, all float32 [N, 3, H, W] "
                f"or all uint8/uint16 [N, H, W, 3] (tsva export --io)")
    conditioned = INPUT_DD in inputs
    if conditioned and (_DTYPES.get(str(inputs[INPUT_DD][0])) != np.float32
                        or _dims(inputs[INPUT_DD][1]) not in ([1], [None])):
        raise ContractError(f"{where}: input {INPUT_DD} must be float32 [N, 1] (the pair's dD in um) ({found()})")
    if set(inputs) - {INPUT_DD} != {INPUT_Y1, INPUT_Y2} or OUTPUT_X not in outputs:
        raise ContractError(f"{where} follows no model contract ({found()}); {expected}")
    tensors = {**{n: inputs[n] for n in (INPUT_Y1, INPUT_Y2)}, OUTPUT_X: outputs[OUTPUT_X]}
    types = {_DTYPES.get(str(t)) for t, _ in tensors.values()}
    shapes = [_dims(d) for _, d in tensors.values()]
    if len(types) != 1 or None in types or any(len(s) != 3 for s in shapes):
        raise ContractError(f"{where} follows no model contract ({found()}); {expected}")
    (dtype,) = types
    layout = "NCHW" if dtype == np.float32 else "NHWC"
    channel_axis = 0 if layout == "NCHW" else 2
    # NHWC must say so: a fixed last axis of 3 (a dynamic one would not tell NHWC from NCHW).
    allowed = (None, MODEL_CHANNELS) if layout == "NCHW" else (MODEL_CHANNELS,)
    if any(s[channel_axis] not in allowed for s in shapes):
        raise ContractError(f"{where} follows no model contract ({found()}); {expected}")
    def number(key: str, default: int) -> int:
        try:
            return max(1, int(metadata.get(key, default)))
        except ValueError:
            return default

    stride = math.lcm(SIZE_MULTIPLE, number("size_multiple", SIZE_MULTIPLE))
    return ModelContract(np.dtype(dtype), layout, size_multiple=number("io.size_multiple", stride), stride=stride,
                         min_size=number("io.min_size", 1), defocus_input=INPUT_DD if conditioned else None)


FLOAT32_CONTRACT = ModelContract(np.dtype(np.float32), "NCHW")
