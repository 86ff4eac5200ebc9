"""Brenner gradient: the focus measure that orders a pair (Y1 = sharper), as the gateway does."""
from __future__ import annotations

import numpy as np

# ITU-R BT.601 luma weights.
LUMA = np.array([0.299, 0.587, 0.114])


def luminance(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    return image @ LUMA if image.ndim == 3 and image.shape[-1] == 3 else image


def brenner_gradient(image: np.ndarray) -> float:
    """sum((I(x+2, y) - I(x, y))^2) on luminance, x along the image width."""
    lum = luminance(image)
    return float(np.sum((lum[:, 2:] - lum[:, :-2]) ** 2))
