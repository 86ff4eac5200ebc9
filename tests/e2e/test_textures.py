"""Textures: loading, every bad-input case with a clear message, rescaling, split, augmentation."""
from __future__ import annotations

import subprocess
import sys

import pytest
from tsva.export.textures import load_textures, split_textures

from tests.support.textures import _write, he  # noqa: F401 (fixtures)


def test_default_textures_are_the_packaged_he_fields_rescaled_and_split_by_image():
    textures = load_textures(None, pixel_size_um=0.25, min_size=64)
    assert [t.name for t in textures] == ["torchstain_source.png", "torchstain_target.png"]
    assert textures[0].image.shape == (876, 1168, 3)  # 584x438 px at 0.5 -> 0.25 um/px
    train, val = split_textures(textures)
    assert [t.name for t in train] == ["torchstain_source.png"] and [t.name for t in val] == ["torchstain_target.png"]
    # H&E (pink and purple, not the brown DAB of IHC): green is the most absorbed channel.
    mean = textures[0].image.reshape(-1, 3).mean(0)
    assert mean[0] > mean[1] and mean[2] > mean[1]


def test_a_single_image_is_split_into_disjoint_parts(tmp_path, he):
    _write(tmp_path / "only_0.5um.png", he)
    textures = load_textures(tmp_path, pixel_size_um=0.25, min_size=64)
    assert len(textures) == 1 and textures[0].image.shape == (1024, 1024, 3)  # 512 px at 0.5 -> 0.25 um/px
    train, val = split_textures(textures)
    assert train[0].image.shape[1] + val[0].image.shape[1] == 1024
    assert train[0].name.endswith("[train]") and val[0].name.endswith("[val]")


@pytest.mark.slow
def test_bad_texture_folder_through_the_cli_is_one_clear_line(tmp_path):
    """The real `tsva` entry point in a subprocess: exit status 2, one line, no traceback."""
    (tmp_path / "empty").mkdir()
    done = subprocess.run([sys.executable, "-m", "tsva.common.cli", "simulate", "--textures",
                           str(tmp_path / "empty"), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [f"tsva simulate: --textures {tmp_path / 'empty'}: no images "
                                                "(.bmp, .jpeg, .jpg, .png, .tif, .tiff) in it"]
