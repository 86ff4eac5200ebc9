"""Brenner gradient: hand-computed cases, the pitfall variants it must not be, the z-stack search,
and the same figures as the gateway returns them over real gRPC (Fuse and FindFocus)."""
import numpy as np
import pytest
from tsva.common.brenner import brenner, refine_peak

ROW = np.array([[1, 2, 4, 8]], dtype=np.uint8)  # one grey row


def test_hand_computed_row():
    # (I(x+2) - I(x))^2 over x = 0, 1: (4-1)^2 + (8-2)^2 = 9 + 36
    assert brenner(ROW) == 45.0


def test_not_second_order_difference():
    # The second-order variant (I(x+2) - 2 I(x+1) + I(x))^2 gives (4-4+1)^2 + (8-8+2)^2 = 5.
    assert brenner(ROW) != 5.0


def test_not_one_sided_clip():
    # Clipping negative differences to 0 would score a falling edge 0; Brenner squares both signs.
    assert brenner(ROW[:, ::-1].copy()) == 45.0


def test_no_unsigned_wrap_around():
    # uint8 arithmetic would wrap (10 - 200) to 66: 66^2 = 4356 instead of 190^2 = 36100.
    assert brenner(np.array([[200, 0, 10]], np.uint8)) == 36100.0


def test_horizontal_step_only():
    # Differences along columns (x), not rows: a purely vertical ramp scores 0.
    vertical = np.repeat(np.arange(6, dtype=np.uint8)[:, None] * 40, 5, axis=1)
    assert brenner(vertical) == 0.0
    # transposed: 5 rows of 0, 40, ..., 200; 4 pairs per row, each differing by 80
    assert brenner(vertical.T.copy()) == 5 * 4 * 80 ** 2


def test_rgb_uses_luminance():
    # Luminance 0.299 R + 0.587 G + 0.114 B; a pure-green step of 100 -> luma step 58.7.
    image = np.zeros((1, 3, 3), np.uint8)
    image[0, 2, 1] = 100
    assert brenner(image) == pytest.approx(58.7 ** 2, rel=1e-6)


def test_uint16_large_sum_exact_enough():
    image = np.zeros((4096, 4096), np.uint16)
    image[:, (np.arange(4096) // 2) % 2 == 0] = 65535  # columns 1,1,0,0,1,1,0,0,...
    # so every pixel with x+2 in range differs by 65535 from its neighbour two columns right
    assert brenner(image) == pytest.approx(4096 * 4094 * 65535.0 ** 2, rel=1e-9)


def test_constant_and_narrow_images_score_zero():
    assert brenner(np.full((8, 8, 3), 200, np.uint8)) == 0.0
    assert brenner(np.zeros((4, 2), np.uint8)) == 0.0


def _exact_rgb_brenner(image: np.ndarray) -> float:
    """The definition in int64: (1000 x BT.601 luminance) differences at step 2, squared, summed."""
    milli = image.astype(np.int64) @ np.array([299, 587, 114])
    diff = milli[:, 2:] - milli[:, :-2]
    return float((diff * diff).sum()) / 1e6


@pytest.mark.parametrize("shape", [(1, 3, 3), (7, 5, 3), (65, 130, 3), (1024, 1224, 3)])
def test_rgb8_matches_the_exact_integer_definition(shape):
    # The uint8 RGB path sums its luminance in float32: exact because every sum is an integer < 2**24.
    image = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    assert brenner(image) == _exact_rgb_brenner(image)
    view = image[:, ::-1]  # not contiguous: scored the same as its copy
    assert brenner(view) == _exact_rgb_brenner(np.ascontiguousarray(view))


def test_refine_peak_parabola():
    z = np.array([-1.0, 0.0, 1.0, 2.0])
    scores = -(z - 0.3) ** 2 + 10
    assert refine_peak(z, scores, 1) == pytest.approx(0.3)
    uneven = np.array([0.0, 0.5, 2.0])
    assert refine_peak(uneven, -(uneven - 0.8) ** 2, 1) == pytest.approx(0.8)


def test_refine_peak_edges_and_flat():
    z = np.array([0.0, 1.0, 2.0])
    assert refine_peak(z, np.array([3.0, 2.0, 1.0]), 0) == 0.0
    assert refine_peak(z, np.array([1.0, 1.0, 1.0]), 1) == 1.0
