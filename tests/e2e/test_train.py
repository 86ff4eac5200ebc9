"""Training: the loss falls on a fixed batch; a tiny `train()` run checkpoints its full
configuration and resumes; checkpoints of another architecture are refused clearly."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from tsva.export.checkpoint import load_checkpoint, save_checkpoint
from tsva.export.network import NetworkConfig, build_network
from tsva.export.optics import Optics, Sample, simulate_pair
from tsva.export.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _fixed_batch(n=4, size=48):
    from skimage import data
    texture = data.immunohistochemistry().astype(np.float64) / 255
    rng = np.random.default_rng(0)
    pairs = [simulate_pair(texture[i * 60:i * 60 + size, 200:200 + size], Optics(), Sample(), 2.0, rng)
             for i in range(n)]
    stack = lambda name: torch.from_numpy(np.stack([getattr(p, name).transpose(2, 0, 1) for p in pairs]))  # noqa: E731
    return stack("y1"), stack("y2"), stack("truth")


@pytest.mark.parametrize("arch", ["tsva", "unet"])
def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(arch):
    torch.manual_seed(0)
    y1, y2, truth = _fixed_batch()
    net = build_network(NetworkConfig(arch=arch, base_width=8, depth=2))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.mse_loss(net(y1, y2), truth)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def _tiny_config(tmp_path, **overrides) -> TrainConfig:
    cfg = dict(arch="tsva", base_width=4, depth=2, patch_size=32, batch_size=2, steps=4, pool_pairs=6,
               val_pairs=6, val_every=2, output=str(tmp_path / "run"), progress=False)
    cfg.update(overrides)
    return TrainConfig(**cfg)


@pytest.mark.slow
def test_train_checkpoints_full_configuration_and_resumes(tmp_path):
    logs = []
    result = train(_tiny_config(tmp_path, pool=str(tmp_path / "pool.npz")), command="tsva train (test)", log=logs.append)
    assert result["steps"] == 4 and len(result["history"]) == 2
    assert all(np.isfinite(h["val_psnr"]) for h in result["history"])
    net, ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["network"] == {"arch": "tsva", "base_width": 4, "depth": 2, "channels": 3, "condition": "none"}
    assert ckpt["optics"] == Optics().to_dict() and ckpt["sample"] == Sample().to_dict()
    assert ckpt["distribution"]["thin_fraction"] == 0.25 and ckpt["world_size"] == 1  # --sections mixed
    assert ckpt["train"]["steps"] == 4 and ckpt["training_command"] == "tsva train (test)"
    assert "validation (held out)" in ckpt["training_data"]
    assert (tmp_path / "pool.npz").is_file()  # the shared pool was cached

    # Resume to 6 steps: continues from step 4 with the cached pool.
    result = train(_tiny_config(tmp_path, steps=6, pool=str(tmp_path / "pool.npz")),
                   resume=str(tmp_path / "run" / "last.pt"), command="tsva train (test)", log=logs.append)
    assert result["steps"] == 6 and [h["step"] for h in result["history"]] == [2, 4, 6]
    assert any("resumed" in line for line in logs) and any("loading training pool" in line for line in logs)

    # A second phase from these weights: fresh schedule, the earlier command kept for reproduction.
    result = train(_tiny_config(tmp_path, steps=2, output=str(tmp_path / "phase2"), pool=str(tmp_path / "pool.npz"),
                                init_from=str(tmp_path / "run" / "last.pt")), command="tsva train (phase 2)",
                   log=logs.append)
    _, ckpt = load_checkpoint(tmp_path / "phase2" / "last.pt")
    assert ckpt["step"] == 2
    assert ckpt["training_command"] == "tsva train (test) (6 steps), then tsva train (phase 2)"


@pytest.mark.slow
def test_other_architecture_through_the_cli_is_one_clear_line(tmp_path):
    """The real `tsva train` in a subprocess: exit 2 and one line naming the problem, no traceback."""
    unet = build_network(NetworkConfig(arch="unet", base_width=4, depth=2))
    save_checkpoint(tmp_path / "unet.pt", unet, unet.config)
    done = subprocess.run([sys.executable, "-m", "tsva.common.cli", "train", "--arch", "tsva", "--width", "4",
                           "--depth", "2", "--steps", "1", "-o", str(tmp_path / "run"),
                           "--resume", str(tmp_path / "unet.pt")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"tsva train: checkpoint {tmp_path / 'unet.pt'}: holds a 'unet' network, expected 'tsva'"]


@pytest.mark.parametrize("argv,message", [
    (["--na", "1.2"], "optics.numerical_aperture must be in (0, refractive index 1.0), got 1.2"),
    (["--na", "0.9", "--refractive-index", "0.8"], "optics.refractive_index must be >= 1"),
    (["--pixel-size", "-0.25"], "optics.pixel_size_um must be > 0, got -0.25"),
    (["--patch-size", "102"], "--patch-size 102 must be a multiple of 2**depth = 4"),
    (["--textures", "/nonexistent/textures"], "not a directory"),
    (["--layers", "0"], "sample.layers must be >= 1, got 0"),
    (["--pool-pairs", "4", "--batch-size", "8", "--patch-size", "32", "--val-pairs", "2", "--no-progress"], "--batch-size 8 is larger than the training pool (4 pairs)"),
])
def test_bad_training_input_is_one_clear_line(tmp_path, capsys, argv, message):
    """The verb's run() through the CLI's main() in process (the subprocess case above covers start-up)."""
    from tsva.common.cli import main
    code = main(["train", "--width", "4", "--depth", "2", "--steps", "1", "-o", str(tmp_path / "run"), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("tsva train: ") and message in err[0], err
