"""Pools of simulated pairs: determinism, dD coverage, storage round trip, `tsva simulate`."""
from __future__ import annotations

import json

import numpy as np
import pytest
from tsva.export.dataset import PairPool, build_pool
from tsva.export.errors import TsvaExportError
from tsva.export.optics import Optics, Sample
from tsva.export.textures import load_textures, split_textures


def _train_textures():
    return split_textures(load_textures(None, 0.25, 64))[0]


def test_pool_is_deterministic_covers_every_dd_and_round_trips(tmp_path):
    optics = Optics(defocus_um=(1.0, 3.0))
    a = build_pool(_train_textures(), optics, Sample(), 4, 32, seed=3, progress=False)
    b = build_pool(_train_textures(), optics, Sample(), 4, 32, seed=3, progress=False)
    np.testing.assert_array_equal(a.y1, b.y1)
    np.testing.assert_array_equal(a.truth, b.truth)
    assert sorted(a.dd_um.tolist()) == [1.0, 1.0, 3.0, 3.0]
    assert a.y1.dtype == np.uint8 and a.y1.shape == (4, 3, 32, 32)
    a.save(tmp_path / "pool.npz")
    c = PairPool.load(tmp_path / "pool.npz")
    np.testing.assert_array_equal(c.y2, a.y2)
    np.testing.assert_array_equal(c.y1_defocus_um, a.y1_defocus_um)
    assert Optics.from_dict(c.simulation["optics"]) == optics and Sample(**c.simulation["sample"]) == Sample()


def test_a_pool_of_another_section_is_refused_by_name(tmp_path):
    optics = Optics(defocus_um=(1.0,))
    pool = build_pool(_train_textures(), optics, Sample(), 1, 32, seed=3, progress=False)
    pool.save(tmp_path / "pool.npz")
    loaded = PairPool.load(tmp_path / "pool.npz")
    loaded.check_simulated_with(optics, Sample(), "--pool p.npz")  # same settings: accepted
    with pytest.raises(TsvaExportError, match=r"--pool p.npz was simulated with sample.thickness_um = 4.0, not 1.0"):
        loaded.check_simulated_with(optics, Sample(thickness_um=1.0), "--pool p.npz")


def test_pools_simulated_in_parallel_concatenate_only_if_simulated_alike():
    optics = Optics(defocus_um=(1.0,))
    a = build_pool(_train_textures(), optics, Sample(), 2, 32, seed=1, progress=False)
    b = build_pool(_train_textures(), optics, Sample(), 1, 32, seed=2, progress=False)
    both = PairPool.concatenate([a, b])
    assert len(both) == 3 and both.simulation == a.simulation
    np.testing.assert_array_equal(both.y2[2], b.y2[0])
    thin = build_pool(_train_textures(), optics, Sample(thickness_um=1.0, layers=3), 1, 32, seed=2, progress=False)
    with pytest.raises(TsvaExportError, match="different optics or sections"):
        PairPool.concatenate([a, thin])


def test_simulate_command_writes_pngs_and_a_pool(tmp_path, capsys):
    from tsva.common.cli import main
    assert main(["simulate", "--pairs", "2", "--patch-size", "32", "-o", str(tmp_path / "png")]) == 0
    files = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert files == ["0000_truth.png", "0000_y1.png", "0000_y2.png", "0001_truth.png", "0001_y1.png",
                     "0001_y2.png", "pairs.json"]
    assert json.loads((tmp_path / "png" / "pairs.json").read_text())["optics"]["numerical_aperture"] == 0.75
    assert main(["simulate", "--pairs", "2", "--patch-size", "32", "--pool", str(tmp_path / "p.npz")]) == 0
    assert len(PairPool.load(tmp_path / "p.npz")) == 2
    capsys.readouterr()  # the progress bars so far
    assert main(["simulate", "--pairs", "0"]) == 2
    assert capsys.readouterr().err.strip() == "tsva simulate: --pairs must be >= 1, got 0"
