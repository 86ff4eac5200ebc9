"""The load engine: `concurrency` FuseTiles streams, each keeping `window` tiles in flight (or as
many unary callers), for a number of tiles or seconds after a warm-up.

Latency is request written -> response read, per tile. Each stream has its own channel (its own
TCP connection), like separate scanners. A stream that breaks counts its unanswered tiles as errors
with the stream's status code and reconnects; when every attempt has failed for `give_up_after`
seconds (server gone) the level stops early and says why.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass

import grpc

from tsva.client._core import DEFAULT_MAX_MESSAGE_BYTES
from tsva.client.loadtest.stats import LevelStats
from tsva.client.loadtest.tiles import with_tile_id
from tsva.client.results import status_code
from tsva.v1 import tsva_pb2 as pb

FUSE_TILES = "/tsva.v1.VirtualAutofocus/FuseTiles"
FUSE = "/tsva.v1.VirtualAutofocus/Fuse"


@dataclass(frozen=True)
class Connection:
    server: str
    credentials: grpc.ChannelCredentials | None = None
    metadata: tuple[tuple[str, str], ...] = ()

    def channel(self) -> grpc.aio.Channel:
        # DEFAULT_MAX_MESSAGE_BYTES: two 4096x4096x3 uint16 shots fit, as in the SDK.
        options = [("grpc.max_send_message_length", DEFAULT_MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", DEFAULT_MAX_MESSAGE_BYTES),
                   ("grpc.use_local_subchannel_pool", 1)]  # one TCP connection per channel
        if self.credentials is None:
            return grpc.aio.insecure_channel(self.server, options=options)
        return grpc.aio.secure_channel(self.server, self.credentials, options=options)


def tile_error_status(error: pb.TileError) -> str:
    """The status a failed tile is counted under: the server's name for it, else its code's name."""
    return error.status or status_code(error.code).name


@dataclass(frozen=True)
class LoadSettings:
    concurrency: int
    window: int = 4
    duration_s: float | None = 10.0   # measured seconds after the warm-up ...
    count: int | None = None          # ... or measured tiles (one of the two)
    warmup_s: float = 2.0
    mode: str = "stream"              # or "unary"
    tile_timeout_s: float = 120.0     # deadline of a unary call; a stream with no answer that long stops
    give_up_after_s: float = 5.0


class _Budget:
    """Hands out tiles: unlimited during warm-up, then `count` tiles or until the deadline."""

    def __init__(self, settings: LoadSettings, start: float):
        self.warmup_end = start + settings.warmup_s
        self.deadline = self.warmup_end + settings.duration_s if settings.count is None else None
        self.remaining = settings.count
        self.stopped: str | None = None

    def take(self) -> bool:
        if self.stopped is not None:
            return False
        now = time.perf_counter()
        if now < self.warmup_end:
            return True
        if self.remaining is not None:
            if self.remaining <= 0:
                return False
            self.remaining -= 1
            return True
        return now < self.deadline

    def stop(self, reason: str) -> None:
        if self.stopped is None:
            self.stopped = reason


class LoadRun:
    def __init__(self, connection: Connection, templates: list[bytes], settings: LoadSettings,
                 megapixels_per_tile: float):
        self.connection, self.templates, self.settings = connection, templates, settings
        self.stats = LevelStats(settings.concurrency, settings.window, megapixels_per_tile)
        self._seq = itertools.count()
        self._failing_since: float | None = None  # first failure with no success after it
        self._last_progress = time.perf_counter()

    # -- bookkeeping shared by both modes --------------------------------------------------------
    def _payload(self) -> tuple[str, bytes]:
        n = next(self._seq)
        tile_id = f"lt-{n}"
        return tile_id, with_tile_id(self.templates[n % len(self.templates)], tile_id)

    def _success(self, sent: float) -> None:
        now = time.perf_counter()
        self._failing_since = None
        self._last_progress = now
        self.stats.record_ok(sent, now)

    def _failure(self, sent: float, status: str, message: str, *, connection_level: bool) -> None:
        now = time.perf_counter()
        self._last_progress = now
        self.stats.record_error(sent, now, status, message)
        if connection_level:
            if self._failing_since is None:
                self._failing_since = now
            elif now - self._failing_since > self.settings.give_up_after_s:
                self._budget.stop(f"every call failed for {self.settings.give_up_after_s:g} s "
                                  f"(last: {status}: {message}); server down?")

    async def _backoff(self, attempt: int) -> None:
        await asyncio.sleep(min(0.1 * 2 ** attempt, 1.0))

    # -- streams ---------------------------------------------------------------------------------
    async def _stream_worker(self, channel: grpc.aio.Channel) -> None:
        method = channel.stream_stream(FUSE_TILES, request_serializer=None,
                                       response_deserializer=pb.FuseResponse.FromString)
        attempt = 0
        while self._budget.stopped is None:
            finished = await self._one_stream(method)
            if finished:
                return
            await self._backoff(attempt)
            attempt += 1

    async def _one_stream(self, method) -> bool:
        """One FuseTiles call; True when it ended because the budget is spent, False when it broke
        or the server closed it early."""
        call = method(metadata=self.connection.metadata)
        pending: dict[str, float] = {}
        slots = asyncio.Semaphore(self.settings.window)
        all_sent = False

        async def send() -> None:
            nonlocal all_sent
            try:
                while True:
                    await slots.acquire()
                    if not self._budget.take():
                        break
                    tile_id, payload = self._payload()
                    pending[tile_id] = time.perf_counter()
                    await call.write(payload)
                all_sent = True  # set before the await: the server may close right after our half-close
                await call.done_writing()
            except (grpc.RpcError, asyncio.InvalidStateError):
                pass  # the call broke; the reader sees why

        sender = asyncio.create_task(send())
        try:
            async for response in call:
                sent = pending.pop(response.tile_id, None)
                slots.release()
                if sent is None:
                    self._failure(time.perf_counter(), "UNEXPECTED_TILE_ID",
                                  f"answer for tile {response.tile_id!r}, which was not in flight",
                                  connection_level=False)
                elif response.HasField("error") and response.error.code != 0:
                    self._failure(sent, tile_error_status(response.error), response.error.message,
                                  connection_level=False)
                else:
                    self._success(sent)
            # The server closed the stream. Normally that follows our done_writing(); if it closed
            # first, the sender may wait for a window slot that never frees: stop it, count what
            # went unanswered and open a new stream (repeated early closes feed the give-up timer).
            if not all_sent:
                sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            for sent in pending.values():
                self._failure(sent, "UNANSWERED", "the stream closed without answering", connection_level=True)
            return all_sent
        except grpc.RpcError as exc:
            status = exc.code().name if exc.code() is not None else "UNKNOWN"
            for sent in pending.values():
                self._failure(sent, status, exc.details() or "", connection_level=True)
            if not pending:  # broke before a tile was written: count the attempt itself
                self._failure(time.perf_counter(), status, exc.details() or "", connection_level=True)
            return False
        except asyncio.CancelledError:  # stopped by the watchdog: what was in flight went unanswered
            for sent in pending.values():
                self._failure(sent, "UNANSWERED", f"stopped: {self._budget.stopped}", connection_level=False)
            raise
        finally:
            pending.clear()
            call.cancel()
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    # -- unary -----------------------------------------------------------------------------------
    async def _unary_caller(self, channel: grpc.aio.Channel) -> None:
        method = channel.unary_unary(FUSE, request_serializer=None, response_deserializer=pb.FuseResponse.FromString)
        attempt = 0
        while self._budget.take():
            _, payload = self._payload()
            sent = time.perf_counter()
            try:
                await method(payload, metadata=self.connection.metadata, timeout=self.settings.tile_timeout_s)
            except grpc.RpcError as exc:
                code = exc.code()
                self._failure(sent, code.name, exc.details() or "",
                              connection_level=code == grpc.StatusCode.UNAVAILABLE)
                if code == grpc.StatusCode.UNAVAILABLE:
                    await self._backoff(attempt)
                    attempt += 1
                continue
            attempt = 0
            self._success(sent)

    # -- the level -------------------------------------------------------------------------------
    async def _watchdog(self, workers: list[asyncio.Task]) -> None:
        """Stops a level that makes no progress (a server that hangs instead of failing)."""
        while True:
            await asyncio.sleep(0.5)
            stalled = time.perf_counter() - self._last_progress
            if stalled > self.settings.tile_timeout_s:
                self._budget.stop(f"no answer for {stalled:.0f} s (tile timeout {self.settings.tile_timeout_s:g} s)")
                for task in workers:
                    task.cancel()
                return

    async def run(self) -> LevelStats:
        start = time.perf_counter()
        self._budget = _Budget(self.settings, start)
        self.stats.measure_start = self._budget.warmup_end
        self._last_progress = start
        channels = [self.connection.channel() for _ in range(self.settings.concurrency)]
        if self.settings.mode == "stream":
            workers = [asyncio.create_task(self._stream_worker(ch)) for ch in channels]
        else:
            workers = [asyncio.create_task(self._unary_caller(ch))
                       for ch in channels for _ in range(self.settings.window)]
        watchdog = asyncio.create_task(self._watchdog(workers))
        try:
            await asyncio.gather(*workers, return_exceptions=True)
        finally:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
            await asyncio.gather(*(ch.close() for ch in channels), return_exceptions=True)
        self.stats.aborted = self._budget.stopped
        if self.stats.measure_end is None and self.stats.ok == 0:
            self.stats.measure_end = time.perf_counter()
        return self.stats
