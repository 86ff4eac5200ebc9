"""Synthetic out-of-focus shots for the examples (scikit-image's sample images, Gaussian blur
standing in for defocus; needs scikit-image, which the dev install has)."""
import numpy as np
from skimage import data, filters


def tissue(height=512, width=612, offset=0):
    """An RGB crop of a sample image, at a different place for each offset."""
    image = np.tile(data.astronaut(), (2, 2, 1))
    y, x = (37 * offset) % (image.shape[0] - height), (53 * offset) % (image.shape[1] - width)
    return image[y:y + height, x:x + width]


def defocus(image, sigma):
    blurred = filters.gaussian(image, sigma=sigma, channel_axis=-1 if image.ndim == 3 else None, preserve_range=True)
    return np.round(blurred).astype(image.dtype)


def shot_pair(offset=0, height=512, width=612):
    """Two shots of one tile at slightly different defocus (the tile's focus lies nearer A)."""
    tile = tissue(height, width, offset)
    return defocus(tile, 1.5), defocus(tile, 2.5)
