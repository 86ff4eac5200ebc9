"""What the SDK returns: plain dataclasses built from the tsva.v1 responses."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from tsva.common import images
from tsva.client.errors import TsvaError
from tsva.client.inputs import ImageSource, encoding_for_path
from tsva.v1 import tsva_pb2 as pb

_SHOT_NAMES = {pb.SHOT_A: "A", pb.SHOT_B: "B"}


@dataclass
class FusePair:
    """One tile pair for `fuse_stream`. tile_id None: the pair's index in the stream is used."""

    shot_a: ImageSource
    shot_b: ImageSource
    tile_id: str | None = None
    slide_id: str = ""
    position: tuple[int, int] | None = None  # slide pixels of the tile's top-left corner
    defocus_a_um: float = 0.0
    defocus_b_um: float = 0.0
    output_encoding: str | int | None = None  # None/"same", "raw", "png", "tiff"


@dataclass
class Timings:
    """Server-side timings in ms, plus the round trip the client measured."""

    decode_ms: float = 0.0
    queue_ms: float = 0.0
    inference_ms: float = 0.0
    encode_ms: float = 0.0
    total_ms: float = 0.0
    round_trip_ms: float | None = None

    @classmethod
    def from_proto(cls, msg: pb.Timings, round_trip_ms: float | None = None) -> "Timings":
        return cls(msg.decode_ms, msg.queue_ms, msg.inference_ms, msg.encode_ms, msg.total_ms, round_trip_ms)


@dataclass
class TileError:
    """Why one tile of a stream failed (the stream itself goes on)."""

    code: grpc.StatusCode
    message: str

    @property
    def status(self) -> str:
        return self.code.name

    def to_exception(self) -> TsvaError:
        return TsvaError(self.code, self.message)


def status_code(value: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN


@dataclass
class FuseResult:
    """The answer for one tile: the fused tile (`image`, `fused`) or `error`.

    `index` is the pair's position in the input of `fuse_stream` (None for `fuse`).
    """

    tile_id: str
    slide_id: str = ""
    position: tuple[int, int] = (0, 0)
    fused: pb.Image | None = None
    brenner_a: float = 0.0
    brenner_b: float = 0.0
    y1_shot: str | None = None  # "A" or "B": the sharper shot, fed to the network as Y1
    timings: Timings = field(default_factory=Timings)
    error: TileError | None = None
    index: int | None = None
    # Focus QC: estimated focus offset n in um (None: not estimated) and whether to rescan the tile.
    focus_offset_um: float | None = None
    rescan: bool = False
    rescan_reason: str = ""
    trained_focus_range_um: float = 0.0
    _image: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, msg: pb.FuseResponse, *, index: int | None = None,
                   round_trip_ms: float | None = None) -> "FuseResult":
        error = None
        if msg.HasField("error") and msg.error.code != 0:
            error = TileError(status_code(msg.error.code), msg.error.message)
        return cls(
            tile_id=msg.tile_id, slide_id=msg.slide_id, position=(msg.position.x, msg.position.y),
            fused=msg.fused if msg.HasField("fused") and error is None else None,
            brenner_a=msg.brenner_a, brenner_b=msg.brenner_b, y1_shot=_SHOT_NAMES.get(msg.y1_shot),
            timings=Timings.from_proto(msg.timings, round_trip_ms), error=error, index=index,
            focus_offset_um=msg.focus_offset_um if msg.HasField("focus_offset_um") else None,
            rescan=msg.rescan, rescan_reason=msg.rescan_reason, trained_focus_range_um=msg.trained_focus_range_um)

    @classmethod
    def failed(cls, tile_id: str, code: grpc.StatusCode, message: str, *, index: int | None = None) -> "FuseResult":
        return cls(tile_id=tile_id, error=TileError(code, message), index=index)

    @property
    def ok(self) -> bool:
        return self.error is None

    def raise_for_error(self) -> "FuseResult":
        if self.error is not None:
            raise self.error.to_exception()
        return self

    @property
    def image(self) -> np.ndarray:
        """The fused tile as an H x W x C uint8/uint16 array (C = 1 or 3), decoded once."""
        self.raise_for_error()
        if self._image is None:
            if self.fused is None:
                raise TsvaError(grpc.StatusCode.INTERNAL, f"tile {self.tile_id!r}: the response holds no fused image")
            self._image = images.decode_image(self.fused, "fused")
        return self._image

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the fused tile as PNG or TIFF (by extension); the server's encoding is kept
        when it already matches, so no pixel is re-encoded."""
        path = Path(path)
        encoding = encoding_for_path(path)
        self.raise_for_error()
        if self.fused is not None and self.fused.encoding == encoding:
            data = self.fused.data
        else:
            data = images.encode_image(self.image, encoding).data
        path.write_bytes(data)
        return path

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the fused tile."""
        if self.fused is not None and self.fused.width and self.fused.height:
            return self.fused.width, self.fused.height
        height, width = self.image.shape[:2]
        return width, height

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no pixels)."""
        out: dict[str, Any] = {"tile_id": self.tile_id, "slide_id": self.slide_id, "position": list(self.position),
                               "index": self.index, "ok": self.ok}
        if self.error is not None:
            out["error"] = {"code": self.error.code.value[0], "status": self.error.status,
                            "message": self.error.message}
        else:
            out.update(brenner_a=self.brenner_a, brenner_b=self.brenner_b, y1_shot=self.y1_shot,
                       timings=dataclasses.asdict(self.timings), focus_offset_um=self.focus_offset_um,
                       rescan=self.rescan, rescan_reason=self.rescan_reason)
            if self.fused is not None:
                out["fused"] = {"encoding": images.encoding_name(self.fused.encoding), "width": self.fused.width,
                                "height": self.fused.height, "channels": self.fused.channels,
                                "pixel_type": pb.PixelType.Name(self.fused.pixel_type)}
        return out


@dataclass
class FocusResult:
    """The sharpest plane of a z-stack by Brenner gradient."""

    best_index: int
    best_z_um: float
    refined_z_um: float  # three-point parabola through the scores around the maximum
    brenner: list[float]
    tile_id: str = ""

    @classmethod
    def from_proto(cls, msg: pb.FindFocusResponse) -> "FocusResult":
        return cls(msg.best_index, msg.best_z_um, msg.refined_z_um, list(msg.brenner), msg.tile_id)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Optics:
    numerical_aperture: float = 0.0
    refractive_index: float = 0.0
    pixel_size_um: float = 0.0
    wavelengths_um: list[float] = field(default_factory=list)
    defocus_um: list[float] = field(default_factory=list)  # the dD values the model was trained for
    focus_sigma_um: float = 0.0


@dataclass
class Limits:
    max_tile_width: int = 0
    max_tile_height: int = 0
    max_batch_size: int = 0
    max_message_bytes: int = 0
    max_concurrent_streams: int = 0


@dataclass
class ServiceInfo:
    """Service, model and limits, from GetInfo."""

    service_version: str
    model_name: str
    model_version: str
    backend: str
    optics: Optics
    limits: Limits
    patch_size: int
    patch_overlap: int
    model_metadata: dict[str, str]

    @classmethod
    def from_proto(cls, msg: pb.GetInfoResponse) -> "ServiceInfo":
        o, lim = msg.optics, msg.limits
        return cls(
            service_version=msg.service_version, model_name=msg.model_name, model_version=msg.model_version,
            backend=msg.backend,
            optics=Optics(o.numerical_aperture, o.refractive_index, o.pixel_size_um, list(o.wavelengths_um),
                          list(o.defocus_um), o.focus_sigma_um),
            limits=Limits(lim.max_tile_width, lim.max_tile_height, lim.max_batch_size, lim.max_message_bytes,
                          lim.max_concurrent_streams),
            patch_size=msg.patch_size, patch_overlap=msg.patch_overlap, model_metadata=dict(msg.model_metadata))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
