"""`tsva simulate`: write simulated pairs and ground truth as PNG for inspection, a training pool
(.npz), through-focus z-stacks (`--zstacks-out`, the format `tsva train --zstacks` reads), or
calibrate the simulator against the real defocus pair (`--calibrate`)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..errors import TsvaExportError
from .common import add_optics_arguments, add_texture_arguments, optics_from_args, sample_from_args

HELP = "write simulated training pairs to disk"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", default="runs/simulated", help="output folder (default %(default)s)")
    parser.add_argument("--pairs", type=int, default=12, help="pairs to simulate (default %(default)s)")
    parser.add_argument("--patch-size", type=int, default=256, help="(default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=("train", "val"), default="train", help="textures to draw from")
    parser.add_argument("--pool", metavar="NPZ", help="write a training pool (.npz) instead of PNGs")
    parser.add_argument("--sections", choices=("mixed", "fixed"), default="fixed",
                        help="mixed: every pair draws its own section, noise and stain (the training distribution "
                             "of `tsva train --sections mixed`); fixed: --thickness/--layers (default %(default)s)")
    parser.add_argument("--calibrate", nargs=2, metavar=("IN_FOCUS", "OUT_OF_FOCUS"),
                        help="fit the defocus that best turns IN_FOCUS into OUT_OF_FOCUS and report PSNR")
    parser.add_argument("--crop", type=int, default=512, help="central crop for --calibrate (default %(default)s)")
    parser.add_argument("--zstacks-out", metavar="DIR", help="write --pairs simulated through-focus z-stacks "
                        "(OME-TIFF with PositionZ per plane, sidecar JSON naming the focus plane) instead")
    parser.add_argument("--z-step", type=float, default=0.5, help="z step of --zstacks-out, um (default %(default)s)")
    parser.add_argument("--z-range", type=float, default=4.5,
                        help="--zstacks-out planes from focus - this to focus + this, um (default %(default)s)")
    add_texture_arguments(parser)
    add_optics_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.calibrate:
        return _calibrate(args)
    return _zstacks(args) if args.zstacks_out else _simulate(args)


def _zstacks(args) -> int:
    from ..dataset import _crop_padded
    from ..textures import augment, load_textures, split_textures
    from ..zstack import simulate_stack, write_zstack

    optics, sample = optics_from_args(args), sample_from_args(args)
    if args.pairs < 1:
        raise TsvaExportError(f"--pairs must be >= 1, got {args.pairs}")
    if not 0 < args.z_step <= args.z_range:
        raise TsvaExportError(f"--z-step must be > 0 and <= --z-range, got {args.z_step} and {args.z_range}")
    textures = load_textures(args.textures, optics.pixel_size_um, min_size=args.patch_size)
    train, val = split_textures(textures, args.holdout or None)
    chosen = train if args.split == "train" else val
    rng = np.random.default_rng(args.seed)
    out = Path(args.zstacks_out)
    for i in range(args.pairs):
        region = augment(_crop_padded(chosen[i % len(chosen)].image, args.patch_size, rng), rng)
        planes, z, focus = simulate_stack(region, optics, sample, rng, args.z_step, args.z_range)
        write_zstack(out / f"stack_{i:04d}.ome.tif", planes, z, focus_z_um=focus, pixel_size_um=optics.pixel_size_um)
    print(f"wrote {args.pairs} z-stacks ({len(z)} planes, step {args.z_step:g} um, {args.patch_size}px) to {out}")
    return 0


def _simulate(args) -> int:
    from PIL import Image

    from ..dataset import build_pool
    from ..textures import load_textures, split_textures

    optics, sample = optics_from_args(args), sample_from_args(args)
    if args.pairs < 1:
        raise TsvaExportError(f"--pairs must be >= 1, got {args.pairs}")
    textures = load_textures(args.textures, optics.pixel_size_um, min_size=args.patch_size)
    train, val = split_textures(textures, args.holdout or None)
    chosen = train if args.split == "train" else val
    from ..distribution import SectionDistribution
    distribution = SectionDistribution() if args.sections == "mixed" else None
    pool = build_pool(chosen, optics, sample, args.pairs, args.patch_size, args.seed, distribution=distribution)
    if args.pool:
        pool.save(args.pool)
        print(f"wrote {len(pool)} pairs ({args.patch_size}px) to {args.pool}")
        return 0
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(len(pool)):
        y1, y2, truth = (t.numpy().transpose(1, 2, 0) for t in pool.tensors(i))
        for name, img in (("y1", y1), ("y2", y2), ("truth", truth)):
            Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)).save(out / f"{i:04d}_{name}.png")
        rows.append({"index": i, "dd_um": float(pool.dd_um[i])})
    (out / "pairs.json").write_text(json.dumps({"optics": optics.to_dict(), "sample": sample.to_dict(),
                                                "pairs": rows}, indent=1))
    print(f"wrote {len(pool)} pairs (y1 = sharper shot, y2, truth) to {out}")
    return 0


def _calibrate(args) -> int:
    from ..calibration import calibrate
    result = calibrate(args.calibrate[0], args.calibrate[1], optics_from_args(args), crop=args.crop)
    print(f"unblurred in-focus image: {result['psnr_unblurred']:.2f} dB")
    print(f"best defocus {result['defocus_um']:.2f} um: PSNR {result['psnr']:.2f} dB "
          f"(with per-channel gain/offset fit: {result['psnr_affine']:.2f} dB)")
    return 0
