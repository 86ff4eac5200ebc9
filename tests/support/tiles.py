"""Test tiles and what the tiny model (x = clip(0.75*y1 + 0.25*y2)) makes of them."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter
from skimage import data, filters
from tsva.common.images import encode_image
from tsva.v1 import tsva_pb2 as pb


def sharp_and_blurred(height=96, width=120, dtype=np.uint8, grey=False):
    """A textured tile and a blurred copy: the sharp one must be chosen as Y1."""
    tile = data.astronaut()[100:100 + height, 150:150 + width]
    if grey:
        tile = tile[:, :, 1]
    blurred = filters.gaussian(tile, sigma=2.5, channel_axis=None if grey else -1, preserve_range=True)
    if dtype == np.uint16:
        return tile.astype(np.uint16) * 257, np.round(blurred * 257).astype(np.uint16)
    return tile, np.round(blurred).astype(np.uint8)


def expected_fusion(y1, y2):
    """What the tiny model yields, in the shots' pixel type."""
    peak = np.iinfo(y1.dtype).max
    x = np.clip(0.75 * y1.astype(np.float64) / peak + 0.25 * y2.astype(np.float64) / peak, 0, 1)
    out = np.round(x * peak).astype(y1.dtype)
    return out if out.ndim == 3 else out[:, :, None]


def assert_close(actual, expected, tolerance=1):
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    assert np.abs(actual.astype(np.int64) - expected.astype(np.int64)).max() <= tolerance


def defocused_pair(height: int, width: int, *, offset: int = 0, dtype=np.uint8):
    """Two shots of an H&E-like texture (skimage's immunohistochemistry image, tiled to size):
    one mildly and one strongly blurred, as at F - dD and F + dD around an off-centre focus."""
    tissue = np.roll(data.immunohistochemistry().astype(np.float32) / 255.0, offset, axis=(0, 1))
    reps = (-(-height // tissue.shape[0]), -(-width // tissue.shape[1]), 1)
    scene = np.tile(tissue, reps)[:height, :width]
    peak = np.iinfo(dtype).max
    shots = [gaussian_filter(scene, sigma=(s, s, 0)) for s in (1.2, 2.5)]
    return [np.clip(np.rint(s * peak), 0, peak).astype(dtype) for s in shots]


def fuse_request(tile_id: str, pair) -> pb.FuseRequest:
    return pb.FuseRequest(tile_id=tile_id, slide_id="slide-t", shot_a=encode_image(pair[0]),
                          shot_b=encode_image(pair[1]))
