"""Real z-stacks: files round-trip (simulated, written, read back: same planes and z), every bad
stack is one line naming the file and the field (exit 2 through the CLI), pairs drawn from a stack
have the requested dD and n, and a few training steps on pairs cut from stacks reduce the loss."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from tsva.export.zstack import read_zstack, sidecar_of, write_zstack

from tests.support.zstacks import _bad, simulated  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


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
