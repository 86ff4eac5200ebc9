"""Accuracy and cost of the gateway's focus QC on simulated pairs with a known focus offset n.

Pairs: the project's optics simulator (tsva-export) with the shipped model's optics and section
(NA 0.75, 0.25 um/px, 4-um section in 5 layers, sensor noise), tissue crops of an H&E image,
n uniform in [-N, N], dD drawn from the trained values, tiles of a scanner's 1224x1024 by default.
The estimator is the gateway's (tsva.server.focus_qc), fed the shots and their offsets as a
FuseRequest carries them. --windows and --prior set the estimator's window count and prior weight
(the gateway's are the defaults), to compare settings on the same pairs.

    .venv/bin/python benchmarks/scan_focus_qc.py --pairs 150 --seed 13 --cache runs/qc_tiles_eval2.npz \
        --json runs/focus_qc.json --figure docs/images/focus_qc.png

Prints one JSON object: median |error| for |n| <= 2 um, the rescan flag rates for |n| > 2.5 um
and |n| < 1.5 um, the estimator's CPU time per tile, and the load average.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

DEFAULT_IMAGE = Path(__file__).resolve().parents[2] / "shared" / "data" / "he" / "cmu1_small_region_0.5um.png"


def make_pairs(image_path: Path, count: int, size: "int | tuple[int, int]", n_max: float, seed: int):
    from tsva.export import optics as op
    from tsva.export.textures import pixel_size_from_name, read_image, rescale_to

    optics, sample = op.Optics(), op.Sample()
    image = read_image(image_path)
    image = rescale_to(image, pixel_size_from_name(image_path, 0.5), optics.pixel_size_um)
    depths = np.linspace(-0.5, 0.5, sample.layers) * sample.thickness_um
    rng = np.random.default_rng(seed)
    height, width = (size, size) if isinstance(size, int) else size
    shots_a, shots_b, meta = [], [], []
    while len(meta) < count:
        y, x = rng.integers(0, image.shape[0] - height), rng.integers(0, image.shape[1] - width)
        texture = image[y: y + height, x: x + width].astype(np.float64)
        if texture.mean() > 0.85:  # blank glass: no estimate is expected there
            continue
        n = round(float(rng.uniform(-n_max, n_max)) / 0.05) * 0.05  # the PSF cache's step
        dd = float(rng.choice(optics.defocus_um))
        masks = op._layer_masks(texture.shape[:2], sample, rng)  # the simulator's own section
        pair = [op.add_sensor_noise(op.image_at(texture, masks, depths, optics, d - n), sample, rng)
                for d in (-dd, dd)]
        a, b = (np.round(p * 255).astype(np.uint8) for p in pair)
        shots_a.append(a), shots_b.append(b), meta.append((n, dd))
    return np.stack(shots_a), np.stack(shots_b), np.array(meta)


def tile_size(text: str) -> "int | tuple[int, int]":
    """256 -> 256 (square); 1224x1024 -> (1024, 1224) as (height, width)."""
    if "x" in text.lower():
        from tsva.client.loadtest.tiles import parse_size
        width, height = parse_size(text)
        return height, width
    return int(text)


def evaluate(shots_a, shots_b, meta, crop: int):
    from tsva.server.focus_qc import FocusEstimator, FocusOptics

    optics = FocusOptics(0.75, 1.0, 0.25, (0.61, 0.53, 0.47), (0.5, 1.0, 1.5, 2.0, 2.5, 3.0), 1.0, 4.0, 5)
    estimator = FocusEstimator(optics, crop=crop)
    estimator.warm_up()
    rows = []
    for a, b, (n, dd) in zip(shots_a, shots_b, meta):
        start = time.process_time()
        e = estimator.estimate(a, b, -dd, dd)
        rows.append((n, dd, np.nan if e.focus_offset_um is None else e.focus_offset_um, e.rescan,
                     time.process_time() - start))
    return np.array(rows, dtype=float)


def summarise(rows) -> dict:
    n, est, flag = rows[:, 0], rows[:, 2], rows[:, 3]
    err = np.abs(est - n)
    inner, far, near = np.abs(n) <= 2.0, np.abs(n) > 2.5, np.abs(n) < 1.5
    by_dd = {f"{dd:g}": round(float(np.nanmedian(err[(rows[:, 1] == dd) & inner])), 3)
             for dd in sorted(set(rows[:, 1])) if ((rows[:, 1] == dd) & inner).any()}
    return {
        "pairs": len(rows), "no_estimate": int(np.isnan(est).sum()),
        "median_abs_error_um_n_le_2": round(float(np.nanmedian(err[inner])), 3),
        "p90_abs_error_um_n_le_2": round(float(np.nanpercentile(err[inner], 90)), 3),
        "median_abs_error_um_by_dd": by_dd,
        "flagged_n_gt_2.5": round(float(flag[far].mean()), 3), "flagged_n_lt_1.5": round(float(flag[near].mean()), 3),
        "cpu_ms_per_tile": round(1000 * float(rows[:, 4].mean()), 1),
        "loadavg": open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else None,
    }


def figure(rows, path: Path, summary: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, est, flag = rows[:, 0], rows[:, 2], rows[:, 3].astype(bool)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=110)
    left.scatter(n[~flag], est[~flag], s=10, label="not flagged")
    left.scatter(n[flag], est[flag], s=10, c="C3", label="rescan")
    lim = np.nanmax(np.abs(np.concatenate([n, est]))) + 0.3
    left.plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
    for v in (-2, 2):
        left.axhline(v, color="grey", lw=0.6, ls=":")
    left.set(xlabel="true focus offset n (um)", ylabel="estimated n (um)", title="Focus QC on simulated pairs")
    left.legend(fontsize=8)
    bins = np.arange(0, np.abs(n).max() + 0.5, 0.5)
    centres, medians = [], []
    for lo in bins[:-1]:
        m = (np.abs(n) >= lo) & (np.abs(n) < lo + 0.5)
        if m.any():
            centres.append(lo + 0.25), medians.append(np.nanmedian(np.abs(est - n)[m]))
    right.bar(centres, medians, width=0.4)
    right.axhline(0.3, color="C3", ls="--", lw=0.8, label="0.3 um")
    right.set(xlabel="|n| (um)", ylabel="median |error| (um)",
              title=f"median |error| for |n|<=2: {summary['median_abs_error_um_n_le_2']} um")
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--size", type=tile_size, default=(1024, 1224),
                        help="simulated tiles: a side (px, square) or WIDTHxHEIGHT, e.g. 1224x1024 (a scanner's tile)")
    parser.add_argument("--crop", type=int, default=256, help="the estimator's crop (px)")
    parser.add_argument("--n-max", type=float, default=3.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, help="npz of the pairs: reused when it exists")
    parser.add_argument("--windows", type=int, help="windows of a tile the fit sums (default: the gateway's)")
    parser.add_argument("--prior", type=float, help="weight of the focus prior (default: the gateway's)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--figure", type=Path)
    args = parser.parse_args()
    if args.cache and args.cache.is_file():
        data = np.load(args.cache)
        shots_a, shots_b, meta = data["a"], data["b"], data["meta"]
    else:
        shots_a, shots_b, meta = make_pairs(args.image, args.pairs, args.size, args.n_max, args.seed)
        if args.cache:
            np.savez(args.cache, a=shots_a, b=shots_b, meta=meta)
    from tsva.server import focus_qc
    if args.windows is not None:
        focus_qc.MAX_WINDOWS = args.windows
    if args.prior is not None:
        focus_qc.PRIOR_WEIGHT = args.prior
    rows = evaluate(shots_a, shots_b, meta, args.crop)
    summary = summarise(rows)
    summary.update(size=args.size, crop=args.crop, n_max=args.n_max, seed=args.seed,
                   windows=focus_qc.MAX_WINDOWS, prior=focus_qc.PRIOR_WEIGHT)
    print(json.dumps(summary))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1))
    if args.figure:
        figure(rows, args.figure, summary)


if __name__ == "__main__":
    main()
