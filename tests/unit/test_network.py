"""TSVA network and the U-Net baseline: shapes, shared weights of the two paths, residual on Y1."""
from __future__ import annotations

import pytest
import torch
from tsva.export.network import TSVA, Clamped, Encoder, NetworkConfig, UNet, build_network


def _randomise_head(net: torch.nn.Module) -> None:
    torch.nn.init.normal_(net.decoder.head.weight, std=0.1)


@pytest.mark.parametrize("arch", ["tsva", "unet"])
@pytest.mark.parametrize("depth,size", [(2, (32, 48)), (3, (64, 64)), (4, (48, 80))])
def test_output_shape_matches_input(arch, depth, size):
    net = build_network(NetworkConfig(arch=arch, base_width=4, depth=depth)).eval()
    y1, y2 = torch.rand(2, 3, *size), torch.rand(2, 3, *size)
    with torch.no_grad():
        assert net(y1, y2).shape == (2, 3, *size)


def test_tsva_has_one_encoder_for_both_shots():
    net = TSVA(NetworkConfig(base_width=4, depth=2))
    encoders = [m for m in net.modules() if isinstance(m, Encoder)]
    assert len(encoders) == 1
    # The decoder's first up-convolution sees both deepest feature maps (2 x 4 * 2**2 channels).
    assert net.decoder.ups[0].in_channels == 2 * 16
    # Encoder parameters are the same count as the single-input U-Net's: shared, not duplicated.
    unet = UNet(NetworkConfig(arch="unet", base_width=4, depth=2))
    assert sum(p.numel() for p in net.encoder.parameters()) == sum(p.numel() for p in unet.encoder.parameters())


def test_both_paths_train_the_same_weights():
    """A gradient that flows only through Y2's path still reaches the (shared) encoder weights."""
    torch.manual_seed(0)
    net = TSVA(NetworkConfig(base_width=4, depth=2))
    _randomise_head(net)
    y1 = torch.zeros(1, 3, 32, 32)                         # constant: the Y1 path carries no signal
    y2 = torch.rand(1, 3, 32, 32, requires_grad=True)
    net(y1, y2).sum().backward()
    first_conv = net.encoder.levels[0][0]
    assert y2.grad is not None and y2.grad.abs().sum() > 0
    assert first_conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("arch", ["tsva", "unet"])
def test_zero_initialised_head_returns_y1(arch):
    net = build_network(NetworkConfig(arch=arch, base_width=4, depth=3)).eval()
    y1, y2 = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(y1, y2), y1)


def test_unet_ignores_the_second_shot():
    net = UNet(NetworkConfig(arch="unet", base_width=4, depth=2)).eval()
    _randomise_head(net)
    y1 = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(y1, torch.rand(1, 3, 32, 32)), net(y1, torch.zeros(1, 3, 32, 32)))


def test_clamped_output_stays_in_unit_range():
    net = TSVA(NetworkConfig(base_width=4, depth=2)).eval()
    torch.nn.init.constant_(net.decoder.head.bias, 5.0)
    with torch.no_grad():
        out = Clamped(net)(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    assert out.min() >= 0 and out.max() <= 1 and torch.all(out == 1)


@pytest.mark.parametrize("bad", [dict(arch="resnet"), dict(base_width=0), dict(depth=0)])
def test_bad_network_config_is_rejected(bad):
    with pytest.raises(ValueError):
        NetworkConfig(**bad)
