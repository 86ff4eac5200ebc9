"""The per-pair training distribution (sections, noise, stain): draws cover thin and thick sections,
pools record it and refuse another, checkpoints and the ONNX metadata carry it; a defocus-conditioned
network starts as its unconditioned source; the shipped ONNX model's weights import exactly."""
from __future__ import annotations

import pytest
from tsva.export.dataset import PairPool, build_pool
from tsva.export.distribution import SectionDistribution
from tsva.export.errors import TsvaExportError
from tsva.export.optics import Optics, Sample
from tsva.export.textures import load_textures, split_textures

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_pool_records_the_distribution_and_refuses_another(tmp_path):
    optics = Optics(defocus_um=(1.0, 2.0))
    textures = split_textures(load_textures(None, 0.25, 32))[0]
    pool = build_pool(textures, optics, Sample(), 4, 32, seed=0, progress=False, distribution=SectionDistribution())
    pool.save(tmp_path / "p.npz")
    loaded = PairPool.load(tmp_path / "p.npz")
    assert loaded.thickness_um.shape == (4,)
    loaded.check_simulated_with(optics, Sample(), "--pool p.npz", SectionDistribution())
    with pytest.raises(TsvaExportError, match="section distribution"):
        loaded.check_simulated_with(optics, Sample(), "--pool p.npz", None)
