"""`tsva quantize [MODEL]`: the int8 CPU model from a float32 ONNX model, calibrated on simulated pairs."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import TsvaExportError
from ..paths import REPO_ROOT, SHIPPED_MODEL
from .common import add_optics_arguments, add_texture_arguments, optics_from_args, sample_from_args

HELP = "int8 CPU model from a float32 ONNX model"

# runs/ is the checkout's git-ignored work folder (the int8 model is not shipped: docs/performance.md).
INT8_MODEL = REPO_ROOT / "runs" / "tsva_int8.onnx"
CALIBRATION_PATCH = 224  # the gateway's CPU patch side: ranges seen at the size that is served


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..quantize import CALIBRATION_METHODS

    parser.add_argument("model", nargs="?", default=str(SHIPPED_MODEL),
                        help="float32 ONNX model (default: the shipped model, %(default)s)")
    parser.add_argument("-o", "--output", default=str(INT8_MODEL), help="int8 model to write (default %(default)s)")
    parser.add_argument("--pool", metavar="NPZ", help="calibrate on this pool of `tsva simulate --pool` instead "
                        "of simulating pairs from --textures")
    parser.add_argument("--pairs", type=int, default=48, help="calibration pairs to simulate (default %(default)s)")
    parser.add_argument("--patch-size", type=int, default=CALIBRATION_PATCH, help="(default %(default)s)")
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--batch", type=int, default=8, help="pairs per calibration batch (default %(default)s)")
    parser.add_argument("--calibration-method", choices=CALIBRATION_METHODS, default="minmax",
                        help="how activation ranges are chosen (default %(default)s)")
    parser.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor, not per channel")
    parser.add_argument("--full-range", action="store_true",
                        help="8-bit weights instead of 7-bit (only for CPUs with VNNI: others saturate)")
    add_texture_arguments(parser)
    add_optics_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..dataset import PairPool, build_pool
    from ..quantize import max_abs_difference, quantize_model
    from ..textures import load_textures, split_textures

    if not Path(args.model).is_file():
        raise TsvaExportError(f"model {args.model}: no such file")
    if args.pool:
        if not Path(args.pool).is_file():
            raise TsvaExportError(f"--pool {args.pool}: no such file")
        pool = PairPool.load(args.pool)
        pool.check_simulated_with(optics_from_args(args), sample_from_args(args), f"--pool {args.pool}")
        source = f"pool {args.pool}"
    else:
        if args.pairs < 1:
            raise TsvaExportError(f"--pairs must be >= 1, got {args.pairs}")
        optics, sample = optics_from_args(args), sample_from_args(args)
        textures = load_textures(args.textures, optics.pixel_size_um, min_size=args.patch_size)
        train, _ = split_textures(textures, args.holdout or None)  # never calibrate on held-out images
        pool = build_pool(train, optics, sample, args.pairs, args.patch_size, args.seed)
        source = f"{', '.join(t.name for t in train)} (seed {args.seed})"
    added = quantize_model(args.model, args.output, pool, batch=args.batch, method=args.calibration_method,
                           per_channel=not args.per_tensor, reduce_range=not args.full_range, calibration=source)
    size = Path(args.output).stat().st_size / 1e6
    print(f"wrote {args.output} ({size:.1f} MB, {added['precision']}): {added['quantization']}")
    worst, psnr = max_abs_difference(args.model, args.output, pool, args.batch)
    print(f"int8 vs float32 on the calibration pairs: max abs diff {worst:.4f}, PSNR {psnr:.1f} dB "
          f"(quality against the truth: tsva evaluate --tsva {args.output})")
    return 0
