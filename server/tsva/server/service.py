"""The grpc.aio servicer of tsva.v1.VirtualAutofocus: a thin translation to the pipeline.

Status codes come from errors.status_of only. FuseTiles answers every request exactly once (a fused
tile or a per-tile error), out of order, with at most `stream_window` tiles of a stream in work:
the stream is not read further until one finishes (and a gateway-wide tile slot is free), so gRPC
flow control pushes back on the client.
"""
from __future__ import annotations

import asyncio
import logging

import grpc

from tsva.server.config import Config
from tsva.server.errors import Overloaded, outcome_label, status_of
from tsva.server.metrics import Metrics
from tsva.server.pipeline import Pipeline
from tsva.v1 import tsva_pb2 as pb
from tsva.v1 import tsva_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
_END = object()


class VirtualAutofocusService(pb_grpc.VirtualAutofocusServicer):
    def __init__(self, config: Config, pipeline: Pipeline, metrics: Metrics, metadata: dict[str, str]):
        self.config, self.pipeline, self.metrics, self.metadata = config, pipeline, metrics, metadata
        self._streams = 0

    def _count(self, code: grpc.StatusCode | None) -> None:
        self.metrics.tiles.labels(outcome_label(code)).inc()

    async def Fuse(self, request: pb.FuseRequest, context: grpc.aio.ServicerContext) -> pb.FuseResponse:
        try:
            response = await self.pipeline.fuse(request)
        except asyncio.CancelledError:
            self._count(_cancel_code(context))
            raise
        except Exception as exc:
            code, message = status_of(exc, request.tile_id)
            self._count(code)
            await context.abort(code, message)
        self._count(None)
        return response

    async def FuseTiles(self, request_iterator, context: grpc.aio.ServicerContext):
        if self._streams >= self.config.max_streams:
            code, message = status_of(Overloaded(
                f"{self._streams} FuseTiles streams open, the limit is {self.config.max_streams}; retry later"))
            await context.abort(code, message)
        self._streams += 1
        self.metrics.inflight_streams.inc()
        results: asyncio.Queue = asyncio.Queue()
        window = asyncio.Semaphore(self.config.stream_window)
        tiles: set[asyncio.Task] = set()

        async def handle(request: pb.FuseRequest, slot) -> None:
            try:
                response = await self.pipeline.fuse(request, slot=slot)
                self._count(None)
            except asyncio.CancelledError:
                self._count(_cancel_code(context))
                raise
            except Exception as exc:
                code, message = status_of(exc, request.tile_id)
                self._count(code)
                response = pb.FuseResponse(
                    tile_id=request.tile_id, slide_id=request.slide_id, position=request.position,
                    error=pb.TileError(code=code.value[0], status=code.name, message=message))
            finally:
                window.release()
            results.put_nowait(response)

        async def read() -> None:
            try:
                async for request in request_iterator:
                    # Hold this request (and read no further) until the stream's window and a
                    # gateway-wide tile slot are free: at most one waiting request per stream.
                    await window.acquire()
                    try:
                        slot = await self.pipeline.admit()
                    except BaseException:
                        window.release()
                        raise
                    task = asyncio.create_task(handle(request, slot))
                    task.add_done_callback(lambda _, slot=slot: slot.release())
                    tiles.add(task)
                    task.add_done_callback(tiles.discard)
                if tiles:
                    await asyncio.gather(*list(tiles))
                results.put_nowait(_END)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the stream itself broke (e.g. an oversized message)
                results.put_nowait(exc)

        reader = asyncio.create_task(read())
        try:
            while True:
                item = await results.get()
                if item is _END:
                    break
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            reader.cancel()
            for task in list(tiles):
                task.cancel()
            await asyncio.gather(reader, *tiles, return_exceptions=True)
            self._streams -= 1
            self.metrics.inflight_streams.dec()

    async def FindFocus(self, request: pb.FindFocusRequest, context: grpc.aio.ServicerContext):
        try:
            return await self.pipeline.find_focus(request)
        except Exception as exc:
            await context.abort(*status_of(exc, request.tile_id or None))

    async def GetInfo(self, request: pb.GetInfoRequest, context: grpc.aio.ServicerContext):
        try:
            return self.pipeline.info(self.metadata)
        except Exception as exc:
            await context.abort(*status_of(exc))


def _cancel_code(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED
