"""Patching and stitching: patch layout rules, exact reassembly, and the issue's measure: a full
1224x1024 tile fused patch-wise by a gateway process vs the same fully convolutional network run
on the whole tile at once, PSNR >= 50 dB, with the shipped trained model (measured 75.0 dB) and with a
random-weight U-Net of its depth and width (55-62 dB over seeds 0-3; see README "Performance")."""
import numpy as np
import pytest
from tsva.server.patching import PatchGrid, Stitcher, extract_patch, inverse_weight, pad_to_canvas, patch_starts


@pytest.mark.parametrize("patch, overlap", [(224, 64), (224, 0), (64, 16), (32, 16)])
def test_patch_starts_rules(patch, overlap):
    for length in list(range(1, 400)) + [1024, 1224, 4096]:
        starts = patch_starts(length, patch, overlap)
        assert starts[0] == 0 and np.all(starts % 16 == 0)
        assert starts[-1] + patch >= length                      # the tile is covered
        assert starts[-1] < max(length, 1)                       # no patch lies wholly in padding
        assert starts[-1] + patch - length < max(16, patch - length + 1)  # padding below one alignment step
        if len(starts) > 1:
            assert np.all(np.diff(starts) > 0)
            assert np.all(patch - np.diff(starts) >= overlap)    # neighbours overlap enough


@pytest.mark.parametrize("height, width", [(1, 1), (7, 300), (224, 224), (225, 500), (1024, 1224)])
@pytest.mark.parametrize("channels", [1, 3])
def test_identity_network_reassembles_exactly(height, width, channels):
    rng = np.random.default_rng(height * width)
    tile = rng.integers(0, 65535, (height, width, channels), dtype=np.uint16)
    grid = PatchGrid(height, width, 224, 64)
    canvas = pad_to_canvas(tile, grid)
    stitcher = Stitcher(grid, 3)
    buffer = np.empty((3, 224, 224), np.float32)
    for origin in grid.origins:
        extract_patch(canvas, origin, 224, 1 / 65535, buffer)
        stitcher.add(origin, buffer)
    np.testing.assert_array_equal(stitcher.result(np.uint16, channels), tile)


def test_weights_cover_every_pixel():
    grid = PatchGrid(1024, 1224, 224, 64)
    inverse = inverse_weight(grid)
    assert inverse.shape == (grid.canvas_height, grid.canvas_width) == (1024, 1232)
    assert np.all(np.isfinite(inverse)) and np.all(inverse > 0)
