"""What the sync and asyncio clients share: channel settings, request building, error mapping and
the bookkeeping of a FuseTiles stream. No I/O happens here."""
from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from tsva.client import security
from tsva.client.errors import TsvaError
from tsva.client.inputs import ImageSource, output_encoding, to_image
from tsva.client.results import FusePair, FuseResult
from tsva.common.limits import DEFAULT_MAX_MESSAGE_BYTES  # noqa: F401 (part of the client API)
from tsva.v1 import tsva_pb2 as pb

DEFAULT_SERVER = "localhost:50051"


@dataclass(frozen=True)
class ConnectionSettings:
    """Everything needed to open a channel; validated (files read) once, at construction."""

    server: str
    credentials: grpc.ChannelCredentials | None
    metadata: tuple[tuple[str, str], ...]
    options: tuple[tuple[str, Any], ...]
    timeout: float | None

    def open_channel(self, api: Any = grpc):
        """A channel to the server: `api` is grpc (sync) or grpc.aio, whose channel functions match."""
        if self.credentials is None:
            return api.insecure_channel(self.server, options=self.options)
        return api.secure_channel(self.server, self.credentials, options=self.options)


def connection_settings(server: str, tls_ca, tls_cert, tls_key, token: str | None, timeout: float | None,
                        max_message_bytes: int) -> ConnectionSettings:
    """Raises security.SecurityConfigError for unreadable or inconsistent TLS files or a bad token."""
    if not server or not isinstance(server, str):
        raise ValueError(f"server: expected HOST:PORT, got {server!r}")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout: must be > 0 seconds, got {timeout}")
    options = (
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    )
    return ConnectionSettings(server, security.channel_credentials(tls_ca, tls_cert, tls_key),
                              security.token_metadata(token), options, timeout)


def rpc_error(error: grpc.RpcError, server: str) -> TsvaError:
    return TsvaError.from_rpc_error(error, server=server)


def fuse_request(shot_a: ImageSource, shot_b: ImageSource, *, tile_id: str = "", slide_id: str = "",
                 position: Sequence[int] | None = None, defocus_a_um: float = 0.0, defocus_b_um: float = 0.0,
                 output_encoding_: str | int | None = None) -> pb.FuseRequest:
    """A FuseRequest; raises ImageInputError (naming shot_a/shot_b) or ValueError."""
    request = pb.FuseRequest(
        tile_id=str(tile_id), slide_id=str(slide_id), shot_a=to_image(shot_a, "shot_a"),
        shot_b=to_image(shot_b, "shot_b"), defocus_a_um=float(defocus_a_um), defocus_b_um=float(defocus_b_um),
        output_encoding=output_encoding(output_encoding_))
    if position is not None:
        x, y = position
        request.position.x, request.position.y = int(x), int(y)
    return request


def focus_request(planes: Sequence[ImageSource], z_um: Sequence[float], tile_id: str = "") -> pb.FindFocusRequest:
    planes, z_um = list(planes), [float(z) for z in z_um]
    if len(planes) != len(z_um):
        raise ValueError(f"z_um: {len(z_um)} values for {len(planes)} planes (one z per plane)")
    return pb.FindFocusRequest(tile_id=str(tile_id), z_um=z_um,
                               planes=[to_image(p, f"planes[{i}]") for i, p in enumerate(planes)])


def as_pair(item: Any) -> FusePair:
    """A FusePair from what `fuse_stream` accepts: FusePair, dict of its fields, (shot_a, shot_b) or
    (tile_id, shot_a, shot_b)."""
    if isinstance(item, FusePair):
        return item
    if isinstance(item, dict):
        return FusePair(**item)
    if isinstance(item, tuple) and len(item) == 2:
        return FusePair(item[0], item[1])
    if isinstance(item, tuple) and len(item) == 3:
        return FusePair(item[1], item[2], tile_id=str(item[0]))
    raise TypeError(f"expected a FusePair, a dict, (shot_a, shot_b) or (tile_id, shot_a, shot_b); "
                    f"got {type(item).__name__}")


def tile_id_of(index: int, item: Any) -> str:
    """The tile id a pair will be sent with (its index unless it names one)."""
    try:
        tile_id = as_pair(item).tile_id
    except (TypeError, ValueError):
        tile_id = None
    return str(index) if tile_id is None else str(tile_id)


class StreamBook:
    """Bookkeeping of one FuseTiles stream: assigns tile ids, refuses duplicates in flight, matches
    responses to requests and names the tiles left unanswered when a stream breaks.

    Thread-safe: the sync client builds requests in gRPC's sender thread and matches responses in
    the caller's thread.
    """

    def __init__(self, default_encoding: str | int | None = None):
        self._default_encoding = default_encoding
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[int, float]] = {}  # tile id -> (index, send time)

    def prepare(self, index: int, item: Any) -> tuple[pb.FuseRequest | None, FuseResult | None]:
        """(request, None) to send, or (None, failed result) for a pair that cannot be sent."""
        request, failure = self.build(index, item)
        if request is not None:
            failure = self.register(index, request)
        return (None, failure) if failure is not None else (request, None)

    def build(self, index: int, item: Any) -> tuple[pb.FuseRequest | None, FuseResult | None]:
        """The request for a pair, or a failed result; touches no state (safe in any thread)."""
        try:
            pair = as_pair(item)
        except (ValueError, TypeError) as exc:  # not a pair: known by its index (as tile_id_of)
            return None, _invalid_tile(index, str(index), exc)
        tile_id = str(index) if pair.tile_id is None else str(pair.tile_id)
        try:
            encoding = pair.output_encoding if pair.output_encoding is not None else self._default_encoding
            request = fuse_request(pair.shot_a, pair.shot_b, tile_id=tile_id, slide_id=pair.slide_id,
                                   position=pair.position, defocus_a_um=pair.defocus_a_um,
                                   defocus_b_um=pair.defocus_b_um, output_encoding_=encoding)
        except (ValueError, TypeError) as exc:  # ImageInputError is a ValueError
            return None, _invalid_tile(index, tile_id, exc)
        return request, None

    def register(self, index: int, request: pb.FuseRequest) -> FuseResult | None:
        """Records a request as in flight; a failed result if its tile id already is."""
        tile_id = request.tile_id
        with self._lock:
            if tile_id in self._pending:
                return FuseResult.failed(
                    tile_id, grpc.StatusCode.INVALID_ARGUMENT,
                    f"tile_id: {tile_id!r} is already in flight on this stream (tile ids must be unique)",
                    index=index)
            self._pending[tile_id] = (index, time.perf_counter())
        return None

    def complete(self, response: pb.FuseResponse) -> FuseResult:
        with self._lock:
            index, sent = self._pending.pop(response.tile_id, (None, None))
        round_trip = (time.perf_counter() - sent) * 1000.0 if sent is not None else None
        return FuseResult.from_proto(response, index=index, round_trip_ms=round_trip)

    def abandon(self, code: grpc.StatusCode, message: str) -> list[FuseResult]:
        """Failed results for every tile still in flight (the stream ended before answering them)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return [FuseResult.failed(tile_id, code, f"tile {tile_id!r}: {message}", index=index)
                for tile_id, (index, _) in sorted(pending.items(), key=lambda kv: kv[1][0])]

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._pending)


def _invalid_tile(index: int, tile_id: str, exc: Exception) -> FuseResult:
    return FuseResult.failed(tile_id, grpc.StatusCode.INVALID_ARGUMENT, f"tile {tile_id!r}: {exc}", index=index)


def check_window(window: int) -> int:
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window: must be an integer >= 1, got {window!r}")
    return window
