"""Simulated tile pairs for load tests: an H&E-like texture (pink stroma, purple nuclei) blurred two
ways, like the two out-of-focus shots of a scanner. Never flat or zero, so the gateway does the
same work (Brenner order, patching, inference, encoding) as on real tiles.

Only numpy and Pillow, the client's own dependencies.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tsva.common import images
from tsva.common.brenner import LUMA_WEIGHTS
from tsva.v1 import tsva_pb2 as pb


@dataclass(frozen=True)
class TileSpec:
    width: int = 1224
    height: int = 1024
    channels: int = 3
    pixel_type: str = "uint8"  # or "uint16"
    encoding: str = "raw"      # raw, png or tiff

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


def parse_size(text: str, minimum: int = 16) -> tuple[int, int]:
    """'1224x1024' -> (1224, 1024); ValueError naming the expected form (`tsva loadtest` and
    `tsva scan --tile-size`)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--tile-size: expected WIDTHxHEIGHT such as 1224x1024, got {text!r}") from None
    if width < minimum or height < minimum:
        raise ValueError(f"--tile-size: {width}x{height} is too small ({minimum}x{minimum} at least)")
    return width, height


def he_texture(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """An in-focus RGB tile that looks like H&E-stained tissue."""
    # Stroma: pink with slow variations of stain density (low-resolution noise, upsampled smoothly).
    coarse = rng.uniform(0.55, 1.0, size=(max(2, height // 64), max(2, width // 64))).astype(np.float32)
    density = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC))
    pink = np.array([236, 170, 205], np.float32)
    base = 255 - (255 - pink)[None, None, :] * density[..., None]
    fibres = rng.normal(0, 10, size=(height, width, 1)).astype(np.float32)  # fine fibre texture
    tile = Image.fromarray(np.clip(base + fibres, 0, 255).astype(np.uint8))
    # Nuclei: dark purple ellipses, densest where the stain is.
    draw = ImageDraw.Draw(tile)
    for _ in range(width * height // 900):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(3, 9), rng.uniform(3, 9)
        shade = rng.integers(40, 110)
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=(shade + 40, shade, shade + 90))
    return tile.filter(ImageFilter.GaussianBlur(0.7))  # optics never deliver hard edges


def shot_pair(spec: TileSpec, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two out-of-focus shots of one simulated tile: different blur on each side of focus, noise."""
    rng = np.random.default_rng(seed)
    tile = he_texture(spec.width, spec.height, rng)
    radius_a, radius_b = rng.uniform(1.0, 2.5), rng.uniform(2.5, 4.0)  # the tile's focus offset n != 0
    shots = []
    for radius in (radius_a, radius_b):
        shot = np.asarray(tile.filter(ImageFilter.GaussianBlur(radius)), np.float32)
        shot = shot + rng.normal(0, 2.0, size=shot.shape).astype(np.float32)  # sensor noise
        if spec.channels == 1:
            shot = shot @ np.array(LUMA_WEIGHTS, np.float32)
            shot = shot[..., None]
        if spec.pixel_type == "uint16":
            shots.append(np.clip(shot * 257.0, 0, 65535).astype(np.uint16))
        else:
            shots.append(np.clip(shot, 0, 255).astype(np.uint8))
    return shots[0], shots[1]


def request_template(spec: TileSpec, seed: int, defocus_um: float = 1.0) -> bytes:
    """A serialized FuseRequest without tile_id. Protobuf parses concatenated messages as one merged
    message, so `template + FuseRequest(tile_id=...).SerializeToString()` is a full request: the
    7.5 MB of pixels are encoded once, not once per tile."""
    shot_a, shot_b = shot_pair(spec, seed)
    request = pb.FuseRequest(slide_id="loadtest", shot_a=images.encode_image(shot_a, spec.encoding),
                             shot_b=images.encode_image(shot_b, spec.encoding),
                             defocus_a_um=-defocus_um, defocus_b_um=defocus_um)
    return request.SerializeToString()


def with_tile_id(template: bytes, tile_id: str) -> bytes:
    return template + pb.FuseRequest(tile_id=tile_id).SerializeToString()
