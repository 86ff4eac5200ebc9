"""Simulated z-stacks and malformed stack files for the z-stack tests."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from tsva.export.optics import Optics, Sample
from tsva.export.textures import load_textures
from tsva.export.zstack import sidecar_of, simulate_stack, write_zstack


@pytest.fixture(scope="module")
def simulated():
    texture = load_textures(None, 0.25, 64)[0].image[100:164, 100:164]
    rng = np.random.default_rng(0)
    return simulate_stack(texture, Optics(), Sample(thickness_um=2.0, layers=3), rng, step_um=0.5, half_range_um=3.5)


def _planes(z=5, size=16, dtype=np.uint8):
    rng = np.random.default_rng(1)
    return rng.integers(0, 200, (z, size, size, 3)).astype(dtype)


def _bad(tmp_path, case):
    path = tmp_path / "bad.tif"
    if case == "no z":
        tifffile.imwrite(path, _planes(), photometric="rgb")
    elif case == "repeated z":
        tifffile.imwrite(path, _planes(), photometric="rgb")
        sidecar_of(path).write_text(json.dumps({"z_um": [0, 0.5, 0.5, 1.0, 1.5]}))
    elif case == "uneven z":
        tifffile.imwrite(path, _planes(), photometric="rgb")
        sidecar_of(path).write_text(json.dumps({"z_um": [0, 0.5, 1.0, 2.0, 2.5]}))
    elif case == "count":
        tifffile.imwrite(path, _planes(), photometric="rgb")
        sidecar_of(path).write_text(json.dumps({"z_um": [0, 0.5, 1.0]}))
    elif case in ("mixed size", "mixed type"):
        with tifffile.TiffWriter(path) as tif:
            tif.write(_planes(1)[0], photometric="rgb")
            tif.write(_planes(1, size=20)[0] if case == "mixed size" else _planes(1, dtype=np.uint16)[0],
                      photometric="rgb")
        sidecar_of(path).write_text(json.dumps({"z_um": [0, 0.5]}))
    elif case == "too short":
        write_zstack(path, _planes(5), [0, 0.5, 1.0, 1.5, 2.0], focus_z_um=1.0)
    elif case == "step":
        write_zstack(path, _planes(7), np.arange(7) * 0.4, focus_z_um=1.2)
    elif case == "not a tiff":
        path.write_bytes(b"not a tiff at all")
    return path
