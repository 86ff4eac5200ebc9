"""`tsva evaluate`: PSNR/SSIM per dD and nuclei-count error of TSVA against baselines, on held-out
textures; writes evaluation.md, evaluation.json and psnr_vs_dd.png."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import TsvaExportError
from ..evaluate import EvalConfig
from ..paths import DOCS_DIR
from .common import (add_optics_arguments, add_texture_arguments, optics_from_args, reports_errors,
                     sample_from_args)


E = EvalConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tsva", metavar="MODEL", help="TSVA checkpoint (.pt) or exported model (.onnx)")
    parser.add_argument("--unet", metavar="MODEL", help="U-Net baseline checkpoint (.pt) or .onnx")
    parser.add_argument("--pairs", type=int, default=E.pairs_per_dd, help="pairs per dD (default %(default)s)")
    parser.add_argument("--patch-size", type=int, default=E.patch_size, help="(default %(default)s)")
    parser.add_argument("--seed", type=int, default=E.seed)
    parser.add_argument("--rl-iterations", type=int, default=E.rl_iterations, help="Richardson-Lucy iterations (default %(default)s)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("-o", "--output", default=str(DOCS_DIR), help="report folder (default %(default)s)")
    add_texture_arguments(parser)
    add_optics_arguments(parser)


@reports_errors("evaluate")
def run(args: argparse.Namespace) -> int:
    from ..evaluate import Predictor, evaluate, evaluation_pools, write_reports
    from ..textures import load_textures, split_textures

    if args.pairs < 1:
        raise TsvaExportError(f"--pairs must be >= 1, got {args.pairs}")
    optics, sample = optics_from_args(args), sample_from_args(args)
    cfg = EvalConfig(pairs_per_dd=args.pairs, patch_size=args.patch_size, seed=args.seed,
                     rl_iterations=args.rl_iterations)
    tsva = Predictor(args.tsva, args.threads, expect_arch="tsva") if args.tsva else None
    unet = Predictor(args.unet, args.threads, expect_arch="unet") if args.unet else None
    textures = load_textures(args.textures, optics.pixel_size_um, min_size=args.patch_size)
    _, held_out = split_textures(textures, args.holdout or None)
    start = time.monotonic()
    pools = evaluation_pools(held_out, optics, sample, cfg)
    result = evaluate(pools, optics, tsva, unet, cfg, progress=lambda r: print(
        f"dD {r['dd_um']:g} um: " + ", ".join(f"{m} {v['psnr_median']:.2f} dB" for m, v in r["methods"].items()),
        flush=True))
    description = (f"held-out {', '.join(t.name for t in held_out)} "
                   f"({args.textures or 'scikit-image histology image'}), {args.pairs} simulated "
                   f"{args.patch_size}px pairs per dD, n ~ N(0, {optics.focus_sigma_um:g} um), "
                   f"section {sample.thickness_um:g} um in {sample.layers} layers")
    extra = {"command": args.command_line, "tsva_model": args.tsva,
             "unet_model": args.unet, "seconds": time.monotonic() - start}
    paths = write_reports(result, Path(args.output), description, extra)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
