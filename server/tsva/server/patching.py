"""Cutting a tile into overlapping patches and stitching the network's patches back seamlessly.

Patches are P x P with at least `overlap` pixels shared between neighbours, spread evenly over the
tile. Patch origins are multiples of `align` (the network's total stride, 16 by the model
contract): a U-Net's strided layers are shift-equivariant only for such shifts, so every patch
then sees the same sampling grid as the whole tile would, and patch-wise inference differs from
whole-tile inference only near patch borders. The tile is padded (mirror) at its right/bottom
edge up to the last patch's end, and up to P when it is smaller than a patch. Each patch's output is weighted by a separable window that falls smoothly to ~0 at the
patch border, where a zero-padded network is least accurate, and the weighted sum is divided by
the sum of the windows: no seams, and every pixel is a convex blend of the patches covering it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


def patch_starts(length: int, patch: int, overlap: int, align: int = 16) -> np.ndarray:
    """Top/left offsets of the patches along one axis: multiples of `align`, neighbours overlapping
    by at least `overlap`, the last one reaching `length` (a length below `patch` is padded to it).
    Needs patch - overlap >= align."""
    if length <= patch:
        return np.zeros(1, dtype=np.int64)
    last = math.ceil((length - patch) / align)        # in units of align
    step = (patch - overlap) // align                  # largest step keeping the overlap
    count = math.ceil(last / step) + 1
    # floor(k * last / (count-1)): steps never exceed ceil(last / (count-1)) <= step.
    return (np.arange(count) * last // (count - 1)).astype(np.int64) * align


@dataclass(frozen=True)
class PatchGrid:
    height: int
    width: int
    patch: int
    overlap: int
    align: int = 16

    @property
    def canvas_height(self) -> int:
        return int(self.origins[-1, 0]) + self.patch

    @property
    def canvas_width(self) -> int:
        return int(self.origins[-1, 1]) + self.patch

    @property
    def origins(self) -> np.ndarray:
        """[count, 2] (y, x) of every patch, row-major."""
        return _origins(self)

    @property
    def count(self) -> int:
        return len(self.origins)


@lru_cache(maxsize=64)
def _origins(grid: PatchGrid) -> np.ndarray:
    ys = patch_starts(grid.height, grid.patch, grid.overlap, grid.align)
    xs = patch_starts(grid.width, grid.patch, grid.overlap, grid.align)
    origins = np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1).reshape(-1, 2)
    origins.setflags(write=False)
    return origins


@lru_cache(maxsize=8)
def blend_window(patch: int, overlap: int) -> np.ndarray:
    """P x P float32 window: sin^2 ramp over `overlap` pixels at each edge, 1 inside."""
    ramp = np.ones(patch, dtype=np.float64)
    if overlap > 0:
        edge = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / overlap) ** 2
        ramp[:overlap] = np.minimum(ramp[:overlap], edge)
        ramp[patch - overlap:] = np.minimum(ramp[patch - overlap:], edge[::-1])
    window = np.outer(ramp, ramp).astype(np.float32)
    window.setflags(write=False)
    return window


@lru_cache(maxsize=8)
def inverse_weight(grid: PatchGrid) -> np.ndarray:
    """1 / (sum of the windows covering each canvas pixel), canvas-sized float32."""
    total = np.zeros((grid.canvas_height, grid.canvas_width), dtype=np.float64)
    window = blend_window(grid.patch, grid.overlap)
    p = grid.patch
    for y, x in grid.origins:
        total[y:y + p, x:x + p] += window
    inverse = (1.0 / total).astype(np.float32)
    inverse.setflags(write=False)
    return inverse


def pad_to_canvas(tile: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """The tile itself, or a reflection-padded copy when it is smaller than a patch."""
    pad_y = grid.canvas_height - tile.shape[0]
    pad_x = grid.canvas_width - tile.shape[1]
    if pad_y == 0 and pad_x == 0:
        return tile
    # 'symmetric' also works for 1-pixel-wide tiles, where 'reflect' has nothing to reflect.
    return np.pad(tile, ((0, pad_y), (0, pad_x), (0, 0)), mode="symmetric")


def extract_patch(canvas: np.ndarray, origin, patch: int, scale: float, out: np.ndarray) -> None:
    """Writes canvas[y:y+P, x:x+P] (HWC integers) as CHW float32 * scale into `out` ([C', P, P]).

    A 1-channel canvas is broadcast to all of out's channels (grey tiles through an RGB model).
    """
    y, x = int(origin[0]), int(origin[1])
    np.multiply(canvas[y:y + patch, x:x + patch].transpose(2, 0, 1), np.float32(scale), out=out,
                casting="unsafe")


class Stitcher:
    """Accumulates weighted output patches of one tile and produces the stitched tile."""

    def __init__(self, grid: PatchGrid, channels: int):
        self.grid = grid
        self._acc = np.zeros((channels, grid.canvas_height, grid.canvas_width), dtype=np.float32)
        self._window = blend_window(grid.patch, grid.overlap)

    def add(self, origin, patch_chw: np.ndarray) -> None:
        y, x = int(origin[0]), int(origin[1])
        p = self.grid.patch
        region = self._acc[:, y:y + p, x:x + p]
        region += patch_chw * self._window

    def result(self, dtype: np.dtype, channels: int) -> np.ndarray:
        """The stitched tile as H x W x channels of integer `dtype`, values clipped and rounded."""
        g = self.grid
        acc = self._acc
        acc *= inverse_weight(g)
        if channels == 1 and acc.shape[0] != 1:
            acc = acc.mean(axis=0, keepdims=True)
        fused = acc[:, :g.height, :g.width]
        peak = np.iinfo(dtype).max
        np.clip(fused, 0.0, 1.0, out=fused)
        fused *= peak
        np.rint(fused, out=fused)
        return np.ascontiguousarray(fused.transpose(1, 2, 0), dtype=dtype)


# ---- tiles on their way through the backend ------------------------------------------------------
# A job is one tile as the batcher sees it: `total` items of one `shape` (model layout, no batch
# axis), written into batch tensors by fill() and taken back from the output by put(); the
# contract (tsva.common.contract) does every conversion. Items of the same shape share batches.

class TileJob:
    """State the batcher keeps for any job: its future and timings."""

    shape: tuple[int, ...]
    dtype: np.dtype
    total: int

    def __init__(self):
        self.next = 0        # next item to put in a batch
        self.done = 0        # items taken back
        self.future = None   # asyncio.Future, set by the batcher
        self.enqueued_at = 0.0
        self.queue_s = 0.0      # submission to its first item entering a batch
        self.inference_s = 0.0  # backend time of the batches that carried its items
        self.dd_um = None       # the tile's dD, for a defocus-conditioned model (set by the pipeline)

    @property
    def queued(self) -> int:
        return self.total - self.next

    def direct(self):
        """(y1, y2) batch-of-one views to send as they are, or None when fill() must copy."""
        return None


class PatchJob(TileJob):
    """A tile cut into overlapping patches (lazily, when a batch is filled) and stitched back."""

    def __init__(self, grid: PatchGrid, canvas_y1: np.ndarray, canvas_y2: np.ndarray, contract,
                 stitcher: Stitcher):
        super().__init__()
        self.grid, self.contract, self.stitcher = grid, contract, stitcher
        self.canvas_y1, self.canvas_y2 = canvas_y1, canvas_y2
        self.origins = grid.origins
        self.total = len(self.origins)
        self.shape = contract.item_shape(grid.patch, grid.patch)
        self.dtype = np.dtype(contract.pixel_type)

    def fill(self, index: int, y1: np.ndarray, y2: np.ndarray) -> None:
        y, x = (int(v) for v in self.origins[index])
        p = self.grid.patch
        self.contract.write_item(self.canvas_y1[y:y + p, x:x + p], y1)
        self.contract.write_item(self.canvas_y2[y:y + p, x:x + p], y2)

    def put(self, index: int, item: np.ndarray) -> None:
        self.stitcher.add(self.origins[index], self.contract.item_to_float(item))

    def result(self, dtype, channels: int) -> np.ndarray:
        return self.stitcher.result(dtype, channels)


class WholeTileJob(TileJob):
    """A whole tile as one item, padded (mirror) as the model's contract asks: no patches, no
    blending, and no copy at all for a lone RGB tile to a pixel-typed model that pads in its graph."""

    def __init__(self, y1: np.ndarray, y2: np.ndarray, contract):
        super().__init__()
        self.y1, self.y2, self.contract = y1, y2, contract
        self.total = 1
        self.height, self.width = y1.shape[:2]
        self.shape = contract.item_shape(*contract.canvas_size(self.height, self.width))
        self.dtype = np.dtype(contract.pixel_type)
        self._out = None

    def direct(self):
        if self.y1.shape == self.shape and self.y1.dtype == self.dtype:
            return self.y1[None], self.y2[None]
        return None

    def fill(self, index: int, y1: np.ndarray, y2: np.ndarray) -> None:
        self.contract.write_padded_item(self.y1, y1)
        self.contract.write_padded_item(self.y2, y2)

    def put(self, index: int, item: np.ndarray) -> None:
        self._out = item  # converted in result(), on the caller's thread

    def result(self, dtype, channels: int) -> np.ndarray:
        return self.contract.item_to_pixels(self._out, self.height, self.width, dtype, channels)
