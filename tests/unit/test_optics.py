"""Optics simulator: PSF invariants, an independent quadrature, layered DOF, noise, determinism."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, special
from skimage import data
from tsva.common.brenner import brenner
from tsva.export.errors import OpticsError
from tsva.export.optics import Optics, Sample, add_sensor_noise, image_at, psf, radial_psf_profile, simulate_pair

OPTICS = Optics()


@pytest.mark.parametrize("wavelength", OPTICS.wavelengths_um)
@pytest.mark.parametrize("defocus", [0.0, 0.5, -1.5, 3.0, 5.0])
def test_psf_sums_to_one_and_is_radially_symmetric(wavelength, defocus):
    kernel = psf(OPTICS, wavelength, defocus)
    assert kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1
    assert kernel.sum() == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(kernel, kernel.T, atol=1e-12)
    np.testing.assert_allclose(kernel, np.rot90(kernel), atol=1e-12)
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1], atol=1e-12)
    # Pixels at the same distance from the centre (3,4,5 triangle) carry the same energy.
    c = kernel.shape[0] // 2
    assert kernel[c + 5, c] == pytest.approx(kernel[c + 3, c + 4], rel=0.05)


def test_psf_is_defocus_sign_symmetric_and_spreads_with_defocus():
    np.testing.assert_allclose(psf(OPTICS, 0.53, 2.0), psf(OPTICS, 0.53, -2.0), atol=1e-12)
    peaks = [psf(OPTICS, 0.53, z).max() for z in (0.0, 1.0, 2.0, 3.0)]
    assert all(a > b for a, b in zip(peaks, peaks[1:]))


def _independent_profile(r_um, lam, z, na, n):
    """Born & Wolf by adaptive quadrature (scipy.integrate.quad), real and imaginary parts apart."""
    v = 2 * np.pi * na * r_um / lam
    u = 2 * np.pi * na ** 2 * z / (n * lam)
    re = integrate.quad(lambda p: special.j0(v * p) * np.cos(0.5 * u * p * p) * p, 0, 1, limit=400, epsabs=1e-13)[0]
    im = integrate.quad(lambda p: special.j0(v * p) * np.sin(0.5 * u * p * p) * p, 0, 1, limit=400, epsabs=1e-13)[0]
    return re * re + im * im


@pytest.mark.parametrize("lam,z", [(0.61, 0.0), (0.53, 1.0), (0.47, 3.0), (0.47, 6.0)])
def test_radial_profile_matches_independent_quadrature_within_one_percent(lam, z):
    r = np.linspace(0, 4.0, 41)
    ours = radial_psf_profile(r, lam, z, OPTICS.numerical_aperture, OPTICS.refractive_index)
    ref = np.array([_independent_profile(x, lam, z, OPTICS.numerical_aperture, OPTICS.refractive_index) for x in r])
    # Relative to the peak: within 1% everywhere (and the in-focus peak is exactly 1/4 = (1/2)^2).
    assert np.max(np.abs(ours - ref)) <= 0.01 * ref.max()
    if z == 0:
        assert ours[0] == pytest.approx(0.25, rel=1e-9)


def test_psf_matches_a_much_finer_quadrature_within_one_percent():
    coarse = psf(OPTICS, 0.47, 3.0)
    fine = psf(OPTICS, 0.47, 3.0, supersample=5, nodes=1024)
    assert np.max(np.abs(coarse - fine)) <= 0.01 * fine.max()


@pytest.mark.parametrize("kwargs,field", [
    (dict(numerical_aperture=1.2, refractive_index=1.0), "numerical_aperture"),
    (dict(numerical_aperture=1.0, refractive_index=1.0), "numerical_aperture"),
    (dict(pixel_size_um=-0.25), "pixel_size_um"),
    (dict(pixel_size_um=0.0), "pixel_size_um"),
    (dict(wavelengths_um=(0.61, -0.5)), "wavelengths_um"),
    (dict(defocus_um=(0.0,)), "defocus_um"),
    (dict(refractive_index=0.5), "refractive_index"),
    (dict(focus_sigma_um=-1), "focus_sigma_um"),
])
def test_impossible_optics_are_refused_with_the_field_named(kwargs, field):
    with pytest.raises(OpticsError, match=field):
        Optics(**kwargs)


def _texture(size=96):
    return data.immunohistochemistry()[100:100 + size, 100:100 + size].astype(np.float64) / 255


def test_simulation_is_deterministic_per_seed():
    t = _texture()
    a = simulate_pair(t, OPTICS, Sample(), 2.0, np.random.default_rng(7))
    b = simulate_pair(t, OPTICS, Sample(), 2.0, np.random.default_rng(7))
    c = simulate_pair(t, OPTICS, Sample(), 2.0, np.random.default_rng(8))
    for name in ("y1", "y2", "truth"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.focus_offset_um == b.focus_offset_um != c.focus_offset_um
    assert not np.array_equal(a.y1, c.y1)


def test_pair_is_ordered_by_brenner_and_quantised_truth_is_not():
    pair = simulate_pair(_texture(), OPTICS, Sample(), 1.5, np.random.default_rng(3), focus_offset_um=0.7)
    assert brenner(pair.y1) >= brenner(pair.y2)
    # Shots at -dD - n and +dD - n; the one nearer focus (|0.8| vs |-2.2|) is the sharper one here.
    assert sorted([pair.y1_defocus_um, pair.y2_defocus_um]) == pytest.approx([-2.2, 0.8])
    assert pair.y1_defocus_um == pytest.approx(0.8)
    levels = pair.y1 * 255
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)   # 8-bit camera
    assert not np.allclose(pair.truth * 255, np.round(pair.truth * 255), atol=1e-3)  # noise-free truth


def test_truth_is_the_noise_free_image_at_focus():
    t = _texture(64)
    masks = np.ones((1, 64, 64))
    sharp = image_at(t, masks, np.zeros(1), OPTICS, 0.0)
    blurred = image_at(t, masks, np.zeros(1), OPTICS, 3.0)
    assert brenner(sharp) > 2 * brenner(blurred)
    # A layer 2 um deep is in focus when the focal plane is at 2 um.
    np.testing.assert_allclose(image_at(t, masks, np.array([2.0]), OPTICS, 2.0), sharp, atol=1e-12)


def test_in_a_thick_section_each_shot_sees_other_layers_sharp():
    """Why two shots carry more than one: stain 2 um above the middle is sharp in the upper shot and
    blurred in the lower one, and the other way round for stain 2 um below."""
    t = _texture(96)
    upper = np.zeros((2, 96, 96))
    upper[0, :, :48] = upper[1, :, 48:] = 1.0        # left half in the upper layer, right half in the lower
    depths = np.array([2.0, -2.0])
    above, below = (image_at(t, upper, depths, OPTICS, plane) for plane in (2.0, -2.0))
    left, right = np.s_[8:88, 8:40], np.s_[8:88, 56:88]
    assert brenner(above[left]) > 2 * brenner(below[left])
    assert brenner(below[right]) > 2 * brenner(above[right])


def test_sensor_noise_is_poisson_gaussian_and_eight_bit():
    rng = np.random.default_rng(0)
    flat = np.full((200, 200, 3), 0.5)
    noisy = add_sensor_noise(flat, Sample(photons_at_white=1000, read_noise=0.0), rng)
    assert noisy.std() == pytest.approx(np.sqrt(0.5 * 1000) / 1000, rel=0.1)
    assert set(np.unique(np.round(noisy * 255, 6))) <= set(np.arange(256.0))
