"""Admission: every limit on how much work the gateway takes in, in one place.

- `--max-streams`: FuseTiles streams open at once; one more is refused at once (Overloaded ->
  RESOURCE_EXHAUSTED), the only limit that is not waited for.
- `--stream-window`: tiles of one stream between being read and their reply being handed to gRPC.
  A stream takes a window place before it reads a request and gives it back once the reply has
  been taken by gRPC flow control, so a client that stops reading stops the gateway reading.
- `--max-inflight-tiles`: tiles in work at once over all streams and calls (a gateway-wide slot
  is taken before a stream reads on, so requests waiting for work never pile up in memory).

Two bounds live where they act: the batcher's `--queue-size` (patches waiting for the backend;
a tile waits for room) and gRPC's `--max-calls` (maximum_concurrent_rpcs, set on the server).
"""
from __future__ import annotations

import asyncio

from tsva.server.errors import Overloaded


class TileSlot:
    """One admitted tile; release() is idempotent (also safe from a task's done-callback, for a
    task cancelled before it ever ran)."""

    def __init__(self, semaphore: asyncio.Semaphore):
        self._semaphore: asyncio.Semaphore | None = semaphore

    def release(self) -> None:
        if self._semaphore is not None:
            self._semaphore.release()
            self._semaphore = None


class Admission:
    def __init__(self, *, max_streams: int, stream_window: int, max_inflight_tiles: int):
        self.max_streams, self.stream_window = max_streams, stream_window
        self.max_inflight_tiles = max_inflight_tiles
        self._tile_slots = asyncio.Semaphore(max_inflight_tiles)
        self._streams = 0

    @classmethod
    def from_config(cls, config) -> "Admission":
        return cls(max_streams=config.max_streams, stream_window=config.stream_window,
                   max_inflight_tiles=config.max_inflight_tiles)

    @property
    def streams_open(self) -> int:
        return self._streams

    async def tile_slot(self) -> TileSlot:
        """Waits for one of the gateway-wide tile slots."""
        await self._tile_slots.acquire()
        return TileSlot(self._tile_slots)

    def open_stream(self) -> "StreamAdmission":
        """Admits one more FuseTiles stream, or raises Overloaded when --max-streams are open."""
        if self._streams >= self.max_streams:
            raise Overloaded(f"{self._streams} FuseTiles streams open, the limit is {self.max_streams}; "
                             f"retry later")
        self._streams += 1
        return StreamAdmission(self)

    def _stream_closed(self) -> None:
        self._streams -= 1


class StreamAdmission:
    """The admission of one open stream: its window, and its place among --max-streams (close())."""

    def __init__(self, admission: Admission):
        self._admission = admission
        self._window = asyncio.Semaphore(admission.stream_window)
        self._open = True

    async def admit_request(self) -> TileSlot:
        """Waits for a window place, then for a gateway-wide tile slot: call before reading the
        next request. The window place is given back by reply_taken(), the slot by its release()."""
        await self._window.acquire()
        try:
            return await self._admission.tile_slot()
        except BaseException:
            self._window.release()
            raise

    def reply_taken(self) -> None:
        """A reply of this stream has been handed to gRPC: one more request may be read."""
        self._window.release()

    def close(self) -> None:
        if self._open:
            self._open = False
            self._admission._stream_closed()
