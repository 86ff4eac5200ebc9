"""`tsva train`: train TSVA or the single-input U-Net baseline on simulated pairs or on real
z-stacks; also runs under `torchrun --nproc-per-node N --no-python tsva train ...` (DDP)."""
from __future__ import annotations

import argparse

from tsva.common.errors import BadInput

from ..train import TrainConfig
from .common import add_optics_arguments, add_texture_arguments, optics_from_args, sample_from_args

HELP = "train TSVA or the U-Net baseline"
D = TrainConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", choices=("tsva", "unet"), default=D.arch, help="network (default %(default)s)")
    parser.add_argument("--width", type=int, default=D.base_width, help="base channels (default %(default)s)")
    parser.add_argument("--depth", type=int, default=D.depth, help="max-pool levels (default %(default)s)")
    parser.add_argument("--patch-size", type=int, default=D.patch_size, help="training patch (default %(default)s)")
    parser.add_argument("--crop", type=int, default=D.crop, help="train on random crops of this size from the "
                        "pool's patches (default: whole patches)")
    parser.add_argument("--batch-size", type=int, default=D.batch_size, help="(default %(default)s)")
    parser.add_argument("--steps", type=int, default=D.steps, help="optimiser steps (default %(default)s)")
    parser.add_argument("--lr", type=float, default=D.lr, help="Adam learning rate (default %(default)s)")
    parser.add_argument("--pool-pairs", type=int, default=D.pool_pairs, help="simulated training pairs (default %(default)s)")
    parser.add_argument("--val-pairs", type=int, default=D.val_pairs, help="validation pairs (default %(default)s)")
    parser.add_argument("--val-every", type=int, default=D.val_every, help="steps between validations (default: every epoch)")
    parser.add_argument("--pool", metavar="NPZ", help="cache of the training pool: loaded if present, else built "
                        "and saved (share it so TSVA and the U-Net see the same patches)")
    parser.add_argument("--seed", type=int, default=D.seed)
    parser.add_argument("--threads", type=int, default=D.threads, help="CPU threads (default %(default)s)")
    parser.add_argument("--device", default=D.device, help="cpu, cuda or auto (default %(default)s)")
    parser.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    parser.add_argument("--max-minutes", type=float, default=D.max_minutes, help="stop (and save) after this long")
    parser.add_argument("-o", "--output", default=None, help="checkpoint folder (default runs/ARCH)")
    parser.add_argument("--resume", metavar="CKPT", help="continue from a last.pt of the same configuration")
    parser.add_argument("--init-from", metavar="CKPT", help="start from these weights with a fresh optimiser "
                        "and learning-rate schedule (a second training phase); a checkpoint (.pt) or an "
                        "exported model (.onnx, e.g. the shipped model_repository/tsva/1/model.onnx)")
    parser.add_argument("--sections", choices=("mixed", "fixed"), default=D.sections,
                        help="mixed: every simulated pair draws its own section thickness (a single thin plane "
                             "up to ~5 um), layers, stain share, noise and stain; fixed: all pairs use "
                             "--thickness/--layers (default %(default)s)")
    parser.add_argument("--condition", choices=("none", "defocus"), default=D.condition,
                        help="defocus: the network takes the pair's dD as a third input (default %(default)s)")
    parser.add_argument("--zstacks", metavar="DIR", help="train on pairs cut from the through-focus z-stacks in DIR "
                        "(one TIFF/OME-TIFF per tile; see docs/model.md) instead of simulated pairs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_texture_arguments(parser)
    add_optics_arguments(parser)


def run(args: argparse.Namespace) -> int:
    cfg = TrainConfig(
        arch=args.arch, base_width=args.width, depth=args.depth, patch_size=args.patch_size, crop=args.crop,
        batch_size=args.batch_size, steps=args.steps, lr=args.lr, pool_pairs=args.pool_pairs,
        val_pairs=args.val_pairs, val_every=args.val_every, seed=args.seed, threads=args.threads,
        device=args.device, amp=not args.no_amp, textures=args.textures, holdout=args.holdout,
        pool=args.pool, output=args.output or f"runs/{args.arch}", max_minutes=args.max_minutes,
        progress=not args.no_progress, init_from=args.init_from, sections=args.sections,
        condition=args.condition, zstacks=args.zstacks)
    from ..train import train
    result = train(cfg, optics_from_args(args), sample_from_args(args), resume=args.resume,
                   command=args.command_line,
                   log=lambda m: print(m, flush=True))
    if result.get("rank", 0) != 0:
        return 0  # one report per torchrun job
    print(f"done: {result['steps']} steps, best validation PSNR {result['best_val_psnr']:.2f} dB "
          f"(sharper shot {result['sharper_val_psnr']:.2f}); {result['checkpoint']}")
    return 0


def describe_error(exc: Exception, args: argparse.Namespace) -> BadInput | None:
    """A ValueError is bad input too (exit 2): a bad width/depth, learning rate or batch size is
    refused by torch or the network. (TsvaExportError is a BadInput itself.)"""
    return BadInput(str(exc)) if isinstance(exc, ValueError) else None
