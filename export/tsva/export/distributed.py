"""DistributedDataParallel for `tsva train` under torchrun (`torchrun --nproc-per-node N -m tsva...`).

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; without them training is
one plain process. Backend: NCCL when every rank has a CUDA device, gloo otherwise (CPU, and the
tests here: 2 CPU processes on loopback).
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class World:
    size: int = 1
    rank: int = 0
    backend: str = ""
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def setup(device: str = "auto") -> World:
    if not launched_by_torchrun():
        return World()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device != "cpu" and torch.cuda.is_available() and torch.cuda.device_count() > local
    backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    dev = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(dev)
    return World(dist.get_world_size(), dist.get_rank(), backend, dev)


def wrap(net: torch.nn.Module, world: World) -> torch.nn.Module:
    if world.size == 1:
        return net
    from torch.nn.parallel import DistributedDataParallel
    ids = [world.device.index] if world.device.type == "cuda" else None
    # broadcast_buffers: rank 0's batch-norm statistics are the ones every rank runs with.
    return DistributedDataParallel(net, device_ids=ids)


def any_rank(flag: bool, world: World) -> bool:
    if world.size == 1:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=world.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def teardown(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
