"""Brenner gradient focus measure and z-stack focus search: one implementation for the gateway
(pair order, FindFocus) and the training side (pair order of simulated data), so both agree.

Brenner (1976), as the paper uses it: B = sum over the image of (I(x+2, y) - I(x, y))^2, I the
luminance, x the column. A plain first difference at distance 2 squared, summed over every pixel
whose neighbour two columns to the right exists (no second-order difference, no thresholding, no
clipping of one side).
"""
from __future__ import annotations

import numpy as np

# ITU-R BT.601 luma weights: the usual luminance of 8/16-bit camera RGB.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
# The same weights in thousandths: 1000 x luminance is an exact integer (< 2**26 for uint16).
_LUMA_MILLI = (299, 587, 114)


def luminance(image: np.ndarray) -> np.ndarray:
    """H x W x C (C = 1 or 3) or H x W -> H x W float32, in the image's own intensity units."""
    if image.ndim == 2:
        return image.astype(np.float32)
    if image.shape[2] == 1:
        return image[:, :, 0].astype(np.float32)
    if np.issubdtype(image.dtype, np.integer):
        return (_luminance_milli(image) / np.float32(1000)).astype(np.float32)
    # Float images (the simulator's): per-channel multiply-adds, ~6x faster than a matmul.
    lum = image[:, :, 0] * np.float32(LUMA_WEIGHTS[0])
    lum += image[:, :, 1] * np.float32(LUMA_WEIGHTS[1])
    lum += image[:, :, 2] * np.float32(LUMA_WEIGHTS[2])
    return lum


def _luminance_milli(image: np.ndarray, out: np.ndarray | None = None, tmp: np.ndarray | None = None) -> np.ndarray:
    """1000 x the luminance of an H x W x 3 integer image, exactly, as int32 (no float copy)."""
    shape = image.shape[:2]
    lum = np.empty(shape, np.int32) if out is None else out
    tmp = np.empty(shape, np.int32) if tmp is None else tmp
    np.multiply(image[:, :, 0], _LUMA_MILLI[0], out=lum, dtype=np.int32)
    np.multiply(image[:, :, 1], _LUMA_MILLI[1], out=tmp, dtype=np.int32)
    lum += tmp
    np.multiply(image[:, :, 2], _LUMA_MILLI[2], out=tmp, dtype=np.int32)
    lum += tmp
    return lum


_ROWS = 64  # rows per step: the int32 temporaries (~1 MB for 1224 px) stay in the CPU's cache


def brenner(image: np.ndarray) -> float:
    """Brenner gradient of `image` (luminance, horizontal step 2). 0.0 for images narrower than 3.

    Integer images are scored in integer arithmetic: differences of the exact 1000 x luminance
    (int32), their squares summed in float64 (a 4096x4096 uint16 tile's sum exceeds int64), a
    band of rows at a time (twice as fast as whole-tile temporaries that spill out of the cache)."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not np.issubdtype(image.dtype, np.integer):
        lum = luminance(image)
        diff = lum[:, 2:] - lum[:, :-2]
        return float(np.einsum("ij,ij->", diff, diff, dtype=np.float64))
    height, width = image.shape[:2]
    if width < 3:
        return 0.0
    rows = min(_ROWS, height)
    colour = image.ndim == 3
    if colour and image.dtype == np.uint8:
        return _brenner_rgb8(image, rows)
    lum, tmp = (np.empty((rows, width), np.int32) for _ in range(2)) if colour else (None, None)
    diff = np.empty((rows, width - 2), np.int32)
    total = 0.0
    for top in range(0, height, rows):
        band = image[top:top + rows]
        n = len(band)
        values = _luminance_milli(band, lum[:n], tmp[:n]) if colour else band
        d = diff[:n]
        np.subtract(values[:, 2:], values[:, :-2], out=d, dtype=np.int32)
        total += float(np.einsum("ij,ij->", d, d, dtype=np.float64))
    return total / 1e6 if colour else total  # (1000 L)^2 = 1e6 L^2


_LUMA_MILLI_F32 = np.array(_LUMA_MILLI, np.float32)


def _brenner_rgb8(image: np.ndarray, rows: int) -> float:
    """Brenner of an H x W x 3 uint8 image, as exact as the integer path: 1000 x luminance by one
    BLAS matrix-vector product per band in float32 (every partial sum is an integer below 2**24,
    so exact), differences squared and summed in float64. ~30 % less CPU than three strided
    integer multiplies, on the gateway's hot path (two shots per tile)."""
    height, width = image.shape[:2]
    pixels = np.empty((rows * width, 3), np.float32)
    lum = np.empty(rows * width, np.float32)
    diff = np.empty((rows, width - 2), np.float64)
    total = 0.0
    for top in range(0, height, rows):
        band = image[top:top + rows]
        n = len(band)
        rgb = pixels[:n * width]
        rgb[...] = band.reshape(-1, 3)
        values = np.matmul(rgb, _LUMA_MILLI_F32, out=lum[:n * width]).reshape(n, width)
        d = diff[:n]
        np.subtract(values[:, 2:], values[:, :-2], out=d)
        flat = d.reshape(-1)
        total += float(np.dot(flat, flat))
    return total / 1e6


def refine_peak(z: np.ndarray, scores: np.ndarray, best: int) -> float:
    """z of the maximum of the parabola through the scores at best-1, best, best+1.

    Falls back to z[best] at the ends of the stack or when the three points are collinear (a flat
    or rising score, where a parabola has no usable maximum). Works on unevenly spaced z too.
    """
    if best == 0 or best == len(z) - 1:
        return float(z[best])
    z0, z1, z2 = (float(v) for v in z[best - 1: best + 2])
    s0, s1, s2 = (float(v) for v in scores[best - 1: best + 2])
    # Vertex of the Lagrange parabola through (z0, s0), (z1, s1), (z2, s2).
    numerator = (z1 - z0) ** 2 * (s1 - s2) - (z1 - z2) ** 2 * (s1 - s0)
    denominator = (z1 - z0) * (s1 - s2) - (z1 - z2) * (s1 - s0)
    if denominator == 0:
        return z1
    vertex = z1 - 0.5 * numerator / denominator
    # The vertex of a parabola through a local maximum lies between its neighbours; clamp rounding.
    return float(min(max(vertex, min(z0, z2)), max(z0, z2)))
