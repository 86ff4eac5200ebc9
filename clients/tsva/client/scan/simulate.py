"""`--simulate IMAGE`: a two-shot scan of a large in-focus H&E image taken as the specimen.

As the paper scans: a z-stack of the first tile (here: the tile with the most tissue) -> FindFocus
-> the focal plane F; then two shots of
every tile at F - dD and F + dD, while the tile's true focus follows a smooth, tilted and uneven
focus surface F0 + s(x, y). The section is the simulator's layered one (tsva-export's optics): its
layer masks are drawn once for the whole slide (at 1/8 resolution, then interpolated), so
overlapping tiles see the same specimen. Needs the training-side package tsva-export.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .manifest import Slide, Tile

MASK_SCALE = 8
STACK_Z_UM = tuple(np.round(np.arange(-3.0, 3.01, 0.75), 2))
STACK_CROP = 256
Z_QUANTUM_UM = 0.05  # the focus drive's step


class SimulationUnavailable(RuntimeError):
    pass


def _export():
    try:
        from tsva.export import optics, textures
    except ModuleNotFoundError as exc:
        raise SimulationUnavailable(
            f"--simulate needs the training-side package tsva-export (missing module {exc.name}); "
            f"install it with scripts/install.sh dev, or scan a manifest instead") from None
    return optics, textures


@dataclass
class SimulatedTile:
    shot_a: np.ndarray
    shot_b: np.ndarray
    truth: np.ndarray
    focus_offset_um: float   # true n of the tile: its focus minus F


class Simulator:
    def __init__(self, image: str | Path, *, image_pixel_um: float | None, dd_um: float, tile: tuple[int, int],
                 overlap: int, tilt_um: float, unevenness_um: float, seed: int, max_tiles: int | None = None):
        optics_mod, textures = _export()
        self._optics_mod = optics_mod
        self.optics, self.sample = optics_mod.Optics(), optics_mod.Sample()
        path = Path(image)
        source_um = image_pixel_um or textures.pixel_size_from_name(path, textures.DEFAULT_TEXTURE_PIXEL_SIZE_UM)
        self.specimen = textures.rescale_to(textures.read_image(path), source_um, self.optics.pixel_size_um)
        self.dd_um, self.seed = float(dd_um), int(seed)
        self.tile_w, self.tile_h = tile
        height, width = self.specimen.shape[:2]
        if width < self.tile_w or height < self.tile_h:
            raise ValueError(f"--simulate: the image is {width}x{height} px at {self.optics.pixel_size_um} um/px, "
                             f"smaller than one {self.tile_w}x{self.tile_h} tile")
        rng = np.random.default_rng(seed)
        self.depths = (np.linspace(-0.5, 0.5, self.sample.layers) * self.sample.thickness_um
                       if self.sample.layers > 1 else np.zeros(1))
        self._logits = self._mask_field(rng, height, width)
        self._surface = self._focus_surface(rng, height, width, tilt_um, unevenness_um)
        self.margin = optics_mod.psf_radius_px(self.optics, self.sample.thickness_um / 2 + self.dd_um + 4.0,
                                              max(self.optics.wavelengths_um))
        self.focal_plane_um = 0.0
        xs = _positions(width, self.tile_w, overlap)
        ys = _positions(height, self.tile_h, overlap)
        tiles = [Tile(i + 1, f"r{r:03d}c{c:03d}", x, y, self.tile_w, self.tile_h, None, None,
                      -self.dd_um, self.dd_um)
                 for i, (r, c, x, y) in enumerate((r, c, x, y) for r, y in enumerate(ys) for c, x in enumerate(xs))]
        if max_tiles:
            tiles = tiles[:max_tiles]
        digest = hashlib.sha256(f"{path.resolve()}|{path.stat().st_size}|{source_um}|{dd_um}|{tile}|{overlap}|"
                                f"{tilt_um}|{unevenness_um}|{seed}|{max_tiles}".encode()).hexdigest()[:16]
        self.slide = Slide(tiles, max(t.x + t.width for t in tiles), max(t.y + t.height for t in tiles),
                           self.optics.pixel_size_um, path.stem, 3, f"simulated from {path}", f"simulate:{digest}")

    def _mask_field(self, rng, height, width):
        from scipy import ndimage
        small = rng.normal(size=(self.sample.layers, height // MASK_SCALE + 3, width // MASK_SCALE + 3))
        small = ndimage.gaussian_filter(small, sigma=(0, self.sample.layer_smoothness_px / MASK_SCALE,
                                                      self.sample.layer_smoothness_px / MASK_SCALE))
        return small / (small.std() + 1e-12)

    @staticmethod
    def _focus_surface(rng, height, width, tilt_um, unevenness_um):
        """Smooth tilted, uneven surface on a coarse grid (um of true focus above the nominal plane)."""
        from scipy import ndimage
        gy, gx = np.mgrid[0:17, 0:17] / 16.0
        angle = rng.uniform(0, 2 * math.pi)
        tilt = tilt_um * ((gx - 0.5) * math.cos(angle) + (gy - 0.5) * math.sin(angle))
        bumps = ndimage.gaussian_filter(rng.normal(size=(17, 17)), 3.0)
        bumps *= unevenness_um / (np.abs(bumps).max() + 1e-12)
        return tilt + bumps

    def surface_at(self, x: float, y: float) -> float:
        """The true focus at (x, y), to the stage's 0.05-um step (so the simulator's PSF cache serves
        most tiles)."""
        height, width = self.specimen.shape[:2]
        from scipy import ndimage
        value = ndimage.map_coordinates(self._surface, [[16 * y / height], [16 * x / width]], order=1,
                                        mode="nearest")[0]
        return round(float(value) / Z_QUANTUM_UM) * Z_QUANTUM_UM

    def _section(self, x0, y0, w, h):
        """Texture and layer masks of a region, with a margin for the blur (reflected at the image's edge)."""
        from scipy import ndimage
        m = self.margin
        height, width = self.specimen.shape[:2]
        ys = np.clip(np.arange(y0 - m, y0 + h + m), 0, height - 1)
        xs = np.clip(np.arange(x0 - m, x0 + w + m), 0, width - 1)
        texture = self.specimen[np.ix_(ys, xs)].astype(np.float64)
        gy, gx = np.meshgrid(ys / MASK_SCALE, xs / MASK_SCALE, indexing="ij")
        logits = np.stack([ndimage.map_coordinates(layer, [gy, gx], order=1) for layer in self._logits])
        weights = np.exp(2.0 * logits)
        return texture, weights / weights.sum(axis=0, keepdims=True)

    def _image(self, texture, masks, plane_um):
        return self._optics_mod.image_at(texture, masks, self.depths, self.optics, plane_um)

    def _to_uint8(self, image, rng=None):
        if rng is not None:
            image = self._optics_mod.add_sensor_noise(image, self.sample, rng)
        return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)

    @property
    def focus_tile(self) -> Tile:
        """The tile the z-stack is taken of: the one with the most tissue contrast (a scanner
        focuses on tissue, not on glass)."""
        contrast = [float(self.specimen[t.y: t.y + t.height: 8, t.x: t.x + t.width: 8].std()) for t in self.slide.tiles]
        return self.slide.tiles[int(np.argmax(contrast))]

    def z_stack(self) -> tuple[list[np.ndarray], list[float]]:
        """Planes of the focus tile's centre at nominal heights z (noisy shots)."""
        t = self.focus_tile
        size = min(STACK_CROP, t.width, t.height)
        x0, y0 = t.x + (t.width - size) // 2, t.y + (t.height - size) // 2
        texture, masks = self._section(x0, y0, size, size)
        focus = self.surface_at(x0 + size / 2, y0 + size / 2)
        rng = np.random.default_rng(self.seed + 1)
        m = self.margin
        planes = [self._to_uint8(self._image(texture, masks, z - focus), rng)[m:-m, m:-m] for z in STACK_Z_UM]
        return planes, list(STACK_Z_UM)

    def tile(self, tile: Tile) -> SimulatedTile:
        texture, masks = self._section(tile.x, tile.y, tile.width, tile.height)
        cx, cy = tile.centre
        focus = self.surface_at(cx, cy)               # the tile's true focus, nominal heights
        rng = np.random.default_rng([self.seed, tile.row])
        m = self.margin
        crop = lambda a: a[m:m + tile.height, m:m + tile.width]  # noqa: E731
        shots = [crop(self._to_uint8(self._image(texture, masks, self.focal_plane_um + d - focus), rng))
                 for d in (tile.defocus_a_um, tile.defocus_b_um)]
        truth = crop(self._to_uint8(self._image(texture, masks, 0.0)))
        return SimulatedTile(shots[0], shots[1], truth, focus - self.focal_plane_um)


def _positions(length: int, tile: int, overlap: int) -> list[int]:
    step = max(tile - overlap, 1)
    count = max(1, math.ceil((length - tile) / step) + 1)
    return [min(i * step, length - tile) for i in range(count)]
