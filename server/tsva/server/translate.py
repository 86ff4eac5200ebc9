"""tsva.v1 messages <-> the data plane's types (tsva.server.tiles).

Requests: field presence (HasField) and enum values are checked here, with the field named in
the error as the API spells it; rules about the tile itself are the pipeline's. A shot stays the
received `Image` message until the pipeline decodes it in a worker thread (RAW data is then a
view of the request's bytes). Replies: the fused pixels are encoded straight into the reply
message (`encode_reply`, the pipeline's Encoder), so they are copied into a message once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tsva.common.images import decode_image, encode_image
from tsva.server.errors import InvalidRequest
from tsva.server.tiles import FocusResult, FocusSurvey, FusedTile, ServiceInfo, TilePair
from tsva.v1 import tsva_pb2 as pb

ENCODING_NAMES = {pb.IMAGE_ENCODING_RAW: "raw", pb.IMAGE_ENCODING_PNG: "png", pb.IMAGE_ENCODING_TIFF: "tiff"}
OUTPUT_ENCODINGS = (pb.IMAGE_ENCODING_UNSPECIFIED, *ENCODING_NAMES)
_SHOTS = {"a": pb.SHOT_A, "b": pb.SHOT_B}


@dataclass(frozen=True)
class ImageShot:
    """A tiles.Shot of a received tsva.v1.Image, decoded by tsva.common.images."""

    image: pb.Image

    @property
    def encoding(self) -> str:
        return ENCODING_NAMES.get(self.image.encoding, "")

    def decode(self, field: str, *, max_width: int | None = None, max_height: int | None = None) -> np.ndarray:
        return decode_image(self.image, field, max_width=max_width, max_height=max_height)


# ---- requests -> domain ----------------------------------------------------------------------

def tile_pair(request: pb.FuseRequest) -> TilePair:
    """Raises InvalidRequest naming the field (the caller adds the tile)."""
    for name in ("shot_a", "shot_b"):
        if not request.HasField(name):
            raise InvalidRequest(f"{name}: missing")
    if request.output_encoding not in OUTPUT_ENCODINGS:
        raise InvalidRequest(f"output_encoding: unknown value {request.output_encoding} "
                             f"(UNSPECIFIED, RAW, PNG or TIFF)")
    return TilePair(
        shot_a=ImageShot(request.shot_a), shot_b=ImageShot(request.shot_b),
        defocus_a_um=request.defocus_a_um, defocus_b_um=request.defocus_b_um,
        tile_id=request.tile_id, slide_id=request.slide_id,
        position=(request.position.x, request.position.y) if request.HasField("position") else None,
        output_encoding=ENCODING_NAMES.get(request.output_encoding),
        pixel_size_um=request.pixel_size_um if request.HasField("pixel_size_um") else None)


def focus_survey(request: pb.FindFocusRequest) -> FocusSurvey:
    return FocusSurvey(planes=[ImageShot(plane) for plane in request.planes], z_um=list(request.z_um),
                       tile_id=request.tile_id)


# ---- domain -> replies -----------------------------------------------------------------------

def encode_reply(pixels: np.ndarray, encoding: str) -> pb.FuseResponse:
    """The pipeline's Encoder: a reply holding only the fused image; fuse_reply adds the rest."""
    reply = pb.FuseResponse()
    encode_image(pixels, encoding, out=reply.fused)
    return reply


def fuse_reply(tile: FusedTile) -> pb.FuseResponse:
    """The FuseResponse of a fused tile; its image as encode_reply made it (else encoded here)."""
    reply = tile.image if isinstance(tile.image, pb.FuseResponse) else encode_reply(tile.image, tile.encoding)
    t = tile.timings
    fields = pb.FuseResponse(
        tile_id=tile.tile_id, slide_id=tile.slide_id, position=_position(tile.position),
        brenner_a=tile.brenner_a, brenner_b=tile.brenner_b, y1_shot=_SHOTS[tile.y1_shot],
        timings=pb.Timings(decode_ms=t.decode_ms, queue_ms=t.queue_ms, inference_ms=t.inference_ms,
                           encode_ms=t.encode_ms, total_ms=t.total_ms),
        rescan=tile.rescan, rescan_reason=tile.rescan_reason, trained_focus_range_um=tile.trained_focus_range_um)
    if tile.focus_offset_um is not None:
        fields.focus_offset_um = tile.focus_offset_um
    reply.MergeFrom(fields)  # small fields only: the image stays where it was written
    return reply


def _position(position: tuple[int, int] | None) -> pb.TilePosition:
    # Replies carry a position (empty when the request had none), as they always have.
    return pb.TilePosition(x=position[0], y=position[1]) if position is not None else pb.TilePosition()


def find_focus_reply(result: FocusResult) -> pb.FindFocusResponse:
    return pb.FindFocusResponse(tile_id=result.tile_id, best_index=result.best_index, best_z_um=result.best_z_um,
                                refined_z_um=result.refined_z_um, brenner=result.brenner)


def info_reply(info: ServiceInfo) -> pb.GetInfoResponse:
    optics, limits = info.optics, info.limits
    return pb.GetInfoResponse(
        service_version=info.service_version, model_name=info.model_name, model_version=info.model_version,
        backend=info.backend,
        optics=pb.Optics(numerical_aperture=optics.numerical_aperture, refractive_index=optics.refractive_index,
                         pixel_size_um=optics.pixel_size_um, wavelengths_um=optics.wavelengths_um,
                         defocus_um=optics.defocus_um, focus_sigma_um=optics.focus_sigma_um),
        limits=pb.Limits(max_tile_width=limits.max_tile_width, max_tile_height=limits.max_tile_height,
                         max_batch_size=limits.max_batch_size, max_message_bytes=limits.max_message_bytes,
                         max_concurrent_streams=limits.max_concurrent_streams),
        patch_size=info.patch_size, patch_overlap=info.patch_overlap, model_metadata=info.model_metadata)
