"""`tsva train`'s configuration and entry point: train TSVA or the U-Net baseline on a pool of
simulated pairs or of pairs cut from real z-stacks (the loop itself: trainer.py).

Each option of TrainConfig is declared once, with its flag (flags.py): the verb's parser is built
from these fields and the parsed flags become a TrainConfig. This module imports no torch, so the
verb can build its parser cheaply."""
from __future__ import annotations

from dataclasses import dataclass

from .flags import option, shared


@dataclass
class TrainConfig:
    arch: str = option("--arch", default="tsva", choices=("tsva", "unet"), help="network (default %(default)s)")
    base_width: int = option("--width", default=16, type=int, help="base channels (default %(default)s)")
    depth: int = option("--depth", default=3, type=int, help="max-pool levels (default %(default)s)")
    patch_size: int = option("--patch-size", default=128, type=int,   # size of the pool's patches
                             help="training patch (default %(default)s)")
    crop: int = option("--crop", default=0, type=int, help="train on random crops of this size from the "
                       "pool's patches (default: whole patches)")
    batch_size: int = option("--batch-size", default=8, type=int, help="(default %(default)s)")
    steps: int = option("--steps", default=2000, type=int, help="optimiser steps (default %(default)s)")
    lr: float = option("--lr", default=5e-4, type=float,   # the paper's Adam learning rate
                       help="Adam learning rate (default %(default)s)")
    loss: str = option(
        "--loss", default="mse", choices=("mse", "psnr"),   # psnr: every pair's error counts in dB
        help="mse: the paper's mean squared error over the batch; psnr: the mean over the batch of each "
             "pair's -PSNR, so that a pair already close to its truth (a thin section, a small dD) weighs as "
             "much as a hard one (default %(default)s)")
    final_lr_fraction: float = 0.05  # cosine decay to lr * this (short budgets converge better)
    pool_pairs: int = option("--pool-pairs", default=2000, type=int,
                             help="simulated training pairs (default %(default)s)")
    val_pairs: int = option("--val-pairs", default=60, type=int, help="validation pairs (default %(default)s)")
    val_every: int = option("--val-every", default=0, type=int,   # 0: once per epoch (pass over the pool)
                            help="steps between validations (default: every epoch)")
    pool: str | None = option("--pool", default=None, metavar="NPZ", help="cache of the training pool: loaded if "
                              "present, else built and saved (share it so TSVA and the U-Net see the same patches)")
    seed: int = option("--seed", default=0, type=int)
    threads: int = option("--threads", default=1, type=int, help="CPU threads (default %(default)s)")
    device: str = option("--device", default="auto", help="cpu, cuda or auto (default %(default)s)")
    amp: bool = option("--no-amp", default=True, negate=True,   # mixed precision, CUDA only
                       help="no mixed precision on CUDA")
    max_minutes: float = option("--max-minutes", default=0.0, type=float,   # 0: no limit
                                help="stop (and save) after this long")
    output: str | None = option("-o", "--output", default=None,   # None: runs/ARCH
                                help="checkpoint folder (default runs/ARCH)")
    init_from: str | None = option(
        "--init-from", default=None, metavar="CKPT",   # fresh optimiser and schedule
        help="start from these weights with a fresh optimiser and learning-rate schedule (a second training "
             "phase); a checkpoint (.pt) or an exported model (.onnx, e.g. the shipped "
             "model_repository/tsva/1/model.onnx)")
    sections: str = option(
        "--sections", default="mixed", choices=("mixed", "fixed"),   # mixed: distribution.py
        help="mixed: every simulated pair draws its own section thickness (a single thin plane up to ~5 um), "
             "layers, stain share, noise and stain; fixed: all pairs use --thickness/--layers (default %(default)s)")
    condition: str = option("--condition", default="none", choices=("none", "defocus"),
                            help="defocus: the network takes the pair's dD as a third input (default %(default)s)")
    zstacks: str | None = option(
        "--zstacks", default=None, metavar="DIR",
        help="train on pairs cut from the through-focus z-stacks in DIR (one TIFF/OME-TIFF per tile; see "
             "docs/model.md) instead of simulated pairs")
    progress: bool = option("--no-progress", default=True, negate=True, help="no progress bar")
    textures: str | None = shared(None)    # --textures (the training verbs' shared flag); None: packaged H&E
    holdout: list[str] = shared(default_factory=list)   # --holdout
    zstacks_val: float = 0.2       # share of the stacks held out for validation (at least one)

    def __post_init__(self):
        if not self.output:
            self.output = f"runs/{self.arch}"


def train(cfg: TrainConfig, optics=None, sample=None, resume: str | None = None, command: str | None = None,
          log=print) -> dict:
    """One process, or one rank of a torchrun job; returns the run's summary (rank 0's has the
    checkpoint path and the validation history)."""
    import torch

    from . import distributed
    from .optics import Optics, Sample
    from .trainer import Trainer, device_of

    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    world = distributed.setup(cfg.device)
    device = world.device if world.size > 1 else device_of(cfg.device)
    try:
        trainer = Trainer(cfg, optics or Optics(), sample or Sample(), world, device, command, log)
        return trainer.run(resume)
    finally:
        distributed.teardown(world)
