"""`tsva quantize [MODEL]`: the int8 CPU model from a float32 ONNX model, calibrated on simulated pairs."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import TsvaExportError
from tsva.common.precision import int8_sibling

from ..paths import SHIPPED_MODEL
from .common import add_optics_arguments, add_texture_arguments, optics_from_args, sample_from_args

HELP = "int8 CPU model from a float32 ONNX model"

CALIBRATION_PATCH = 224  # the gateway's CPU patch side: ranges seen at the size that is served


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..quantize import CALIBRATION_METHODS

    parser.add_argument("model", nargs="?", default=str(SHIPPED_MODEL),
                        help="float32 ONNX model (default: the shipped model, %(default)s)")
    parser.add_argument("-o", "--output", help="int8 model to write (default: MODEL's NAME.int8.onnx beside it, "
                        "the file the gateway runs on CPUs in place of MODEL)")
    parser.add_argument("--pool", metavar="NPZ", help="calibrate on this pool of `tsva simulate --pool` instead "
                        "of simulating pairs from --textures")
    parser.add_argument("--pairs", type=int, default=96, help="calibration pairs to simulate, each its own section "
                        "drawn from the model's training distribution when its metadata has one (default %(default)s)")
    parser.add_argument("--patch-size", type=int, default=CALIBRATION_PATCH, help="(default %(default)s)")
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--batch", type=int, default=8, help="pairs per calibration batch (default %(default)s)")
    parser.add_argument("--calibration-method", choices=CALIBRATION_METHODS, default="minmax",
                        help="how activation ranges are chosen (default %(default)s)")
    parser.add_argument("--float-convs", type=int, default=2, metavar="N",
                        help="keep the first N and the last N convolutions (the full-resolution ones) in float32 "
                             "(default %(default)s; 0: all int8 but the head)")
    parser.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor, not per channel")
    parser.add_argument("--full-range", action="store_true",
                        help="8-bit weights instead of 7-bit (only for CPUs with VNNI: others saturate)")
    add_texture_arguments(parser)
    add_optics_arguments(parser)


def training_distribution(model: str):
    """The per-pair section distribution the model was trained on (from its metadata), or None for a
    model trained on one fixed section: calibration then sees the sections the model will."""
    from tsva.common.metadata import read_onnx_metadata

    from ..distribution import SectionDistribution

    try:
        ranges = read_onnx_metadata(model).section.distribution_ranges
    except Exception:  # not readable: quantize_model says so in its own words
        return None
    return SectionDistribution.from_ranges(ranges) if ranges else None


def run(args: argparse.Namespace) -> int:
    from ..dataset import PairPool, build_pool
    from ..quantize import max_abs_difference, quantize_model
    from ..textures import load_textures, split_textures

    if not Path(args.model).is_file():
        raise TsvaExportError(f"model {args.model}: no such file")
    if args.float_convs < 0:
        raise TsvaExportError(f"--float-convs must be >= 0, got {args.float_convs}")
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
        distribution = training_distribution(args.model)
        textures = load_textures(args.textures, optics.pixel_size_um, min_size=args.patch_size)
        train, _ = split_textures(textures, args.holdout or None)  # never calibrate on held-out images
        pool = build_pool(train, optics, sample, args.pairs, args.patch_size, args.seed, distribution=distribution)
        source = (f"{', '.join(t.name for t in train)} (seed {args.seed}"
                  f"{', sections of the training distribution' if distribution else ''})")
    args.output = args.output or str(int8_sibling(args.model))
    added = quantize_model(args.model, args.output, pool, batch=args.batch, method=args.calibration_method,
                           per_channel=not args.per_tensor, reduce_range=not args.full_range, calibration=source,
                           float_convs=args.float_convs)
    size = Path(args.output).stat().st_size / 1e6
    print(f"wrote {args.output} ({size:.1f} MB, {added['precision']}): {added['quantization']}")
    worst, psnr = max_abs_difference(args.model, args.output, pool, args.batch)
    print(f"int8 vs float32 on the calibration pairs: max abs diff {worst:.4f}, PSNR {psnr:.1f} dB "
          f"(quality against the truth: tsva evaluate --tsva {args.output})")
    return 0
