"""Real z-stacks: files round-trip (simulated, written, read back: same planes and z), every bad
stack is one line naming the file and the field (exit 2 through the CLI), pairs drawn from a stack
have the requested dD and n, and a few training steps on pairs cut from stacks reduce the loss."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from tsva.export.network import NetworkConfig, build_network
from tsva.export.zstack import ZStackError, build_stack_pool, read_zstack, write_zstack

from tests.support.zstacks import _bad, _planes, simulated  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_plain_multipage_tiff_with_sidecar_z_and_ome_physical_size(tmp_path):
    planes = _planes()
    tifffile.imwrite(tmp_path / "a.tif", planes, photometric="rgb")
    (tmp_path / "a.json").write_text(json.dumps({"z_um": [3.0, 2.0, 1.0, 0.0, -1.0]}))  # decreasing: sorted
    stack = read_zstack(tmp_path / "a.tif")
    assert list(stack.z_um) == [-1.0, 0.0, 1.0, 2.0, 3.0] and np.allclose(stack.planes[0], planes[4] / 255)
    tifffile.imwrite(tmp_path / "b.ome.tif", planes, photometric="rgb", metadata={"axes": "ZYXS", "PhysicalSizeZ": 0.25})
    assert np.allclose(read_zstack(tmp_path / "b.ome.tif").z_um, np.arange(5) * 0.25)


BAD = [("no z", "field z: no z"), ("repeated z", "repeated z 0.5"), ("uneven z", "uneven z steps"),
       ("count", "3 values for 5 planes"), ("mixed size", "field planes: plane 1 is 20x20x3"),
       ("mixed type", "uint16"), ("too short", "too short for dD 1.5"), ("step", "cannot make dD 0.5"),
       ("not a tiff", "not a readable TIFF")]


@pytest.mark.parametrize("case,message", BAD)
def test_bad_stacks_name_the_file_and_the_field(tmp_path, case, message):
    path = _bad(tmp_path, case)
    with pytest.raises(ZStackError) as err:
        stack = read_zstack(path)
        build_stack_pool([stack], (0.5, 1.5), 2, 8, 1.0, seed=0)
    assert str(path) in str(err.value) and message in str(err.value), str(err.value)


def test_pairs_from_a_stack_have_the_requested_dd_and_n(tmp_path, simulated):
    planes, z, focus = simulated
    stack = read_zstack(write_zstack(tmp_path / "t.ome.tif", planes, z, focus_z_um=focus))
    rng = np.random.default_rng(0)
    seen = set()
    for dd in (0.5, 1.0, 2.0):
        for _ in range(40):
            a, b, n = stack.shots_for(dd, 1.0, rng)
            truth = stack.z_um[stack.focus_index]
            assert stack.z_um[a] == pytest.approx(truth - dd - n) and stack.z_um[b] == pytest.approx(truth + dd - n)
            assert (n / 0.5) == pytest.approx(round(n / 0.5))  # whole z steps
            seen.add(n)
    assert len(seen) >= 3  # n is drawn, not fixed
    pool = build_stack_pool([stack], (1.0, 2.0), 4, 32, 1.0, seed=0)
    assert list(pool.dd_um) == [1.0, 2.0, 1.0, 2.0] and pool.y1.shape == (4, 3, 32, 32)
    assert np.all(np.abs(pool.y1_defocus_um) >= 0) and pool.simulation["stacks"] == 1


@pytest.mark.slow
def test_a_few_training_steps_on_stacks_reduce_the_loss(tmp_path, simulated):
    planes, z, focus = simulated
    stack = read_zstack(write_zstack(tmp_path / "t.ome.tif", planes, z, focus_z_um=focus))
    pool = build_stack_pool([stack], (1.0, 2.0, 3.0), 6, 32, 1.0, seed=0)
    torch.manual_seed(0)
    net = build_network(NetworkConfig(base_width=8, depth=2, condition="defocus"))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    y1, y2, truth = pool.tensors(slice(None))
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.mse_loss(net(y1, y2, pool.dd(slice(None))), truth)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
