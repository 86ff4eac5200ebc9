"""Evaluation as a matrix: section thickness {0, 1, 2, 4} um x dD {0.5, ..., 3} um (or the user's
z-stacks x dD), median [IQR] PSNR/SSIM and nuclei-count error of every method in every cell, the
quality targets checked on the medians, markdown + JSON + a heat map of TSVA minus the sharper shot.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .dataset import PairPool, build_pool
from .evaluate import LABELS, METHODS, EvalConfig, Predictor, evaluate, markdown_table
from .optics import Optics, Sample
from .textures import Texture

THICKNESSES_UM = (0.0, 1.0, 2.0, 4.0)
ZSTACKS = "z-stacks"  # the matrix row of real stacks


def section(thickness_um: float) -> Sample:
    """The evaluated section of a thickness: one thin plane at 0, else about one layer per um
    (4 um in 5 layers: the shipped model's training section)."""
    if thickness_um <= 0:
        return Sample(thickness_um=0.0, layers=1)
    return Sample(thickness_um=float(thickness_um), layers=int(round(thickness_um)) + 1)


def simulated_pools(textures: list[Texture], optics: Optics, cfg: EvalConfig,
                    thicknesses=THICKNESSES_UM) -> dict[float, dict[float, PairPool]]:
    """{thickness: {dD: pool}}; each cell its own seed, the same for every model evaluated."""
    return {t: {dd: build_pool(textures, optics, section(t), cfg.pairs_per_dd, cfg.patch_size,
                               cfg.seed + int(dd * 100) + int(t * 10_000), jitter=0.0, progress=False,
                               dd_values=(dd,))
                for dd in optics.defocus_um}
            for t in thicknesses}


def zstack_pools(directory: str | Path, optics: Optics, cfg: EvalConfig) -> dict[str, dict[float, PairPool]]:
    from .zstack import build_stack_pool, read_zstacks
    stacks = read_zstacks(directory)
    return {ZSTACKS: {dd: build_stack_pool(stacks, (dd,), cfg.pairs_per_dd, cfg.patch_size, optics.focus_sigma_um,
                                           cfg.seed + int(dd * 100), source=str(directory))
                      for dd in optics.defocus_um}}


def evaluate_matrix(pools: dict, optics: Optics, tsva: Predictor | None, unet: Predictor | None,
                    cfg: EvalConfig, progress=None) -> dict:
    cells = []
    for thickness, per_dd in pools.items():
        result = evaluate(per_dd, optics, tsva, unet, cfg)
        for row in result["rows"]:
            row["thickness_um"] = thickness
            cells.append(row)
            if progress:
                progress(row)
    return {"cells": cells, "targets": matrix_targets(cells)}


def _label(thickness) -> str:
    return thickness if isinstance(thickness, str) else f"{thickness:g} um"


def _gain(cell: dict, method: str, over: str = "sharper") -> float:
    return cell["methods"][method]["psnr_median"] - cell["methods"][over]["psnr_median"]


def matrix_targets(cells: list[dict], reference_4um: dict[float, float] | None = None) -> dict:
    """The quality the shipped model must reach, on the medians of every cell."""
    if not cells or not all("tsva" in c["methods"] for c in cells):
        return {}
    gains = [_gain(c, "tsva") for c in cells]
    far = [_gain(c, "tsva") for c in cells if c["dd_um"] >= 2.0]
    out = {
        "worst_gain_over_sharper_db": float(min(gains)),
        "every_cell_ge_sharper_plus_0_5db": bool(min(gains) >= 0.5),
        "worst_gain_over_sharper_at_dd_ge_2_db": float(min(far)) if far else None,
        "dd_ge_2_ge_sharper_plus_4db": bool(far) and bool(min(far) >= 4.0),
    }
    if all("unet" in c["methods"] for c in cells):
        over = float(np.mean([_gain(c, "tsva", "unet") for c in cells]))
        out["mean_gain_over_unet_db"] = over
        out["tsva_ge_unet_plus_1_5db"] = over >= 1.5
    if reference_4um:
        drops = {c["dd_um"]: c["methods"]["tsva"]["psnr_median"] - reference_4um[c["dd_um"]]
                 for c in cells if c.get("thickness_um") == 4.0 and c["dd_um"] in reference_4um}
        if drops:
            out["change_vs_reference_4um_db"] = drops
            out["no_4um_cell_below_reference_minus_0_5db"] = bool(min(drops.values()) >= -0.5)
    return out


def reference_4um(path: str | Path) -> dict[float, float] | None:
    """TSVA medians per dD of a per-dD evaluation JSON of the 4-um section (the figures to keep)."""
    path = Path(path)
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    rows = data.get("rows") or [c for c in data.get("cells", []) if c.get("thickness_um") == 4.0]
    ref = {float(r["dd_um"]): r["methods"]["tsva"]["psnr_median"] for r in rows if "tsva" in r["methods"]}
    return ref or None


def _matrix_table(cells: list[dict], cell_text) -> str:
    """Markdown table of section rows x dD columns; a missing cell stays empty."""
    dds = sorted({c["dd_um"] for c in cells})
    rows = list(dict.fromkeys(c["thickness_um"] for c in cells))
    by = {(c["thickness_um"], c["dd_um"]): c for c in cells}
    lines = ["| section \\ dD (um) | " + " | ".join(f"{d:g}" for d in dds) + " |", "|---|" + "---|" * len(dds)]
    for t in rows:
        lines.append(f"| {_label(t)} | " + " | ".join(
            cell_text(by[t, d]) if (t, d) in by else "" for d in dds) + " |")
    return "\n".join(lines) + "\n"


def gain_table(cells: list[dict], method: str = "tsva", over: str = "sharper") -> str:
    return _matrix_table(cells, lambda cell: f"{_gain(cell, method, over):+.2f}")


def median_table(cells: list[dict], method: str) -> str:
    return _matrix_table(cells, lambda cell: f"{cell['methods'][method]['psnr_median']:.2f}")


def summary_line(result: dict, description: str) -> str:
    cells, t = result["cells"], result.get("targets", {})
    parts = [description]
    for m in ("sharper", "tsva", "unet"):
        if all(m in c["methods"] for c in cells):
            parts.append(f"{LABELS[m]} median PSNR dB per section/dD " + "; ".join(
                f"{_label(c['thickness_um'])}/{c['dd_um']:g} {c['methods'][m]['psnr_median']:.1f}" for c in cells))
    if "worst_gain_over_sharper_db" in t:
        parts.append(f"TSVA - sharper worst cell {t['worst_gain_over_sharper_db']:+.2f} dB")
    if "mean_gain_over_unet_db" in t:
        parts.append(f"TSVA - U-Net mean {t['mean_gain_over_unet_db']:+.2f} dB")
    return "; ".join(parts)


def heat_map(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = result["cells"]
    dds = sorted({c["dd_um"] for c in cells})
    rows = list(dict.fromkeys(c["thickness_um"] for c in cells))
    grid = np.full((len(rows), len(dds)), np.nan)
    for c in cells:
        grid[rows.index(c["thickness_um"]), dds.index(c["dd_um"])] = _gain(c, "tsva")
    fig, ax = plt.subplots(figsize=(1.1 * len(dds) + 2.5, 0.7 * len(rows) + 1.6))
    lim = max(1.0, float(np.nanmax(np.abs(grid))))
    im = ax.imshow(grid, cmap="RdYlGn", vmin=-lim, vmax=lim, aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(j, i, f"{v:+.1f}", ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(dds)), [f"{d:g}" for d in dds])
    ax.set_yticks(range(len(rows)), [_label(t) for t in rows])
    ax.set_xlabel("dD (um)")
    ax.set_ylabel("section")
    ax.set_title("TSVA minus sharper shot, median PSNR (dB)")
    fig.colorbar(im, ax=ax, label="dB")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _yes(flag) -> str:
    return "yes" if flag else "NO"


def write_matrix_reports(result: dict, output: Path, description: str, extra: dict) -> dict[str, Path]:
    output.mkdir(parents=True, exist_ok=True)
    result = {**result, "summary": summary_line(result, description), "description": description, **extra}
    paths = {"json": output / "evaluation.json", "markdown": output / "evaluation.md",
             "heat_map": output / "tsva_minus_sharper.png"}
    paths["json"].write_text(json.dumps(result, indent=1))
    cells, t = result["cells"], result.get("targets", {})
    md = ["# Evaluation: section thickness x dD", "", description, ""]
    if t:
        md += ["## TSVA minus the sharper shot (median PSNR, dB)", "", gain_table(cells),
               "![TSVA minus sharper shot](tsva_minus_sharper.png)", ""]
        if all("unet" in c["methods"] for c in cells):
            md += ["## TSVA minus the single-input U-Net (median PSNR, dB)", "", gain_table(cells, "tsva", "unet")]
        md += ["## Targets", "",
               f"- every cell: TSVA >= sharper shot + 0.5 dB: {_yes(t['every_cell_ge_sharper_plus_0_5db'])} "
               f"(worst cell {t['worst_gain_over_sharper_db']:+.2f} dB)"]
        if t.get("worst_gain_over_sharper_at_dd_ge_2_db") is not None:
            md.append(f"- dD >= 2 um: TSVA >= sharper shot + 4 dB: {_yes(t['dd_ge_2_ge_sharper_plus_4db'])} "
                      f"(worst cell {t['worst_gain_over_sharper_at_dd_ge_2_db']:+.2f} dB)")
        if "mean_gain_over_unet_db" in t:
            md.append(f"- TSVA >= U-Net + 1.5 dB averaged over all cells: {_yes(t['tsva_ge_unet_plus_1_5db'])} "
                      f"({t['mean_gain_over_unet_db']:+.2f} dB)")
        if "change_vs_reference_4um_db" in t:
            md.append(f"- 4-um section: no cell more than 0.5 dB below the reference: "
                      f"{_yes(t['no_4um_cell_below_reference_minus_0_5db'])} (" + ", ".join(
                          f"{d:g} um {v:+.2f} dB" for d, v in t["change_vs_reference_4um_db"].items()) + ")")
        md.append("")
    for m in METHODS:
        if all(m in c["methods"] for c in cells):
            md += [f"## {LABELS[m]}: median PSNR (dB)", "", median_table(cells, m)]
    for thickness in dict.fromkeys(c["thickness_um"] for c in cells):
        md += [f"## Section {_label(thickness)}: every method, median [IQR]", "",
               markdown_table({"rows": [c for c in cells if c["thickness_um"] == thickness]})]
    md.append(f"Command: `{extra.get('command', '')}`")
    paths["markdown"].write_text("\n".join(md) + "\n")
    heat_map(result, paths["heat_map"])
    return paths
