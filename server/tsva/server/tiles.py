"""The data plane's own types: a tile pair in, a fused tile out, a focus survey, the service's
description. No protobuf here: tsva.server.translate converts between these and tsva.v1.

Image encodings are named "raw", "png" and "tiff" (as tsva.common.images.encode_image takes them).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from tsva.common.images import ImageError, as_hwc

ENCODINGS = ("raw", "png", "tiff")


class Shot(Protocol):
    """One image as it arrived, decoded only when the data plane asks (in a worker thread, and a
    RAW image as a view of the received bytes, not a copy)."""

    @property
    def encoding(self) -> str:
        """"raw", "png" or "tiff"; "" when the sender set none (decode() then names the field)."""

    def decode(self, field: str, *, max_width: int | None = None, max_height: int | None = None) -> np.ndarray:
        """H x W x C uint8/uint16 (C = 1 or 3); ImageError naming `field` when unusable or larger
        than the limits."""


@dataclass(frozen=True)
class ArrayShot:
    """A shot already in memory as an H x W (x C) uint8/uint16 array (in-process callers)."""

    pixels: np.ndarray
    encoding: str = "raw"

    def decode(self, field: str, *, max_width: int | None = None, max_height: int | None = None) -> np.ndarray:
        array = as_hwc(self.pixels, field)
        height, width = array.shape[:2]
        if width == 0 or height == 0:
            raise ImageError(f"{field}: size {width}x{height} has a zero dimension")
        if (max_width and width > max_width) or (max_height and height > max_height):
            raise ImageError(f"{field}: size {width}x{height} exceeds the limit {max_width}x{max_height}")
        return array


@dataclass(frozen=True)
class TilePair:
    """Two shots of one tile at known focus offsets; the sharper one (Brenner) becomes Y1."""

    shot_a: Shot
    shot_b: Shot
    defocus_a_um: float = 0.0
    defocus_b_um: float = 0.0
    tile_id: str = ""
    slide_id: str = ""
    position: tuple[int, int] | None = None   # (x, y) on the slide, echoed back
    output_encoding: str | None = None        # None: the encoding shot_a arrived in
    pixel_size_um: float | None = None        # None: not given, not checked


@dataclass
class Timings:
    decode_ms: float = 0.0
    queue_ms: float = 0.0      # submission to its first item entering a backend batch
    inference_ms: float = 0.0  # backend time of the batches that carried its items
    encode_ms: float = 0.0     # stitched to encoded
    total_ms: float = 0.0      # received to encoded


# Turns a fused tile's pixels (H x W x C uint8/uint16) into the caller's image, given the
# encoding name; runs in a worker thread. The servicer's writes them straight into its reply
# message (tsva.server.translate.encode_reply), so the pixels are copied into a message once.
Encoder = Callable[[np.ndarray, str], Any]


def keep_pixels(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """The Encoder of in-process callers: the pixels themselves."""
    return pixels


@dataclass
class FusedTile:
    tile_id: str
    slide_id: str
    position: tuple[int, int] | None
    image: Any                 # what the pipeline's Encoder made of the pixels
    encoding: str
    brenner_a: float
    brenner_b: float
    y1_shot: str               # "a" or "b": the shot fed as Y1 (the sharper; "a" on a tie)
    timings: Timings
    # Focus QC (tsva.server.focus_qc fills these; None / False / "" / 0 without an estimate).
    focus_offset_um: float | None = None
    rescan: bool = False
    rescan_reason: str = ""
    trained_focus_range_um: float = 0.0


@dataclass(frozen=True)
class FocusSurvey:
    """A z-stack of one tile: which plane is in focus (Brenner), and where between planes."""

    planes: Sequence[Shot]
    z_um: Sequence[float]
    tile_id: str = ""


@dataclass(frozen=True)
class FocusResult:
    tile_id: str
    best_index: int
    best_z_um: float
    refined_z_um: float
    brenner: list[float]


@dataclass(frozen=True)
class Optics:
    """The microscope the model was trained for; 0 / empty where its metadata does not say."""

    numerical_aperture: float = 0.0
    refractive_index: float = 0.0
    pixel_size_um: float = 0.0
    wavelengths_um: tuple[float, ...] = ()
    defocus_um: tuple[float, ...] = ()
    focus_sigma_um: float = 0.0


@dataclass(frozen=True)
class ServiceLimits:
    max_tile_width: int
    max_tile_height: int
    max_batch_size: int
    max_message_bytes: int
    max_concurrent_streams: int


@dataclass(frozen=True)
class ServiceInfo:
    service_version: str
    model_name: str
    model_version: str
    backend: str
    optics: Optics
    limits: ServiceLimits
    patch_size: int       # 0: whole tiles
    patch_overlap: int
    model_metadata: dict[str, str] = field(default_factory=dict)
