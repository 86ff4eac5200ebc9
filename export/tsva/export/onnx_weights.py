"""Weights of an exported ONNX model back into a trainable network (`tsva train --init-from MODEL.onnx`).

The exporter folds every batch norm into the convolution before it, so the ONNX file holds only
(conv weight, bias) pairs. They are loaded in execution order, and each batch norm is rebuilt so
that the network computes exactly the same in eval mode AND nearly the same in training mode: its
running statistics are set to the per-channel mean and variance of the conv's output measured on
calibration inputs, with gamma/beta chosen to undo them. Without that, the first training steps
(batch statistics instead of identity) would wreck the weights that fine-tuning starts from.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn
from tsva.common.metadata import ModelMetadata

from .errors import CheckpointError
from .network import NetworkConfig, build_network


def network_of(metadata: ModelMetadata, path: Path) -> NetworkConfig:
    try:
        return NetworkConfig(arch=metadata.architecture or "tsva", base_width=metadata.require("base_width"),
                             depth=metadata.require("depth"), condition=metadata.condition or "none")
    except ValueError as exc:  # MetadataError, or a NetworkConfig that refuses the values
        raise CheckpointError(f"model {path}: metadata does not describe the network ({exc})") from None


def _conv_order(net: nn.Module, network: NetworkConfig) -> list[nn.Module]:
    """Conv / ConvTranspose modules in the order a forward pass calls them."""
    order: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda m, _: order.append(m))
             for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    x = torch.zeros(1, network.channels, 2 ** network.depth, 2 ** network.depth)
    with torch.no_grad():
        net.eval()(x, x, torch.ones(1, 1) if network.conditioned else None)
    for h in hooks:
        h.remove()
    return order


def _onnx_convs(proto: onnx.ModelProto) -> list[tuple[np.ndarray, np.ndarray | None]]:
    init = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    out = []
    for node in proto.graph.node:  # ONNX nodes are stored in topological order
        if node.op_type in ("Conv", "ConvTranspose"):
            w = init.get(node.input[1])
            b = init.get(node.input[2]) if len(node.input) > 2 else None
            if w is None:
                raise CheckpointError("model: a convolution's weights are not constant initialisers")
            out.append((w, b))
    return out


def import_onnx_weights(path: str | Path, calibration: torch.Tensor | None = None
                        ) -> tuple[nn.Module, NetworkConfig, ModelMetadata]:
    """(network in train mode, its config, the model's metadata) from an exported float32 model.
    `calibration`: [N, 3, H, W] shots used to measure the batch-norm statistics (default: noise)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model {path}: no such file")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and others for a foreign file
        raise CheckpointError(f"model {path}: not a readable ONNX model ({exc.__class__.__name__})") from None
    metadata = ModelMetadata.from_props({p.key: p.value for p in proto.metadata_props})
    network = network_of(metadata, path)
    net = build_network(network)
    modules, weights = _conv_order(net, network), _onnx_convs(proto)
    if len(modules) != len(weights):
        raise CheckpointError(f"model {path}: {len(weights)} convolutions, a {network.arch} network of depth "
                              f"{network.depth} has {len(modules)}")
    # Which batch norm follows which conv (DoubleConv: conv, bn, relu, conv, bn, relu).
    follows: dict[nn.Module, nn.BatchNorm2d] = {}
    for seq in net.modules():
        if isinstance(seq, nn.Sequential):
            kids = list(seq)
            for a, b in zip(kids, kids[1:]):
                if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                    follows[a] = b
    with torch.no_grad():
        for module, (w, b) in zip(modules, weights):
            if tuple(module.weight.shape) != w.shape:
                raise CheckpointError(f"model {path}: weights of shape {w.shape} do not fit {tuple(module.weight.shape)}")
            module.weight.copy_(torch.from_numpy(np.array(w)))
            bias = torch.from_numpy(np.array(b)) if b is not None else torch.zeros(w.shape[0] if isinstance(module, nn.Conv2d) else w.shape[1])
            if module in follows:  # folded: conv(x) + bias; the batch norm first passes it through
                bn = follows[module]
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
                bn.weight.fill_(1.0)
                bn.bias.copy_(bias)
            else:
                module.bias.copy_(bias)
    _recalibrate_batch_norms(net, network, follows, calibration)
    net.train()
    return net, network, metadata


def _recalibrate_batch_norms(net: nn.Module, network: NetworkConfig, follows: dict, calibration) -> None:
    """Per-channel statistics of each conv's output (eval mode: the exact function), then
    BN(z) = gamma (z - mu) / sqrt(var + eps) + beta with gamma = sqrt(var + eps), beta = b + mu:
    the same function in eval mode, and batch statistics close to mu/var in training mode."""
    if calibration is None:
        calibration = torch.rand(8, network.channels, 64, 64, generator=torch.Generator().manual_seed(0))
    stats: dict[nn.BatchNorm2d, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = []
    for conv, bn in follows.items():
        def record(m, _inp, out, bn=bn):
            stats[bn] = (out.mean(dim=(0, 2, 3)), out.var(dim=(0, 2, 3), unbiased=False))
        hooks.append(conv.register_forward_hook(record))
    n = calibration.shape[0] // 2 or 1
    y1, y2 = calibration[:n], calibration[n:2 * n] if calibration.shape[0] >= 2 else calibration
    with torch.no_grad():
        net.eval()(y1, y2, torch.full((y1.shape[0], 1), 1.5) if network.conditioned else None)
        for h in hooks:
            h.remove()
        for bn, (mu, var) in stats.items():
            beta = bn.bias.clone()
            bn.running_mean.copy_(mu)
            bn.running_var.copy_(var)
            bn.weight.copy_(torch.sqrt(var + bn.eps))
            bn.bias.copy_(beta + mu)
