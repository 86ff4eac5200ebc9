"""Per-tile focus QC: the gateway's depth-from-defocus estimate of a tile's focus offset n.

Pairs with a known n come from the project's optics simulator (tsva-export), a single thin layer
(the tiny test model's metadata names no section, so the estimator models one layer too)."""
from __future__ import annotations

import numpy as np
import pytest
from tsva.server import focus_qc
from tsva.server.focus_qc import FocusEstimator, FocusOptics

from tests.support.focus import OPTICS, optics_mod, shots, specimen  # noqa: F401 (fixtures)


def test_bessel_j0_matches_scipy():
    from scipy import special
    x = np.linspace(0, 60, 3001)
    assert np.abs(focus_qc.bessel_j0(x) - special.j0(x)).max() < 1e-6


@pytest.mark.parametrize("z", [0.0, 1.0, 2.5])
def test_otf_matches_the_simulators_psf(z):
    """The tabulated OTF against the FFT of the simulator's PSF kernel (its pixel MTF divided out)."""
    size, px = 256, 0.25
    kernel = optics_mod.psf(optics_mod.Optics(), 0.53, z)
    padded = np.zeros((size, size))
    half = kernel.shape[0] // 2
    padded[: kernel.shape[0], : kernel.shape[0]] = kernel
    padded = np.roll(padded, (-half, -half), (0, 1))
    freqs = np.arange(1, 64) / (size * px)                 # up to half the Nyquist frequency
    simulated = np.fft.fft2(padded).real[0, 1:64] / np.sinc(freqs * px)
    ours = focus_qc.defocus_otf(OPTICS, 0.53, np.array([z]), freqs)[0]
    assert np.abs(ours - simulated).max() < 0.02


def test_rescan_outside_the_trained_range(specimen):
    a, b = shots(specimen, 3.2, 1.0)
    estimate = FocusEstimator(OPTICS).estimate(a, b, -1.0, 1.0)
    assert estimate.rescan and "outside the trained +-2 um" in estimate.reason
    a, b = shots(specimen, 0.0, 2.5)
    estimate = FocusEstimator(OPTICS).estimate(a, b, -2.5, 2.5)
    assert estimate.rescan and "dD 2.5 um outside the trained 0.5..1.5 um" in estimate.reason


def test_no_estimate_without_texture_or_offsets(specimen):
    rng = np.random.default_rng(1)
    glass = [np.clip(240 + rng.normal(0, 3, (256, 256, 3)), 0, 255).astype(np.uint8) for _ in range(2)]
    estimate = FocusEstimator(OPTICS).estimate(*glass, -1.0, 1.0)
    assert estimate.focus_offset_um is None and not estimate.rescan and "texture" in estimate.reason
    a, b = shots(specimen, 0.5, 1.0)
    estimate = FocusEstimator(OPTICS).estimate(a, b, 0.0, 0.0)
    assert estimate.focus_offset_um is None and "defocus_a_um and defocus_b_um are equal" in estimate.reason


def test_optics_from_metadata_reads_the_trained_range_and_section():
    meta = {"optics.numerical_aperture": "0.75", "optics.refractive_index": "1", "optics.pixel_size_um": "0.25",
            "optics.wavelengths_um": "0.61,0.53,0.47", "optics.defocus_um": "0.5,1,1.5,2,2.5,3",
            "optics.focus_sigma_um": "1", "sample.thickness_um": "4", "sample.layers": "5"}
    optics = FocusOptics.from_metadata(meta)
    assert optics.focus_range_um == 2.0 and optics.defocus_um[-1] == 3.0
    assert list(optics.layer_depths_um) == [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert FocusOptics.from_metadata({"optics.defocus_um": "1"}) is None
    # A model trained on a distribution of sections has no single one: the routine 4-um cut.
    mixed = {k: v for k, v in meta.items() if not k.startswith("sample.")}
    mixed["sample.distribution"] = "25% single thin plane, else 0.5-5 um"
    assert list(FocusOptics.from_metadata(mixed).layer_depths_um) == [-2.0, -1.0, 0.0, 1.0, 2.0]


def test_ring_spectra_of_a_window_stack_are_the_sums_of_each_windows_full_plane_rings():
    """The batched half-plane spectra equal, window by window, ring sums of the full 2-D FFT."""
    rng = np.random.default_rng(3)
    size, channels = 64, 3
    a, b = rng.random((2, 4, channels, size, size))
    got = focus_qc.ring_spectra(a, b, channels)
    k1 = np.fft.fftfreq(size) * size
    rings = np.rint(np.hypot(k1[:, None], k1[None, :])).astype(int).ravel()
    inside = rings < size // 2
    window = np.hanning(size)[:, None] * np.hanning(size)[None, :]
    want = np.zeros_like(got)
    for w in range(4):
        fa, fb = (np.fft.fft2((x[w] - x[w].mean(axis=(1, 2), keepdims=True)) * window).reshape(channels, -1)
                  for x in (a, b))
        for i, power in enumerate(((fa * fa.conj()).real, (fb * fb.conj()).real, (fa * fb.conj()).real)):
            for c in range(channels):
                want[i, c] += np.bincount(rings[inside], power[c][inside], size // 2)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-8)
    single = focus_qc.ring_spectra(a[0].transpose(1, 2, 0), b[0].transpose(1, 2, 0), channels)
    np.testing.assert_allclose(single, focus_qc.ring_spectra(a[:1], b[:1], channels), rtol=1e-12)
