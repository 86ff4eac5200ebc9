"""Checkpoints: weights together with the full configuration that produced them."""
from __future__ import annotations

from pathlib import Path

import torch

from .errors import CheckpointError
from .network import NetworkConfig, build_network

FORMAT = "tsva-checkpoint/1"


def save_checkpoint(path: str | Path, net: torch.nn.Module, network: NetworkConfig, **extra) -> None:
    """Written to a temporary file and renamed, so an interrupted run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": FORMAT, "network": network.to_dict(), "state_dict": net.state_dict(), **extra}, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path, expect_arch: str | None = None) -> tuple[torch.nn.Module, dict]:
    """Returns (network in eval mode, the checkpoint dict). Raises CheckpointError with the reason."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many kinds for a corrupt file
        raise CheckpointError(f"checkpoint {path}: not a readable PyTorch checkpoint ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: not a TSVA checkpoint (expected format {FORMAT!r})")
    try:
        network = NetworkConfig(**ckpt["network"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: bad network configuration: {exc}") from None
    if expect_arch is not None and network.arch != expect_arch:
        raise CheckpointError(f"checkpoint {path}: holds a {network.arch!r} network, expected {expect_arch!r}")
    net = build_network(network)
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {path}: weights do not fit a {network.arch} network "
                              f"(width {network.base_width}, depth {network.depth}): {first}") from None
    net.eval()
    return net, ckpt
