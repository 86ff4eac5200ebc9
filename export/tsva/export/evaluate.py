"""Evaluation on held-out textures: TSVA against the sharper shot, the mean of the shots,
Richardson-Lucy deconvolution with the true PSF, and the single-input U-Net; PSNR/SSIM per dD and
the paper's downstream check (nuclei counted on the haematoxylin channel)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage import color, filters, measure, morphology, restoration
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from tsva.common.contract import INPUT_DD, INPUT_Y1, INPUT_Y2, OUTPUT_X

from .dataset import PairPool, build_pool
from .errors import CheckpointError
from .optics import Optics, Sample, psf
from .textures import Texture

METHODS = ("sharper", "mean", "richardson_lucy", "unet", "tsva")
LABELS = {"sharper": "sharper shot", "mean": "mean of shots", "richardson_lucy": "Richardson-Lucy",
          "unet": "U-Net (1 input)", "tsva": "TSVA"}
NUCLEUS_MIN_AREA_PX = 60  # at 0.25 um/px: nuclei are 5-10 um across, i.e. hundreds of pixels


class Predictor:
    """Runs a trained network from a checkpoint (.pt) or an exported model (.onnx)."""

    def __init__(self, path: str | Path, threads: int = 1, expect_arch: str | None = None):
        self.path = Path(path)
        if self.path.suffix == ".onnx":
            from tsva.common.metadata import read_onnx_metadata

            from .onnx_export import onnx_session
            if not self.path.is_file():
                raise CheckpointError(f"model {self.path}: no such file")
            arch = read_onnx_metadata(self.path).architecture
            if expect_arch and arch and arch != expect_arch:
                raise CheckpointError(f"model {self.path}: holds a {arch!r} network, expected {expect_arch!r}")
            self._session = onnx_session(self.path, threads)
            self._net = None
            self.conditioned = any(i.name == INPUT_DD for i in self._session.get_inputs())
        else:
            import torch

            from .checkpoint import load_checkpoint
            torch.set_num_threads(threads)
            self._net, _ = load_checkpoint(self.path, expect_arch=expect_arch)
            self.conditioned = self._net.config.conditioned

    def __call__(self, y1: np.ndarray, y2: np.ndarray, dd: np.ndarray | None = None) -> np.ndarray:
        """dd [N] or [N, 1] (um) is used only by a defocus-conditioned model."""
        dd = None if dd is None or not self.conditioned else np.asarray(dd, np.float32).reshape(-1, 1)
        if self.conditioned and dd is None:
            raise CheckpointError(f"model {self.path}: conditioned on the defocus, but no dD was given")
        if self._net is None:
            feeds = {INPUT_Y1: y1, INPUT_Y2: y2, **({INPUT_DD: dd} if dd is not None else {})}
            return self._session.run([OUTPUT_X], feeds)[0]
        import torch
        with torch.no_grad():
            return self._net(torch.from_numpy(y1), torch.from_numpy(y2),
                             None if dd is None else torch.from_numpy(dd)).clamp(0, 1).numpy()


def haematoxylin(rgb: np.ndarray) -> np.ndarray:
    return color.rgb2hed(np.clip(rgb, 1e-4, 1))[..., 0]


def count_nuclei(rgb: np.ndarray, threshold: float, h: np.ndarray | None = None) -> int:
    """Nuclei on the haematoxylin channel (`h`, if already computed): threshold, fill, drop
    specks, label."""
    h = haematoxylin(rgb) if h is None else h
    mask = ndimage.binary_fill_holes(h > threshold)
    mask = morphology.remove_small_objects(mask, max_size=NUCLEUS_MIN_AREA_PX)
    return int(measure.label(mask).max())


def richardson_lucy(y1: np.ndarray, optics: Optics, defocus_um: float, iterations: int) -> np.ndarray:
    out = np.empty_like(y1)
    for c, lam in enumerate(optics.wavelengths_um):
        kernel = psf(optics, lam, defocus_um)
        pad = kernel.shape[0] // 2
        # RL models an intensity image; deconvolve the stain (1 - image), reflect-padded borders.
        padded = np.pad(1.0 - y1[..., c], pad, mode="reflect")
        est = restoration.richardson_lucy(padded, kernel, num_iter=iterations, clip=False)
        out[..., c] = 1.0 - est[pad:-pad, pad:-pad]
    return np.clip(out, 0, 1)


@dataclass
class EvalConfig:
    pairs_per_dd: int = 24
    patch_size: int = 256
    seed: int = 1234
    rl_iterations: int = 10
    batch: int = 8


def evaluation_pools(textures: list[Texture], optics: Optics, sample: Sample, cfg: EvalConfig) -> dict[float, PairPool]:
    return {dd: build_pool(textures, optics, sample, cfg.pairs_per_dd, cfg.patch_size, cfg.seed + int(dd * 100),
                           jitter=0.0, progress=False, dd_values=(dd,)) for dd in optics.defocus_um}


def evaluate(pools: dict[float, PairPool], optics: Optics, tsva: Predictor | None, unet: Predictor | None,
             cfg: EvalConfig, progress=None) -> dict:
    per_dd = []
    for dd, pool in pools.items():
        y1s, y2s, truths = (t.numpy() for t in pool.tensors(slice(None)))
        outputs = {"sharper": y1s, "mean": (y1s + y2s) / 2}
        for name, model in (("tsva", tsva), ("unet", unet)):
            if model is not None:
                outputs[name] = np.concatenate([model(y1s[i:i + cfg.batch], y2s[i:i + cfg.batch],
                                                      pool.dd_um[i:i + cfg.batch])
                                                for i in range(0, len(y1s), cfg.batch)])
        scores = {m: {"psnr": [], "ssim": [], "count_error": []} for m in METHODS if m in outputs or m == "richardson_lucy"}
        truth_counts = []
        for i in range(len(pool)):
            truth = truths[i].transpose(1, 2, 0).astype(np.float64)
            images = {m: outputs[m][i].transpose(1, 2, 0).astype(np.float64) for m in outputs}
            images["richardson_lucy"] = richardson_lucy(images["sharper"], optics, float(pool.y1_defocus_um[i]),
                                                        cfg.rl_iterations)
            h_truth = haematoxylin(truth)
            threshold = filters.threshold_otsu(h_truth) if np.ptp(h_truth) > 0 else np.inf
            truth_count = count_nuclei(truth, threshold, h_truth)
            truth_counts.append(truth_count)
            for m, img in images.items():
                scores[m]["psnr"].append(peak_signal_noise_ratio(truth, img, data_range=1.0))
                scores[m]["ssim"].append(structural_similarity(truth, img, data_range=1.0, channel_axis=-1))
                scores[m]["count_error"].append(abs(count_nuclei(img, threshold) - truth_count))
        row = {"dd_um": float(dd), "pairs": len(pool), "truth_nuclei_mean": float(np.mean(truth_counts)), "methods": {}}
        q = lambda v: [float(x) for x in np.percentile(v, [25, 50, 75])]  # noqa: E731
        for m, s in scores.items():
            p25, p50, p75 = q(s["psnr"])
            s25, s50, s75 = q(s["ssim"])
            row["methods"][m] = {"psnr_median": p50, "psnr_iqr": [p25, p75], "ssim_median": s50,
                                 "ssim_iqr": [s25, s75], "nuclei_count_mae": float(np.mean(s["count_error"]))}
        per_dd.append(row)
        if progress:
            progress(row)
    return {"rows": per_dd, "targets": targets(per_dd)}


def targets(rows: list[dict]) -> dict:
    """The issue's quality targets, checked on the measured medians."""
    have = lambda m: all(m in r["methods"] for r in rows)  # noqa: E731
    if not have("tsva"):
        return {}
    gain = {r["dd_um"]: r["methods"]["tsva"]["psnr_median"] - r["methods"]["sharper"]["psnr_median"] for r in rows}
    out = {
        "tsva_ge_sharper_every_dd": all(g >= 0 for g in gain.values()),
        "gain_over_sharper_db": gain,
        "tsva_ge_sharper_plus_4db_at_2_and_3um": all(g >= 4 for d, g in gain.items() if d in (2.0, 3.0)),
    }
    if have("unet"):
        over_unet = float(np.mean([r["methods"]["tsva"]["psnr_median"] - r["methods"]["unet"]["psnr_median"] for r in rows]))
        out["mean_gain_over_unet_db"] = over_unet
        out["tsva_ge_unet_plus_1db"] = over_unet >= 1.0
    return out


def summary_line(result: dict, description: str) -> str:
    rows = result["rows"]
    parts = [f"{description}; median PSNR dB per dD " + ",".join(f"{r['dd_um']:g}" for r in rows) + " um"]
    for m in METHODS:
        if all(m in r["methods"] for r in rows):
            parts.append(f"{LABELS[m]} " + "/".join(f"{r['methods'][m]['psnr_median']:.1f}" for r in rows))
    t = result.get("targets", {})
    if "mean_gain_over_unet_db" in t:
        parts.append(f"TSVA - U-Net mean {t['mean_gain_over_unet_db']:+.2f} dB")
    return "; ".join(parts)


def markdown_table(result: dict) -> str:
    rows = result["rows"]
    methods = [m for m in METHODS if all(m in r["methods"] for r in rows)]
    head = "| dD (um) | pairs | " + " | ".join(f"{LABELS[m]} PSNR [IQR]" for m in methods) + " |"
    lines = [head, "|" + "---|" * (2 + len(methods))]
    for r in rows:
        cells = [f"{r['methods'][m]['psnr_median']:.2f} [{r['methods'][m]['psnr_iqr'][0]:.1f}-{r['methods'][m]['psnr_iqr'][1]:.1f}]"
                 for m in methods]
        lines.append(f"| {r['dd_um']:g} | {r['pairs']} | " + " | ".join(cells) + " |")
    lines += ["", "| dD (um) | " + " | ".join(f"{LABELS[m]} SSIM" for m in methods) + " |",
              "|" + "---|" * (1 + len(methods))]
    for r in rows:
        lines.append(f"| {r['dd_um']:g} | " + " | ".join(
            f"{r['methods'][m]['ssim_median']:.4f} [{r['methods'][m]['ssim_iqr'][0]:.3f}-{r['methods'][m]['ssim_iqr'][1]:.3f}]"
            for m in methods) + " |")
    lines += ["", "| dD (um) | nuclei per patch (truth) | " + " | ".join(f"{LABELS[m]} count MAE" for m in methods) + " |",
              "|" + "---|" * (2 + len(methods))]
    for r in rows:
        lines.append(f"| {r['dd_um']:g} | {r.get('truth_nuclei_mean', float('nan')):.1f} | "
                     + " | ".join(f"{r['methods'][m]['nuclei_count_mae']:.2f}" for m in methods) + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    dds = [r["dd_um"] for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for m in METHODS:
        if all(m in r["methods"] for r in rows):
            med = np.array([r["methods"][m]["psnr_median"] for r in rows])
            lo = np.array([r["methods"][m]["psnr_iqr"][0] for r in rows])
            hi = np.array([r["methods"][m]["psnr_iqr"][1] for r in rows])
            ax.errorbar(dds, med, yerr=[med - lo, hi - med], marker="o", capsize=3, label=LABELS[m])
    ax.set_xlabel("dD (um)")
    ax.set_ylabel("PSNR (dB), median and IQR")
    ax.set_title("Held-out textures")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")  # beside the curves, never over them
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_reports(result: dict, output: Path, description: str, extra: dict) -> dict[str, Path]:
    output.mkdir(parents=True, exist_ok=True)
    result = {**result, "summary": summary_line(result, description), "description": description, **extra}
    paths = {"json": output / "evaluation.json", "markdown": output / "evaluation.md", "plot": output / "psnr_vs_dd.png"}
    paths["json"].write_text(json.dumps(result, indent=1))
    t = result.get("targets", {})
    md = ["# Evaluation on held-out textures", "", description, "", markdown_table(result)]
    if t:
        md += ["Targets (issue 3):", "",
               f"- TSVA >= sharper shot at every dD: {'yes' if t['tsva_ge_sharper_every_dd'] else 'NO'}",
               f"- TSVA >= sharper + 4 dB at dD = 2 and 3 um: {'yes' if t['tsva_ge_sharper_plus_4db_at_2_and_3um'] else 'NO'}"
               f" (gains: " + ", ".join(f"{d:g} um {g:+.2f} dB" for d, g in t["gain_over_sharper_db"].items()) + ")"]
        if "mean_gain_over_unet_db" in t:
            md.append(f"- TSVA >= U-Net + 1 dB averaged over dD: {'yes' if t['tsva_ge_unet_plus_1db'] else 'NO'}"
                      f" ({t['mean_gain_over_unet_db']:+.2f} dB)")
        md.append("")
    md.append(f"Command: `{extra.get('command', '')}`")
    paths["markdown"].write_text("\n".join(md) + "\n")
    plot(result, paths["plot"])
    return paths
