"""`tsva train`: train TSVA or the single-input U-Net baseline on simulated pairs or on real
z-stacks; also runs under `torchrun --nproc-per-node N --no-python tsva train ...` (DDP)."""
from __future__ import annotations

import argparse

from tsva.common.errors import BadInput

from .. import flags
from .common import add_optics_arguments, add_texture_arguments, optics_from_args, sample_from_args

HELP = "train TSVA or the U-Net baseline"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..train import TrainConfig

    flags.add_arguments(parser, TrainConfig)  # every TrainConfig option, declared on its field
    # Not a setting of the run but where it starts from (a checkpoint's config is the run's own).
    parser.add_argument("--resume", metavar="CKPT", help="continue from a last.pt of the same configuration")
    add_texture_arguments(parser)
    add_optics_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..train import TrainConfig, train

    cfg = flags.from_namespace(TrainConfig, args)
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
