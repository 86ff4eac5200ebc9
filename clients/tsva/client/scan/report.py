"""What a scan leaves besides the slide: the per-tile QC CSV, the focus map, the summary."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

QC_COLUMNS = ("tile_id", "x", "y", "status", "focus_offset_um", "rescan", "rescan_reason", "error", "true_focus_offset_um")


@dataclass
class TileQC:
    tile_id: str
    x: int
    y: int
    status: str = "not answered"     # "ok", a gRPC status name, or "not answered"
    focus_offset_um: float | None = None
    rescan: bool = False
    rescan_reason: str = ""
    error: str = ""
    true_focus_offset_um: float | None = None

    def row(self) -> dict:
        fmt = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
        return {"tile_id": self.tile_id, "x": self.x, "y": self.y, "status": self.status,
                "focus_offset_um": fmt(self.focus_offset_um), "rescan": int(self.rescan),
                "rescan_reason": self.rescan_reason, "error": self.error,
                "true_focus_offset_um": fmt(self.true_focus_offset_um)}

    @classmethod
    def from_row(cls, row: dict) -> "TileQC":
        num = lambda v: float(v) if v not in ("", None) else None  # noqa: E731
        return cls(row["tile_id"], int(row["x"]), int(row["y"]), row["status"], num(row["focus_offset_um"]),
                   row["rescan"] == "1", row["rescan_reason"], row["error"], num(row.get("true_focus_offset_um")))


def write_qc_csv(path: Path, rows: list[TileQC]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, QC_COLUMNS)
        writer.writeheader()
        writer.writerows(r.row() for r in rows)


def read_qc_csv(path: Path) -> list[TileQC]:
    with open(path, newline="") as f:
        return [TileQC.from_row(r) for r in csv.DictReader(f)]


def write_focus_map(path: Path, rows: list[TileQC], tiles, width: int, height: int, pixel_size_um: float,
                    limit_um: float) -> str | None:
    """Heat map of the estimated n over the slide, rescan tiles outlined. Returns a reason when skipped."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle
    except ModuleNotFoundError:
        return "focus map skipped: matplotlib is not installed (pip install 'tsva-client[scan]')"
    values = [r.focus_offset_um for r in rows if r.focus_offset_um is not None]
    span = max([abs(v) for v in values] + [limit_um or 1.0, 0.5])
    cmap = plt.get_cmap("coolwarm")
    scale = pixel_size_um / 1000.0  # mm
    fig, ax = plt.subplots(figsize=(7, 7 * height / max(width, 1) + 0.8), dpi=110)
    for r, t in zip(rows, tiles):
        colour = cmap(0.5 + 0.5 * r.focus_offset_um / span) if r.focus_offset_um is not None else (0.8, 0.8, 0.8, 1)
        ax.add_patch(Rectangle((t.x * scale, t.y * scale), t.width * scale, t.height * scale, facecolor=colour,
                               edgecolor="black" if r.rescan else "none", linewidth=1.5 if r.rescan else 0,
                               hatch="//" if r.status not in ("ok",) else None))
    ax.set_xlim(0, width * scale)
    ax.set_ylim(height * scale, 0)
    ax.set_aspect("equal")
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("y (mm)")
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(-span, span))
    fig.colorbar(sm, ax=ax, label="estimated focus offset n (um)", shrink=0.8)
    ax.set_title("Focus map (outlined: rescan; hatched: not fused; grey: no estimate)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return None


@dataclass
class PsnrAccumulator:
    """Sums of squared errors over the slide's pixels, tile share by tile share."""
    sse: dict = field(default_factory=lambda: {"fused": 0.0, "sharper": 0.0})
    pixels: int = 0

    def add(self, truth: np.ndarray, mask: np.ndarray, **images: np.ndarray) -> None:
        t = truth[mask].astype(np.float64)
        for name, image in images.items():
            self.sse[name] += float(((image[mask].astype(np.float64) - t) ** 2).sum())
        self.pixels += int(mask.sum()) * (truth.shape[2] if truth.ndim == 3 else 1)

    def psnr(self, name: str) -> float:
        mse = self.sse[name] / max(self.pixels, 1)
        return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def side_by_side(path: Path, sharper: np.ndarray, fused: np.ndarray, truth: np.ndarray) -> None:
    from PIL import Image, ImageDraw
    gap = 8
    h, w = truth.shape[:2]
    canvas = Image.new("RGB", (3 * w + 2 * gap, h + 24), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, image) in enumerate((("sharper shot", sharper), ("fused", fused), ("truth (in focus)", truth))):
        canvas.paste(Image.fromarray(np.ascontiguousarray(image)), (i * (w + gap), 24))
        draw.text((i * (w + gap) + 4, 4), label, fill="black")
    canvas.save(path)
