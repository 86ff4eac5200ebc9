"""The pool file's format version: written on save, absent in pools saved before versions were
written (read as version 1), and a version this tsva does not know is one clear error naming the
file and the field."""
from __future__ import annotations

import json

import numpy as np
import pytest
from tsva.export.dataset import FORMAT_VERSION, PairPool, PoolFormatError
from tsva.export.errors import TsvaExportError


def _pool(n=3, p=8):
    rng = np.random.default_rng(0)
    return PairPool(rng.integers(0, 255, (n, 3, p, p), dtype=np.uint8), rng.integers(0, 255, (n, 3, p, p), dtype=np.uint8),
                    rng.random((n, 3, p, p)).astype(np.float16), np.array([0.5, 1.0, 1.5], np.float32),
                    np.array([-0.7, 0.2, -1.1], np.float32), {"optics": {"numerical_aperture": 0.75}},
                    np.array([4.0, 0.0, 2.5], np.float32))


def _version_1_file(path, pool):
    """A pool exactly as tsva wrote it before the format version existed (no format_version key)."""
    np.savez(path, y1=pool.y1, y2=pool.y2, truth=pool.truth, dd_um=pool.dd_um, y1_defocus_um=pool.y1_defocus_um,
             simulation=np.array(json.dumps(pool.simulation)), thickness_um=pool.thickness_um)
    return path


def _same(a: PairPool, b: PairPool):
    for f in PairPool.pair_fields():
        assert np.array_equal(getattr(a, f.name), getattr(b, f.name)), f.name
        assert getattr(a, f.name).dtype == getattr(b, f.name).dtype, f.name
    assert a.simulation == b.simulation


def test_a_saved_pool_records_its_version_and_reads_back_the_same(tmp_path):
    pool = _pool()
    pool.save(tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz") as z:
        assert int(z["format_version"]) == FORMAT_VERSION == 1
        assert sorted(z.files) == sorted([f.name for f in PairPool.pair_fields()] + ["simulation", "format_version"])
    _same(PairPool.load(tmp_path / "p.npz"), pool)


def test_a_pool_without_a_version_reads_as_version_1(tmp_path):
    pool = _pool()
    _same(PairPool.load(_version_1_file(tmp_path / "old.npz", pool)), pool)


def test_an_older_pool_without_the_optional_fields_reads_them_as_unknown(tmp_path):
    pool = _pool()
    np.savez(tmp_path / "oldest.npz", y1=pool.y1, y2=pool.y2, truth=pool.truth, dd_um=pool.dd_um)
    loaded = PairPool.load(tmp_path / "oldest.npz")
    assert loaded.y1_defocus_um is None and loaded.thickness_um is None and loaded.simulation is None
    assert len(loaded) == 3 and np.array_equal(loaded.y1, pool.y1)


@pytest.mark.parametrize("value,shown", [(np.array(2), "version 2 is not one this tsva reads (1)"),
                                         (np.array(0), "version 0 is not one this tsva reads (1)"),
                                         (np.array("1"), "expected an integer")])
def test_an_unknown_version_is_refused_naming_the_file_and_the_field(tmp_path, value, shown):
    path = _version_1_file(tmp_path / "future.npz", _pool())
    with np.load(path) as z:
        arrays = dict(z)
    np.savez(path, **arrays, format_version=value)
    with pytest.raises(PoolFormatError) as err:
        PairPool.load(path)
    message = str(err.value)
    assert str(path) in message and "field format_version" in message and shown in message
    assert isinstance(err.value, TsvaExportError)  # the verbs report it as one line, exit 2


def test_a_pool_missing_a_required_field_names_it(tmp_path):
    pool = _pool()
    np.savez(tmp_path / "broken.npz", y1=pool.y1, y2=pool.y2, dd_um=pool.dd_um)
    with pytest.raises(PoolFormatError, match=r"broken\.npz: field truth: missing"):
        PairPool.load(tmp_path / "broken.npz")


def test_subset_and_concatenate_keep_every_field():
    pool = _pool()
    both = PairPool.concatenate([pool, pool.subset([2, 0])])
    assert len(both) == 5 and list(both.dd_um) == [0.5, 1.0, 1.5, 1.5, 0.5]
    assert list(both.thickness_um) == [4.0, 0.0, 2.5, 2.5, 4.0] and both.simulation == pool.simulation
    assert PairPool.concatenate([pool, PairPool(pool.y1, pool.y2, pool.truth, pool.dd_um)]).y1_defocus_um is None
