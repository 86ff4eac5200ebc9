"""The README's picture and the tour's example pair, from the real in-focus H&E field.

    python scripts/tour_pair.py shots IN_FOCUS.png OUT_DIR      # OUT_DIR/shot_a.png, shot_b.png (dD 1.5 um)
    python scripts/tour_pair.py figure OUT_DIR FIGURE.png       # shot A | shot B | fused | in focus

`shots` simulates the two out-of-focus shots of the field with the training simulator (4-um
section, F - dD and F + dD, sensor noise); `figure` places a crop of each shot, of OUT_DIR/fused.png
(written by `tsva fuse`) and of the in-focus field side by side. Needs the training side
(`scripts/install.sh dev`).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

DD_UM = 1.5
CROP = (384, 384, 640, 640)  # left, top, right, bottom: 256 x 256 px = 64 x 64 um


def shots(in_focus: Path, out_dir: Path) -> None:
    from tsva.export.optics import Optics, Sample, add_sensor_noise, image_at, _layer_masks

    texture = np.asarray(Image.open(in_focus).convert("RGB"), dtype=np.float64) / 255.0
    optics, sample, rng = Optics(), Sample(), np.random.default_rng(0)
    masks = _layer_masks(texture.shape[:2], sample, rng)
    depths = np.linspace(-0.5, 0.5, sample.layers) * sample.thickness_um
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, plane in (("shot_a", -DD_UM), ("shot_b", DD_UM)):
        image = add_sensor_noise(image_at(texture, masks, depths, optics, plane), sample, rng)
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(out_dir / f"{name}.png")
    Image.open(in_focus).convert("RGB").save(out_dir / "in_focus.png")


def figure(out_dir: Path, target: Path) -> None:
    names = [("shot_a.png", f"shot A (F - {DD_UM} um)"), ("shot_b.png", f"shot B (F + {DD_UM} um)"),
             ("fused.png", "TSVA fused"), ("in_focus.png", "in focus (real)")]
    side, label = CROP[2] - CROP[0], 18
    canvas = Image.new("RGB", (len(names) * (side + 8) - 8, side + label), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (name, text) in enumerate(names):
        canvas.paste(Image.open(out_dir / name).convert("RGB").crop(CROP), (i * (side + 8), label))
        draw.text((i * (side + 8) + 4, 3), text, fill="black")
    target.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(target, optimize=True)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("shots", "figure"):
        sys.exit(__doc__)
    (shots if sys.argv[1] == "shots" else figure)(Path(sys.argv[2]), Path(sys.argv[3]))
