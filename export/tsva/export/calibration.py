"""Calibration of the simulator against a real in-focus / out-of-focus pair of the same field."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import optimize
from skimage.metrics import peak_signal_noise_ratio

from .optics import Optics, blur
from .textures import read_image


def calibrate(in_focus: str | Path, out_of_focus: str | Path, optics: Optics, crop: int = 512,
              search_um: tuple[float, float] = (0.0, 8.0)) -> dict:
    """Defocus (um) whose PSF best turns `in_focus` into `out_of_focus` on the central crop.
    Also reports the PSNR after a per-channel gain/offset fit (exposure differs between shots)."""
    sharp, blurred = read_image(Path(in_focus)), read_image(Path(out_of_focus))
    if sharp.shape != blurred.shape:
        from .errors import TextureError
        raise TextureError(f"--calibrate: images differ in size ({sharp.shape} vs {blurred.shape})")
    h, w = sharp.shape[:2]
    crop = min(crop, h, w)
    win = (slice((h - crop) // 2, (h + crop) // 2), slice((w - crop) // 2, (w + crop) // 2))
    target = blurred[win].astype(np.float64)

    def score(z: float) -> float:
        return peak_signal_noise_ratio(target, np.clip(blur(sharp, optics, z)[win], 0, 1), data_range=1.0)

    grid = np.arange(search_um[0], search_um[1] + 1e-9, 0.25)
    best_grid = grid[int(np.argmax([score(z) for z in grid]))]
    lo, hi = max(search_um[0], best_grid - 0.25), min(search_um[1], best_grid + 0.25)
    fit = optimize.minimize_scalar(lambda z: -score(z), bounds=(lo, hi), method="bounded",
                                   options={"xatol": 0.01})
    z = float(fit.x)
    simulated = blur(sharp, optics, z)[win]
    affine = np.empty_like(simulated)
    for c in range(simulated.shape[-1]):
        a = np.stack([simulated[..., c].ravel(), np.ones(simulated[..., c].size)], 1)
        coef, *_ = np.linalg.lstsq(a, target[..., c].ravel(), rcond=None)
        affine[..., c] = (a @ coef).reshape(simulated.shape[:2])
    return {
        "defocus_um": z,
        "psnr": float(-fit.fun),
        "psnr_affine": float(peak_signal_noise_ratio(target, np.clip(affine, 0, 1), data_range=1.0)),
        "psnr_unblurred": float(peak_signal_noise_ratio(target, sharp[win], data_range=1.0)),
        "crop": crop,
    }
