"""Typed errors of the pipeline and the ONE place that maps them to gRPC status codes."""
from __future__ import annotations

import logging

import grpc

from tsva.common.images import ImageError
from tsva.server.backends.base import BackendUnavailable

log = logging.getLogger(__name__)


class InvalidRequest(ValueError):
    """A request field that cannot be used; the message names the field."""


class Overloaded(RuntimeError):
    """The gateway cannot take this work now and waiting is not possible (e.g. too many streams)."""


_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (ImageError, grpc.StatusCode.INVALID_ARGUMENT),
    (BackendUnavailable, grpc.StatusCode.UNAVAILABLE),
    (Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (TimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED),
)


QUOTED_ID_CHARS = 64  # ids are quoted in messages cut to this (a message travels as metadata)


def quote_id(tile_id: str) -> str:
    """`tile_id` quoted for a message: in full when short, else its start and its length."""
    if len(tile_id) <= QUOTED_ID_CHARS:
        return repr(tile_id)
    return f"{tile_id[:QUOTED_ID_CHARS]!r}... ({len(tile_id.encode('utf-8', errors='replace'))} bytes)"


def status_of(exc: BaseException, tile_id: str | None = None) -> tuple[grpc.StatusCode, str]:
    """(status code, message) for `exc`; the message names the tile when there is one."""
    where = f"tile {quote_id(tile_id)}: " if tile_id is not None else ""
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code, where + (str(exc) or code.name.lower())
    # A bug, not the client's fault: log the traceback (it holds no pixel data), answer briefly.
    log.error("internal error on %s", "a tile" if tile_id is not None else "a request",
              exc_info=(type(exc), exc, exc.__traceback__))
    return grpc.StatusCode.INTERNAL, where + f"internal error ({type(exc).__name__}); see the gateway log"


def outcome_label(code: grpc.StatusCode | None) -> str:
    """The tsva_tiles_total outcome label: "ok" or the status name in lower case."""
    return "ok" if code is None or code == grpc.StatusCode.OK else code.name.lower()
