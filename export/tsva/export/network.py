"""TSVA network (Li et al., Fig. 4) and the single-input U-Net baseline, built from the same blocks.

TSVA: two contracting paths with ONE set of weights (the shared encoder runs on both shots), the
deepest features of both paths concatenated, an expansive path that concatenates the skip features
of BOTH paths at every level, a final 1x1 conv, and Y1 added to the output (residual learning).
The final conv is zero-initialised, so an untrained network returns Y1, the sharper shot.

Defocus conditioning (`condition="defocus"`): the scanner knows dD (the tile's own offset n stays
unknown), so the network may take it as a third input, dd [N, 1] in um, given to the encoder as a
constant extra channel of every shot (dd / DD_SCALE_UM). Its first-conv weights start at zero, so a
conditioned network initialised from an unconditioned one computes exactly the same at first.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

ARCHITECTURES = ("tsva", "unet")
CONDITIONS = ("none", "defocus")
DD_SCALE_UM = 3.0  # dD / this: the channel stays in [0, 1] over the usual range


@dataclass(frozen=True)
class NetworkConfig:
    arch: str = "tsva"        # "tsva" (two shots) or "unet" (single-input baseline)
    base_width: int = 16      # channels of the first level; doubles at every level
    depth: int = 3            # number of 2x2 max-pools; inputs must be multiples of 2**depth
    channels: int = 3         # RGB
    condition: str = "none"   # "defocus": dD is a third input

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        if self.condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {self.condition!r}")
        if self.base_width < 1 or self.depth < 1 or self.channels < 1:
            raise ValueError(f"base_width, depth and channels must be >= 1, got {self}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def conditioned(self) -> bool:
        return self.condition == "defocus"

    @property
    def encoder_inputs(self) -> int:
        return self.channels + (1 if self.conditioned else 0)


def with_defocus_plane(x: torch.Tensor, dd: torch.Tensor | None) -> torch.Tensor:
    """x [N, C, H, W] with dd [N, 1] (um) appended as a constant channel."""
    if dd is None:
        raise ValueError("this network is conditioned on the defocus: pass dd [N, 1] (um)")
    plane = (dd.reshape(-1, 1, 1, 1).to(x.dtype) / DD_SCALE_UM).expand(x.shape[0], 1, x.shape[2], x.shape[3])
    return torch.cat([x, plane], dim=1)


class DoubleConv(nn.Sequential):
    """Two (3x3 conv, batch norm, ReLU) -- the repeated unit of both paths."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )


class Encoder(nn.Module):
    """Contracting path: returns the skip features of every level and the deepest features."""

    def __init__(self, cin: int, width: int, depth: int):
        super().__init__()
        widths = [width * 2 ** i for i in range(depth + 1)]
        self.levels = nn.ModuleList(DoubleConv(a, b) for a, b in zip([cin] + widths[:-2], widths[:-1]))
        self.bottom = DoubleConv(widths[-2], widths[-1])
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        skips = []
        for level in self.levels:
            x = level(x)
            skips.append(x)
            x = self.pool(x)
        return skips, self.bottom(x)


class Decoder(nn.Module):
    """Expansive path. `paths` = how many encoders' features are concatenated (2 for TSVA)."""

    def __init__(self, cout: int, width: int, depth: int, paths: int):
        super().__init__()
        widths = [width * 2 ** i for i in range(depth + 1)]
        self.ups = nn.ModuleList()
        self.convs = nn.ModuleList()
        below = paths * widths[-1]  # concatenated deepest features
        for level in reversed(range(depth)):
            self.ups.append(nn.ConvTranspose2d(below, widths[level], 2, stride=2))
            self.convs.append(DoubleConv(widths[level] + paths * widths[level], widths[level]))
            below = widths[level]
        self.head = nn.Conv2d(widths[0], cout, 1)
        # Zero-initialised head: the network starts as the identity on Y1 and learns the residual.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, skips_per_level: list[list[torch.Tensor]], bottom: torch.Tensor) -> torch.Tensor:
        x = bottom
        for up, conv, skips in zip(self.ups, self.convs, reversed(skips_per_level)):
            x = conv(torch.cat([up(x), *skips], dim=1))
        return self.head(x)


class TSVA(nn.Module):
    """x = Y1 + f(Y1, Y2) with one encoder shared by both shots."""

    def __init__(self, config: NetworkConfig = NetworkConfig()):
        super().__init__()
        self.config = config
        c, w, d = config.channels, config.base_width, config.depth
        self.encoder = Encoder(config.encoder_inputs, w, d)
        self.decoder = Decoder(c, w, d, paths=2)

    def forward(self, y1: torch.Tensor, y2: torch.Tensor, dd: torch.Tensor | None = None) -> torch.Tensor:
        # Both shots go through the same encoder in one call (a batch of 2N): shared weights by
        # construction, and one convolution per layer instead of two.
        n = y1.shape[0]
        x = torch.cat([y1, y2], dim=0)
        if self.config.conditioned:
            x = with_defocus_plane(x, torch.cat([dd, dd], dim=0) if dd is not None else None)
        skips, bottom = self.encoder(x)
        paired_skips = [[s[:n], s[n:]] for s in skips]
        bottom = torch.cat([bottom[:n], bottom[n:]], dim=1)
        return y1 + self.decoder(paired_skips, bottom)


class UNet(nn.Module):
    """Single-input baseline of the paper's ablation: x = Y1 + f(Y1); `y2` is accepted and ignored
    so that both networks share one calling convention (and one export contract)."""

    def __init__(self, config: NetworkConfig = NetworkConfig(arch="unet")):
        super().__init__()
        self.config = config
        c, w, d = config.channels, config.base_width, config.depth
        self.encoder = Encoder(config.encoder_inputs, w, d)
        self.decoder = Decoder(c, w, d, paths=1)

    def forward(self, y1: torch.Tensor, y2: torch.Tensor | None = None, dd: torch.Tensor | None = None) -> torch.Tensor:
        skips, bottom = self.encoder(with_defocus_plane(y1, dd) if self.config.conditioned else y1)
        return y1 + self.decoder([[s] for s in skips], bottom)


def build_network(config: NetworkConfig) -> nn.Module:
    return TSVA(config) if config.arch == "tsva" else UNet(config)


def load_compatible_weights(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Weights of a network that differs only in the defocus channel: the first conv's extra input
    channel starts at zero (same outputs as the source network); everything else must fit exactly."""
    own = net.state_dict()
    merged = {}
    for key, value in state.items():
        target = own.get(key)
        if target is not None and value.ndim == 4 and target.shape[1] == value.shape[1] + 1 \
                and target.shape[0] == value.shape[0] and target.shape[2:] == value.shape[2:]:
            value = torch.cat([value, torch.zeros_like(value[:, :1])], dim=1)
        merged[key] = value
    net.load_state_dict(merged)


class Clamped(nn.Module):
    """Serving form: output clamped to [0, 1] (the contract's value range)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, y1: torch.Tensor, y2: torch.Tensor, dd: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(y1, y2, dd).clamp(0.0, 1.0)
