"""Small networks and checkpoints with non-trivial weights for the training-side tests."""
from __future__ import annotations

import torch
from tsva.export.network import NetworkConfig, build_network


def _trained_looking(arch="tsva", width=4, depth=2):
    """Random weights everywhere (the zero-initialised head would make parity trivial)."""
    torch.manual_seed(0)
    net = build_network(NetworkConfig(arch=arch, base_width=width, depth=depth))
    torch.nn.init.normal_(net.decoder.head.weight, std=0.05)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial running statistics
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


from tsva.export.checkpoint import save_checkpoint


def _checkpoint(tmp_path, arch):
    torch.manual_seed(0)
    net = build_network(NetworkConfig(arch=arch, base_width=4, depth=2))
    torch.nn.init.normal_(net.decoder.head.weight, std=0.01)
    save_checkpoint(tmp_path / f"{arch}.pt", net, net.config)
    return net.eval()
