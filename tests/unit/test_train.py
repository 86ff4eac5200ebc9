"""Training: the loss falls on a fixed batch; a tiny `train()` run checkpoints its full
configuration and resumes; checkpoints of another architecture are refused clearly."""
from __future__ import annotations

import pytest
import torch
from tsva.export.checkpoint import load_checkpoint, save_checkpoint
from tsva.export.errors import CheckpointError
from tsva.export.network import NetworkConfig, build_network
from tsva.export.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _tiny_config(tmp_path, **overrides) -> TrainConfig:
    cfg = dict(arch="tsva", base_width=4, depth=2, patch_size=32, batch_size=2, steps=4, pool_pairs=6,
               val_pairs=6, val_every=2, output=str(tmp_path / "run"), progress=False)
    cfg.update(overrides)
    return TrainConfig(**cfg)


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    unet = build_network(NetworkConfig(arch="unet", base_width=4, depth=2))
    save_checkpoint(tmp_path / "unet.pt", unet, unet.config)
    with pytest.raises(CheckpointError, match="holds a 'unet' network, expected 'tsva'"):
        load_checkpoint(tmp_path / "unet.pt", expect_arch="tsva")
    with pytest.raises(CheckpointError, match="holds a 'unet' network"):
        train(_tiny_config(tmp_path), resume=str(tmp_path / "unet.pt"), log=lambda m: None)


def test_mismatched_weights_and_foreign_files_are_refused(tmp_path):
    net = build_network(NetworkConfig(base_width=4, depth=2))
    save_checkpoint(tmp_path / "a.pt", net, NetworkConfig(base_width=8, depth=2))  # config lies about width
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_checkpoint(tmp_path / "a.pt")
    torch.save({"something": 1}, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="not a TSVA checkpoint"):
        load_checkpoint(tmp_path / "b.pt")
    (tmp_path / "c.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "c.pt")
