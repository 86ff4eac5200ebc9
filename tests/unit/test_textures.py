"""Textures: loading, every bad-input case with a clear message, rescaling, split, augmentation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tsva.export.errors import TextureError
from tsva.export.textures import augment, load_textures, pixel_size_from_name, split_textures, stain_jitter

from tests.support.textures import _write, he  # noqa: F401 (fixtures)


def test_folder_is_split_by_whole_image(tmp_path, he):
    _write(tmp_path / "a_0.25um.png", he[:200, :200])
    _write(tmp_path / "b_0.25um.png", he[200:400, :200])
    _write(tmp_path / "c_0.25um.png", he[:200, 200:400])
    textures = load_textures(tmp_path, 0.25, 64)
    train, val = split_textures(textures)
    assert [t.name for t in val] == ["c_0.25um.png"] and len(train) == 2
    train, val = split_textures(textures, ["a_0.25um.png"])
    assert [t.name for t in val] == ["a_0.25um.png"]
    with pytest.raises(TextureError, match="nope.png"):
        split_textures(textures, ["nope.png"])


def test_pixel_size_is_read_from_the_name():
    assert pixel_size_from_name(Path("cmu1_small_region_0.5um.png"), 1.0) == 0.5
    assert pixel_size_from_name(Path("slide.png"), 0.4) == 0.4


def test_opaque_rgba_is_accepted_as_rgb(tmp_path, he):
    rgba = np.dstack([he[:128, :128], np.full((128, 128), 255, np.uint8)])
    _write(tmp_path / "x_0.25um.png", rgba)
    assert load_textures(tmp_path, 0.25, 64)[0].image.shape == (128, 128, 3)


@pytest.mark.parametrize("case,message", [
    ("empty", "no images"),
    ("not_a_dir", "not a directory"),
    ("unreadable", "unreadable"),
    ("gray", "grayscale"),
    ("transparent", "transparent"),
    ("small", "smaller than a training patch"),
])
def test_bad_textures_give_a_clear_error(tmp_path, he, case, message):
    folder = tmp_path / "tex"
    folder.mkdir()
    if case == "not_a_dir":
        folder = tmp_path / "missing"
    elif case == "unreadable":
        (folder / "broken.png").write_bytes(b"not a png at all")
    elif case == "gray":
        _write(folder / "g.png", he[..., 0])
    elif case == "transparent":
        _write(folder / "t.png", np.dstack([he, np.zeros(he.shape[:2], np.uint8)]))
    elif case == "small":
        _write(folder / "s_0.25um.png", he[:40, :40])
    with pytest.raises(TextureError, match=message):
        load_textures(folder, 0.25, 64)


def test_augmentation_keeps_shape_and_range_and_is_seeded(he):
    image = he[:64, :96].astype(np.float32) / 255
    a = augment(image, np.random.default_rng(5))
    b = augment(image, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert a.shape in ((64, 96, 3), (96, 64, 3)) and 0 <= a.min() and a.max() <= 1


def test_stain_jitter_changes_colour_but_not_structure(he):
    image = he[:64, :64].astype(np.float32) / 255
    jittered = stain_jitter(image, np.random.default_rng(1), 0.05)
    assert not np.allclose(jittered, image, atol=1e-3)
    assert np.corrcoef(jittered[..., 0].ravel(), image[..., 0].ravel())[0, 1] > 0.9
