"""`tsva evaluate`: the matrix of section thickness x dD (or the user's z-stacks x dD): median [IQR]
PSNR/SSIM and nuclei-count error of TSVA against the baselines; writes evaluation.md,
evaluation.json and the heat map tsva_minus_sharper.png."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import TsvaExportError
from ..paths import DOCS_DIR
from .common import _floats, add_optics_arguments, add_texture_arguments, optics_from_args

HELP = "evaluate against baselines"
RUNS_DIR = Path("runs")  # the working directory's runs/, as `tsva simulate` and `tsva train` write


def run_folder(now: float | None = None) -> Path:
    """A new report folder per run: an evaluation never overwrites another's (nor docs/model)."""
    return RUNS_DIR / time.strftime("evaluate-%Y%m%d-%H%M%S", time.localtime(now))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # tsva.export.evaluate and evaluate_matrix import torch: here, not at the top (`tsva --help` stays fast).
    from ..evaluate import EvalConfig
    from ..evaluate_matrix import THICKNESSES_UM

    E = EvalConfig()
    parser.add_argument("--tsva", metavar="MODEL", help="TSVA checkpoint (.pt) or exported model (.onnx)")
    parser.add_argument("--unet", metavar="MODEL", help="U-Net baseline checkpoint (.pt) or .onnx")
    parser.add_argument("--pairs", type=int, default=E.pairs_per_dd, help="pairs per cell (default %(default)s)")
    parser.add_argument("--patch-size", type=int, default=E.patch_size, help="(default %(default)s)")
    parser.add_argument("--seed", type=int, default=E.seed)
    parser.add_argument("--rl-iterations", type=int, default=E.rl_iterations, help="Richardson-Lucy iterations (default %(default)s)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sections", type=_floats, default=THICKNESSES_UM, metavar="UM,...",
                        help="section thicknesses of the matrix's rows, um (0: one thin plane; default 0,1,2,4)")
    parser.add_argument("--zstacks", metavar="DIR", help="evaluate on pairs cut from the z-stacks in DIR "
                        "instead of simulated sections (one matrix row)")
    parser.add_argument("--reference", metavar="JSON", default=str(DOCS_DIR / "reference_4um.json"),
                        help="evaluation whose 4-um TSVA figures a new model must keep within 0.5 dB "
                             "(default %(default)s; skipped if missing)")
    parser.add_argument("-o", "--output", default=None,
                        help=f"report folder (default: a new {RUNS_DIR}/evaluate-YYYYmmdd-HHMMSS/; the shipped "
                             f"model's report is {DOCS_DIR}: pass it explicitly)")
    add_texture_arguments(parser)
    add_optics_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..evaluate import EvalConfig, Predictor
    from ..evaluate_matrix import (evaluate_matrix, matrix_targets, reference_4um, simulated_pools,
                                   write_matrix_reports, zstack_pools)
    from ..textures import DEFAULT_SOURCE, load_textures, split_textures

    if args.pairs < 1:
        raise TsvaExportError(f"--pairs must be >= 1, got {args.pairs}")
    if not args.sections or any(t < 0 for t in args.sections):
        raise TsvaExportError(f"--sections must be thicknesses >= 0, got {args.sections}")
    optics = optics_from_args(args)
    output = Path(args.output) if args.output else run_folder()  # named by the start time
    cfg = EvalConfig(pairs_per_dd=args.pairs, patch_size=args.patch_size, seed=args.seed,
                     rl_iterations=args.rl_iterations)
    tsva = Predictor(args.tsva, args.threads, expect_arch="tsva") if args.tsva else None
    unet = Predictor(args.unet, args.threads, expect_arch="unet") if args.unet else None
    start = time.monotonic()
    if args.zstacks:
        pools = zstack_pools(args.zstacks, optics, cfg)
        description = (f"z-stacks {args.zstacks}, {args.pairs} {args.patch_size}px pairs per dD cut at "
                       f"truth -/+ dD - n, n ~ N(0, {optics.focus_sigma_um:g} um) in whole z steps")
    else:
        textures = load_textures(args.textures, optics.pixel_size_um, min_size=args.patch_size)
        _, held_out = split_textures(textures, args.holdout or None)
        pools = simulated_pools(held_out, optics, cfg, tuple(args.sections))
        description = (f"held-out {', '.join(t.name for t in held_out)} ({args.textures or DEFAULT_SOURCE}), "
                       f"{args.pairs} simulated {args.patch_size}px pairs per cell, n ~ N(0, "
                       f"{optics.focus_sigma_um:g} um); sections " + ", ".join(f"{t:g}" for t in args.sections)
                       + " um (0: one thin plane, else about one layer per um)")
    result = evaluate_matrix(pools, optics, tsva, unet, cfg, progress=lambda r: print(
        f"section {r['thickness_um']} dD {r['dd_um']:g} um: "
        + ", ".join(f"{m} {v['psnr_median']:.2f} dB" for m, v in r["methods"].items()), flush=True))
    result["targets"] = matrix_targets(result["cells"], None if args.zstacks else reference_4um(args.reference))
    extra = {"command": args.command_line, "tsva_model": args.tsva,
             "unet_model": args.unet, "seconds": time.monotonic() - start}
    paths = write_matrix_reports(result, output, description, extra)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
