"""Training pairs as two chosen planes of a through-focus stack: the simulator renders a stack and
takes its pair, real z-stacks go through the same `stack_pair`. The reference functions below are
the pair-shaped simulator and z-stack pair cutter as they were before stacks existed, kept verbatim
(over the simulator's public primitives) so the stack path is checked bit for bit against them."""
from __future__ import annotations

import math

import numpy as np
import pytest
from tsva.export.optics import (
    Optics,
    PlaneStack,
    Sample,
    _layer_masks,
    add_sensor_noise,
    draw_specimen,
    image_at,
    render_stack,
    sharpness,
    simulate_pair,
    stack_pair,
)
from tsva.export.zstack import ZStack, build_stack_pool, simulate_stack

OPTICS = Optics(defocus_um=(0.5, 1.0, 1.5))


def _texture(size=24, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(0.55 + 0.3 * rng.standard_normal((size, size, 3)), 0, 1)


def _reference_simulate_pair(texture, optics, sample, dd_um, rng, focus_offset_um=None):
    """The two-plane simulator before stacks: n, layer masks, truth, then the two noisy shots."""
    texture = np.asarray(texture, dtype=np.float64)
    n = rng.normal(0.0, optics.focus_sigma_um) if focus_offset_um is None else float(focus_offset_um)
    masks = _layer_masks(texture.shape[:2], sample, rng)
    depths = (np.linspace(-0.5, 0.5, sample.layers) * sample.thickness_um if sample.layers > 1
              else np.zeros(1))
    truth = image_at(texture, masks, depths, optics, 0.0)
    planes = (-dd_um - n, dd_um - n)
    shots = [add_sensor_noise(image_at(texture, masks, depths, optics, p), sample, rng) for p in planes]
    order = (0, 1) if sharpness(shots[0]) >= sharpness(shots[1]) else (1, 0)
    f32 = lambda a: np.clip(a, 0, 1).astype(np.float32)  # noqa: E731
    return (f32(shots[order[0]]), f32(shots[order[1]]), f32(truth), float(dd_um), float(n),
            float(planes[order[0]]), float(planes[order[1]]))


@pytest.mark.parametrize("seed,dd,offset,sample", [
    (0, 0.5, None, Sample(layers=3, thickness_um=2.0)),
    (1, 1.5, 0.7, Sample()),
    (2, 1.0, None, Sample(layers=1, thickness_um=0.0)),
])
def test_simulated_pair_is_bit_identical_to_the_two_plane_simulator(seed, dd, offset, sample):
    texture = _texture(seed=seed)
    new = simulate_pair(texture, OPTICS, sample, dd, np.random.default_rng(seed), focus_offset_um=offset)
    old = _reference_simulate_pair(texture, OPTICS, sample, dd, np.random.default_rng(seed), focus_offset_um=offset)
    for name, want in zip(("y1", "y2", "truth"), old[:3]):
        got = getattr(new, name)
        assert got.dtype == want.dtype and np.array_equal(got, want), name
    assert (new.dd_um, new.focus_offset_um, new.y1_defocus_um, new.y2_defocus_um) == old[3:]


def test_the_pair_of_a_rendered_stack_has_the_requested_planes_dd_and_offset():
    rng = np.random.default_rng(5)
    specimen = draw_specimen(_texture(), Sample(layers=3, thickness_um=2.0), rng)
    z = np.arange(-6, 7) * 0.25   # a 13-plane stack around the true focus
    stack = render_stack(specimen, OPTICS, Sample(layers=3, thickness_um=2.0), z, rng)
    assert stack.planes.shape == (13, 24, 24, 3) and stack.truth.shape == (24, 24, 3)
    dd, n = 1.0, 0.25            # planes at -dD - n and +dD - n: z = -1.25 (index 1), 0.75 (index 9)
    a, b = int(np.argmin(np.abs(z - (-dd - n)))), int(np.argmin(np.abs(z - (dd - n))))
    pair = stack_pair(stack, a, b, dd, n)
    assert {pair.y1_defocus_um, pair.y2_defocus_um} == {-1.25, 0.75}
    assert pair.y2_defocus_um - pair.y1_defocus_um in (2 * dd, -2 * dd)
    assert -(pair.y1_defocus_um + pair.y2_defocus_um) / 2 == n and pair.dd_um == dd
    y1_index = a if pair.y1_defocus_um == z[a] else b
    assert np.array_equal(pair.y1, stack.planes[y1_index].astype(np.float32))
    assert sharpness(pair.y1) >= sharpness(pair.y2)
    assert np.array_equal(pair.truth, stack.truth.astype(np.float32))
    win = (slice(4, 20), slice(2, 18))
    cut = stack_pair(stack, a, b, dd, n, win)
    assert cut.y1.shape == (16, 16, 3) and np.array_equal(cut.truth, pair.truth[win])


def test_simulated_stack_draws_in_the_order_it_always_did():
    """simulate_stack (the z-stacks `tsva simulate --zstacks-out` writes): masks, the stage zero,
    then each plane's noise; bit for bit what it wrote before stacks were shared."""
    texture, sample = _texture().astype(np.float32), Sample(layers=3, thickness_um=2.0)
    planes, z, focus = simulate_stack(texture, OPTICS, sample, np.random.default_rng(3), 0.5, 1.5)
    rng = np.random.default_rng(3)
    masks = _layer_masks(texture.shape[:2], sample, rng)
    depths = np.linspace(-0.5, 0.5, sample.layers) * sample.thickness_um
    k = int(math.ceil(1.5 / 0.5 - 1e-9))
    offsets = np.arange(-k, k + 1) * 0.5
    z0 = float(np.round(rng.uniform(5, 50) / 0.5) * 0.5)
    want = np.stack([add_sensor_noise(image_at(texture, masks, depths, OPTICS, float(o)), sample, rng)
                     for o in offsets]).astype(np.float32)
    assert np.array_equal(planes, want) and np.array_equal(z, z0 + offsets) and focus == z0


def _reference_stack_pool_rows(stacks, dd_values, pairs, patch, sigma_um, seed):
    """The z-stack pair cutter before stacks were shared with the simulator."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(pairs):
        s = stacks[i % len(stacks)]
        d = dd_values[(i // len(stacks)) % len(dd_values)]
        a, b, _ = s.shots_for(d, sigma_um, rng)
        h, w = s.planes.shape[1:3]
        y, x = rng.integers(0, h - patch + 1), rng.integers(0, w - patch + 1)
        win = (slice(y, y + patch), slice(x, x + patch))
        shots = [s.planes[a][win], s.planes[b][win]]
        order = (0, 1) if sharpness(shots[0]) >= sharpness(shots[1]) else (1, 0)
        planes = (a, b)
        rows.append((np.round(shots[order[0]].transpose(2, 0, 1) * 255).astype(np.uint8),
                     np.round(shots[order[1]].transpose(2, 0, 1) * 255).astype(np.uint8),
                     s.planes[s.focus_index][win].transpose(2, 0, 1).astype(np.float16),
                     np.float32(s.z_um[planes[order[0]]] - s.z_um[s.focus_index])))
    return rows


def test_real_stack_pairs_are_bit_identical_to_the_former_cutter():
    rng = np.random.default_rng(9)
    stacks = []
    for i in range(2):
        planes, z, focus = simulate_stack(_texture(seed=i).astype(np.float32), OPTICS, Sample(layers=2), rng,
                                          0.5, 2.0)
        stacks.append(ZStack(f"s{i}.ome.tif", planes, z, int(np.argmin(np.abs(z - focus))), True))
    pool = build_stack_pool(stacks, (0.5, 1.0), 6, 16, 1.0, seed=4)
    rows = _reference_stack_pool_rows(stacks, (0.5, 1.0), 6, 16, 1.0, seed=4)
    for i, (y1, y2, truth, defocus) in enumerate(rows):
        assert np.array_equal(pool.y1[i], y1) and np.array_equal(pool.y2[i], y2)
        assert np.array_equal(pool.truth[i], truth) and pool.y1_defocus_um[i] == defocus
    assert list(pool.dd_um) == [0.5, 0.5, 1.0, 1.0, 0.5, 0.5]


def test_a_stack_without_a_rendered_truth_still_gives_its_planes():
    rng = np.random.default_rng(1)
    stack = render_stack(draw_specimen(_texture(), Sample(layers=1), rng), OPTICS, Sample(layers=1), (0.0, 1.0),
                         rng, with_truth=False)
    assert isinstance(stack, PlaneStack) and stack.truth is None and stack.planes.shape[0] == 2
