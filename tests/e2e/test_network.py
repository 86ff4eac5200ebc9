"""TSVA network and the U-Net baseline: shapes, shared weights of the two paths, residual on Y1."""
from __future__ import annotations

import torch
from tsva.export.network import TSVA, NetworkConfig


def _randomise_head(net: torch.nn.Module) -> None:
    torch.nn.init.normal_(net.decoder.head.weight, std=0.1)


def test_swapping_shots_changes_output_but_encoder_sees_each_identically():
    torch.manual_seed(1)
    net = TSVA(NetworkConfig(base_width=4, depth=2)).eval()
    _randomise_head(net)
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        skips_ab, bottom_ab = net.encoder(torch.cat([a, b]))
        skips_a, bottom_a = net.encoder(a)
        skips_b, bottom_b = net.encoder(b)
        torch.testing.assert_close(bottom_ab[:1], bottom_a)
        torch.testing.assert_close(bottom_ab[1:], bottom_b)
        assert not torch.allclose(net(a, b), net(b, a))
