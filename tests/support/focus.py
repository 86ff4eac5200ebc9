"""Shots of a known focus offset from the simulator, for the focus QC tests."""
from __future__ import annotations

import numpy as np
import pytest
from tsva.server.focus_qc import FocusOptics

optics_mod = pytest.importorskip("tsva.export.optics")  # the simulator is the training side

OPTICS = FocusOptics(0.75, 1.0, 0.25, (0.61, 0.53, 0.47), (0.5, 1.0, 1.5), 1.0)


@pytest.fixture(scope="module")
def specimen():
    # The packaged H&E fields (tsva/export/data/he), rescaled to the optics' 0.25 um/px.
    from tsva.export.textures import load_textures
    return load_textures(None, 0.25, 320)[0].image[:320, :320]


def shots(specimen, n_um, dd_um, seed=0):
    """Shots A and B at -dD and +dD from F of a thin section whose focus is F + n, as uint8."""
    optics, sample = optics_mod.Optics(defocus_um=(0.5, 1.0, 1.5)), optics_mod.Sample(layers=1)
    rng = np.random.default_rng(seed)
    masks = np.ones((1, *specimen.shape[:2]))
    out = []
    for d in (-dd_um, dd_um):
        image = optics_mod.image_at(specimen, masks, np.zeros(1), optics, d - n_um)
        out.append(np.round(optics_mod.add_sensor_noise(image, sample, rng) * 255).astype(np.uint8))
    return out
