"""Pools of simulated pairs: determinism, dD coverage, storage round trip, `tsva simulate`."""
from __future__ import annotations

from tsva.export.dataset import margin_px
from tsva.export.optics import Optics, Sample


def test_margin_covers_the_widest_psf():
    optics, sample = Optics(), Sample()
    assert margin_px(optics, sample) >= 3.0 * optics.numerical_aperture / 0.66 / optics.pixel_size_um
