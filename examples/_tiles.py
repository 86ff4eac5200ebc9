"""Synthetic out-of-focus shots for the examples: an H&E-like texture drawn with numpy and Pillow
(both in the light client install, so the examples run wherever `tsva` does), blurred by Pillow's
Gaussian filter standing in for defocus."""
import numpy as np
from PIL import Image, ImageFilter


def _blobs(rng, height, width, scale):
    """Smooth random field in [0, 1] with features about `scale` pixels across."""
    small = rng.random((height // scale + 2, width // scale + 2))
    field = Image.fromarray(np.uint8(small * 255)).resize((width + 2 * scale, height + 2 * scale), Image.BICUBIC)
    return np.asarray(field, dtype=np.float32)[scale:scale + height, scale:scale + width] / 255.0


def tissue(height=512, width=612, offset=0):
    """An RGB tile of pink stroma with purple nuclei, different for each offset."""
    rng = np.random.default_rng(offset)
    nuclei = np.clip((_blobs(rng, height, width, 12) - 0.62) * 8, 0, 1)   # haematoxylin: dark purple
    stroma = 0.35 + 0.5 * _blobs(rng, height, width, 40)                 # eosin: pink, uneven
    white = np.array([245, 240, 245], np.float32)
    eosin, haematoxylin = np.array([40, 110, 60], np.float32), np.array([150, 170, 90], np.float32)
    rgb = white - stroma[..., None] * eosin - nuclei[..., None] * haematoxylin
    return np.clip(rgb, 0, 255).astype(np.uint8)


def defocus(image, sigma):
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(float(sigma))))


def shot_pair(offset=0, height=512, width=612):
    """Two shots of one tile at slightly different defocus (the tile's focus lies nearer A)."""
    tile = tissue(height, width, offset)
    return defocus(tile, 1.5), defocus(tile, 2.5)
