"""The grpc.aio servicer of tsva.v1.VirtualAutofocus: a thin translation to the pipeline
(tsva.server.translate: protobuf <-> the data plane's types), with the limits of
tsva.server.admission.

Status codes come from errors.status_of only. Requests arrive as bytes and are parsed here
(tsva.server.wire), so a message that does not parse is answered INVALID_ARGUMENT like any other bad
request. FuseTiles answers every request exactly once (a fused tile or a per-tile error), out of
order, with at most `stream_window` tiles of a stream between being read and their reply being
handed to gRPC: the stream is not read further until a reply has been taken by gRPC flow control
(and a gateway-wide tile slot is free), so a client that stops reading stops the gateway reading.
"""
from __future__ import annotations

import asyncio
import logging

import grpc

from tsva.server import translate
from tsva.server.admission import Admission
from tsva.server.errors import Overloaded, outcome_label, status_of
from tsva.server.memory import IdleTrimmer
from tsva.server.metrics import Metrics
from tsva.server.pipeline import Pipeline
from tsva.server.wire import RequestError, parse
from tsva.v1 import tsva_pb2 as pb
from tsva.v1 import tsva_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
_END = object()
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["VirtualAutofocus"].full_name


def add_service(service: "VirtualAutofocusService", server: grpc.aio.Server) -> None:
    """Registers `service` like the generated add_VirtualAutofocusServicer_to_server, but with
    requests handed over as bytes (no request_deserializer): each method parses its own."""
    handlers = {
        "FuseTiles": grpc.stream_stream_rpc_method_handler(
            service.FuseTiles, response_serializer=pb.FuseResponse.SerializeToString),
        "Fuse": grpc.unary_unary_rpc_method_handler(
            service.Fuse, response_serializer=pb.FuseResponse.SerializeToString),
        "FindFocus": grpc.unary_unary_rpc_method_handler(
            service.FindFocus, response_serializer=pb.FindFocusResponse.SerializeToString),
        "GetInfo": grpc.unary_unary_rpc_method_handler(
            service.GetInfo, response_serializer=pb.GetInfoResponse.SerializeToString),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def _ids_of(exc: BaseException, request) -> tuple[str, str]:
    """(tile_id, slide_id) to answer with: what could be recovered of an unusable request."""
    if isinstance(exc, RequestError):
        return exc.tile_id, exc.slide_id
    return getattr(request, "tile_id", ""), getattr(request, "slide_id", "")


class VirtualAutofocusService(pb_grpc.VirtualAutofocusServicer):
    def __init__(self, pipeline: Pipeline, metrics: Metrics, admission: Admission):
        self.pipeline, self.metrics, self.admission = pipeline, metrics, admission
        self._trimmer = IdleTrimmer()  # gives a burst's memory back once no tile is in work

    def _count(self, code: grpc.StatusCode | None) -> None:
        self.metrics.tiles.labels(outcome_label(code)).inc()

    async def Fuse(self, raw: bytes, context: grpc.aio.ServicerContext) -> pb.FuseResponse:
        request = None
        try:
            with self._trimmer.working():
                request = parse(raw, pb.FuseRequest)
                response = translate.fuse_reply(await self.pipeline.fuse(translate.tile_pair(request)))
        except asyncio.CancelledError:
            self._count(_cancel_code(context))
            raise
        except Exception as exc:
            code, message = status_of(exc, _ids_of(exc, request)[0])
            self._count(code)
            await context.abort(code, message)
        self._count(None)
        return response

    async def FuseTiles(self, request_iterator, context: grpc.aio.ServicerContext):
        try:
            stream = self.admission.open_stream()
        except Overloaded as exc:  # --max-streams are open: RESOURCE_EXHAUSTED
            await context.abort(*status_of(exc))
            return
        self.metrics.inflight_streams.inc()
        results: asyncio.Queue = asyncio.Queue()
        tiles: set[asyncio.Task] = set()

        async def handle(raw: bytes, slot) -> None:
            request = None
            try:
                with self._trimmer.working():
                    request = parse(raw, pb.FuseRequest)
                    tile = await self.pipeline.fuse(translate.tile_pair(request), slot=slot)
                    response = translate.fuse_reply(tile)
                self._count(None)
            except asyncio.CancelledError:
                self._count(_cancel_code(context))
                raise
            except Exception as exc:
                tile_id, slide_id = _ids_of(exc, request)
                code, message = status_of(exc, tile_id)
                self._count(code)
                response = pb.FuseResponse(
                    tile_id=tile_id, slide_id=slide_id,
                    position=request.position if request is not None else None,
                    error=pb.TileError(code=code.value[0], status=code.name, message=message))
            results.put_nowait(response)

        async def read() -> None:
            try:
                async for raw in request_iterator:
                    # Hold this request (and read no further) until the stream's window and a
                    # gateway-wide tile slot are free: at most one waiting request per stream.
                    slot = await stream.admit_request()
                    task = asyncio.create_task(handle(raw, slot))
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
                yield item  # resumes once gRPC has taken the message (its write completed)
                stream.reply_taken()
        finally:
            reader.cancel()
            for task in list(tiles):
                task.cancel()
            await asyncio.gather(reader, *tiles, return_exceptions=True)
            stream.close()
            self.metrics.inflight_streams.dec()

    async def FindFocus(self, raw: bytes, context: grpc.aio.ServicerContext):
        request = None
        try:
            request = parse(raw, pb.FindFocusRequest)
            return translate.find_focus_reply(await self.pipeline.find_focus(translate.focus_survey(request)))
        except Exception as exc:
            tile_id = _ids_of(exc, request)[0]
            await context.abort(*status_of(exc, tile_id or None))

    async def GetInfo(self, raw: bytes, context: grpc.aio.ServicerContext):
        try:
            parse(raw, pb.GetInfoRequest)
            return translate.info_reply(self.pipeline.info())
        except Exception as exc:
            await context.abort(*status_of(exc))


def _cancel_code(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED
