"""asyncio Python client of the TSVA service: the same surface as `tsva.client.Client`.

    async with AsyncClient("localhost:50051") as client:
        result = await client.fuse(shot_a, shot_b)
        async for r in client.fuse_stream(pairs, window=8):
            ...
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tsva.client import _core
from tsva.client.errors import TsvaError
from tsva.client.inputs import ImageSource
from tsva.client.results import FocusResult, FuseResult, ServiceInfo
from tsva.v1 import tsva_pb2 as pb
from tsva.v1 import tsva_pb2_grpc

_NOT_GIVEN: Any = object()


class AsyncClient:
    """One grpc.aio channel to a TSVA gateway; `async with` it or `await close()`.

    Arguments as for `tsva.client.Client`. Image files are read and encoded in a worker thread, so
    the event loop stays free.
    """

    def __init__(self, server: str = _core.DEFAULT_SERVER, *, tls_ca=None, tls_cert=None, tls_key=None,
                 token: str | None = None, timeout: float | None = None,
                 max_message_bytes: int = _core.DEFAULT_MAX_MESSAGE_BYTES):
        self._settings = _core.connection_settings(server, tls_ca, tls_cert, tls_key, token, timeout,
                                                   max_message_bytes)
        self._channel = self._settings.open_channel(grpc.aio)
        self._stub = tsva_pb2_grpc.VirtualAutofocusStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    @property
    def server(self) -> str:
        return self._settings.server

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _unary(self, method, request, timeout):
        timeout = self._settings.timeout if timeout is _NOT_GIVEN else timeout
        try:
            return await method(request, timeout=timeout, metadata=self._settings.metadata)
        except grpc.RpcError as exc:
            raise _core.rpc_error(exc, self.server) from None

    async def fuse(self, shot_a: ImageSource, shot_b: ImageSource, *, defocus_a_um: float = 0.0,
                   defocus_b_um: float = 0.0, tile_id: str = "", slide_id: str = "",
                   position: Sequence[int] | None = None, output_encoding: str | int | None = None,
                   timeout: float | None = _NOT_GIVEN) -> FuseResult:
        """Fuses one pair; see `Client.fuse`."""
        request = await asyncio.to_thread(
            _core.fuse_request, shot_a, shot_b, tile_id=tile_id, slide_id=slide_id, position=position,
            defocus_a_um=defocus_a_um, defocus_b_um=defocus_b_um, output_encoding_=output_encoding)
        start = time.perf_counter()
        response = await self._unary(self._stub.Fuse, request, timeout)
        result = FuseResult.from_proto(response, round_trip_ms=(time.perf_counter() - start) * 1000.0)
        return result.raise_for_error()

    async def find_focus(self, planes: Sequence[ImageSource], z_um: Sequence[float], *, tile_id: str = "",
                         timeout: float | None = _NOT_GIVEN) -> FocusResult:
        request = await asyncio.to_thread(_core.focus_request, planes, z_um, tile_id)
        return FocusResult.from_proto(await self._unary(self._stub.FindFocus, request, timeout))

    async def info(self, *, timeout: float | None = _NOT_GIVEN) -> ServiceInfo:
        return ServiceInfo.from_proto(await self._unary(self._stub.GetInfo, pb.GetInfoRequest(), timeout))

    async def health(self, service: str = "", *, timeout: float | None = _NOT_GIVEN) -> str:
        response = await self._unary(self._health.Check, health_pb2.HealthCheckRequest(service=service), timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    async def wait_until_serving(self, timeout: float = 30.0, service: str = "") -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last = "no answer"
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise TsvaError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"{self.server} not SERVING after {timeout:g} s (last: {last})", server=self.server)
            try:
                last = await self.health(service, timeout=min(left, 2.0))
                if last == "SERVING":
                    return
            except TsvaError as exc:
                last = str(exc)
            await asyncio.sleep(min(0.1, max(0.0, deadline - loop.time())))

    def fuse_stream(self, pairs: Iterable[Any] | AsyncIterable[Any], *, window: int = 8,
                    output_encoding: str | int | None = None,
                    timeout: float | None = None) -> AsyncIterator[FuseResult]:
        """Fuses pairs over one FuseTiles stream with up to `window` tiles in flight; an async
        iterator of results in completion order. Same rules as `Client.fuse_stream`; `pairs` may
        be a plain or an async iterable. To stop early, wrap it in `contextlib.aclosing(...)`: the
        stream is cancelled at once instead of when the iterator is garbage-collected."""
        _core.check_window(window)
        return self._fuse_stream(pairs, window, output_encoding, timeout)

    async def _fuse_stream(self, pairs, window, output_encoding, timeout) -> AsyncIterator[FuseResult]:
        book = _core.StreamBook(output_encoding)
        slots = asyncio.Semaphore(window)
        events: asyncio.Queue = asyncio.Queue()
        call = self._stub.FuseTiles(timeout=timeout, metadata=self._settings.metadata)

        taking: list = []  # the pair taken and not yet recorded in `book`, as [(index, item)]

        async def send():
            index = 0
            items = _aiter(pairs)
            try:
                while True:
                    await slots.acquire()  # before taking the pair: `window` bounds what is taken
                    try:
                        item = await anext(items)
                    except StopAsyncIteration:
                        break
                    taking.append((index, item))
                    # Files are read and images encoded in a thread; recording stays in the loop.
                    request, failure = await asyncio.to_thread(book.build, index, item)
                    if request is not None:
                        failure = book.register(index, request)
                    taking.clear()
                    index += 1
                    if failure is not None:
                        events.put_nowait(("result", failure))
                        continue
                    await call.write(request)
                await call.done_writing()
            except (grpc.RpcError, asyncio.InvalidStateError):
                pass  # the stream broke; receive() reports why
            except Exception as exc:  # the caller's iterable raised: finish what was sent, then raise
                events.put_nowait(("raise", exc))
                try:
                    await call.done_writing()
                except (grpc.RpcError, asyncio.InvalidStateError):
                    pass

        async def receive():
            try:
                async for response in call:
                    events.put_nowait(("response", response))
                events.put_nowait(("closed", None))
            except grpc.RpcError as exc:
                events.put_nowait(("failed", exc))

        tasks = [asyncio.create_task(send()), asyncio.create_task(receive())]
        input_error: Exception | None = None
        try:
            while True:
                kind, payload = await events.get()
                # A tile holds its slot until the caller has taken its result (see Client.fuse_stream).
                if kind == "result":
                    yield payload
                    slots.release()
                elif kind == "response":
                    yield book.complete(payload)
                    slots.release()
                elif kind == "raise":
                    input_error = payload
                elif kind == "closed":
                    for result in book.abandon(grpc.StatusCode.INTERNAL, "the server closed the stream without answering"):
                        yield result
                    if input_error is not None:
                        raise input_error
                    return
                else:  # "failed"
                    error = _core.rpc_error(payload, self.server)
                    tasks[0].cancel()
                    await asyncio.gather(tasks[0], return_exceptions=True)
                    while not events.empty():  # pairs that failed here before the stream broke
                        kind, payload = events.get_nowait()
                        if kind == "result":
                            yield payload
                    for index, item in taking:  # taken, not yet sent
                        tile_id = _core.tile_id_of(index, item)
                        yield FuseResult.failed(tile_id, error.code, f"tile {tile_id!r}: stream failed before it "
                                                f"was sent: {error.message}", index=index)
                    for result in book.abandon(error.code, f"stream failed: {error.message}"):
                        yield result
                    raise error
        finally:
            call.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _aiter(items: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if hasattr(items, "__aiter__"):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
