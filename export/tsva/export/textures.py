"""H&E textures for the simulator: loading, checking, rescaling to the optics' pixel size,
train/validation split by whole image, and augmentation (flips, rotations, stain jitter)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from skimage import color, transform

from .errors import TextureError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
# `cmu1_small_region_0.5um.png` -> 0.5 um/px
_PIXEL_SIZE_IN_NAME = re.compile(r"_(\d+(?:\.\d+)?)um(?:_|\.|$)")
DEFAULT_TEXTURE_PIXEL_SIZE_UM = 0.5
# The default textures: two small H&E fields shipped with the package (MIT, see data/he/LICENSE).
DEFAULT_DIR = Path(__file__).resolve().parent / "data" / "he"
DEFAULT_SOURCE = "the packaged H&E fields (tsva/export/data/he)"


@dataclass
class Texture:
    name: str
    image: np.ndarray  # float32 HxWx3 in [0, 1], at the optics' pixel size


def _as_rgb(array: np.ndarray, name: str) -> np.ndarray:
    if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 1):
        raise TextureError(f"texture {name}: grayscale image; H&E textures must be RGB")
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise TextureError(f"texture {name}: expected an RGB image, got shape {array.shape}")
    if array.shape[-1] == 4:
        alpha = array[..., 3]
        if alpha.min() < np.iinfo(array.dtype).max if array.dtype.kind == "u" else alpha.min() < 1:
            raise TextureError(f"texture {name}: RGBA image with transparent pixels; "
                               "give an RGB image (transparency has no meaning on a slide)")
        array = array[..., :3]  # fully opaque alpha carries no information
    unit = unit_float(array)
    if unit is None:
        raise TextureError(f"texture {name}: unsupported pixel type {array.dtype}")
    return unit


def unit_float(array: np.ndarray) -> np.ndarray | None:
    """uint8/uint16/float pixels as float32 in [0, 1]; None for any other pixel type."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if array.dtype.kind == "f":
        return np.clip(array, 0, 1).astype(np.float32)
    return None


def read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            array = np.asarray(im)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise TextureError(f"texture {path}: unreadable image ({exc})") from None
    return _as_rgb(array, str(path))


def pixel_size_from_name(path: Path, default_um: float) -> float:
    match = _PIXEL_SIZE_IN_NAME.search(path.name)
    return float(match.group(1)) if match else default_um


def rescale_to(image: np.ndarray, from_um: float, to_um: float) -> np.ndarray:
    if abs(from_um - to_um) < 1e-9:
        return image
    scaled = transform.rescale(image, from_um / to_um, channel_axis=-1, anti_aliasing=from_um < to_um,
                               order=3, mode="reflect")
    return np.clip(scaled, 0, 1).astype(np.float32)


def load_textures(directory: str | Path | None, pixel_size_um: float, min_size: int,
                  default_texture_pixel_size_um: float = DEFAULT_TEXTURE_PIXEL_SIZE_UM) -> list[Texture]:
    """All images of `directory` (None: the packaged H&E fields), at `pixel_size_um`.
    A texture's own pixel size comes from its name (`..._0.5um.png`) or the default."""
    directory = Path(directory if directory is not None else DEFAULT_DIR)
    if not directory.is_dir():
        raise TextureError(f"--textures {directory}: not a directory")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise TextureError(f"--textures {directory}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in it")
    images = [(p.name, read_image(p), pixel_size_from_name(p, default_texture_pixel_size_um)) for p in files]
    textures = []
    for name, image, size_um in images:
        image = rescale_to(image, size_um, pixel_size_um)
        if min(image.shape[:2]) < min_size:
            raise TextureError(f"texture {name}: {image.shape[1]}x{image.shape[0]} px at {pixel_size_um} um/px "
                               f"is smaller than a training patch with margin ({min_size} px)")
        textures.append(Texture(name, image))
    return textures


def split_textures(textures: list[Texture], holdout: list[str] | None = None) -> tuple[list[Texture], list[Texture]]:
    """Whole images held out for validation: those named in `holdout`, by default the last one.
    A single image is cut into two disjoint parts instead (left 3/4 train, right 1/4 validation)."""
    if len(textures) == 1:
        t = textures[0]
        cut = t.image.shape[1] * 3 // 4
        return [Texture(t.name + "[train]", t.image[:, :cut])], [Texture(t.name + "[val]", t.image[:, cut:])]
    names = [t.name for t in textures]
    holdout = holdout or [names[-1]]
    unknown = [h for h in holdout if h not in names]
    if unknown:
        raise TextureError(f"--holdout {', '.join(unknown)}: not among the textures ({', '.join(names)})")
    train = [t for t in textures if t.name not in holdout]
    if not train:
        raise TextureError("--holdout names every texture; nothing is left for training")
    return train, [t for t in textures if t.name in holdout]


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    y = rng.integers(0, h - size + 1)
    x = rng.integers(0, w - size + 1)
    return image[y:y + size, x:x + size]


def stain_jitter(image: np.ndarray, rng: np.random.Generator, strength: float = 0.05) -> np.ndarray:
    """Scale and shift each stain (haematoxylin, eosin, DAB) in optical-density space."""
    hed = color.rgb2hed(image)
    hed = hed * rng.uniform(1 - 4 * strength, 1 + 4 * strength, 3) + rng.uniform(-strength, strength, 3) * 0.1
    return np.clip(color.hed2rgb(hed), 0, 1).astype(np.float32)


def augment(image: np.ndarray, rng: np.random.Generator, jitter: float = 0.05) -> np.ndarray:
    image = np.rot90(image, k=int(rng.integers(4)))
    if rng.random() < 0.5:
        image = image[:, ::-1]
    if jitter > 0:
        image = stain_jitter(np.ascontiguousarray(image), rng, jitter)
    return np.ascontiguousarray(image)
