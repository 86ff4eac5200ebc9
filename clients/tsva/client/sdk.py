"""Synchronous Python client of the TSVA service.

    from tsva.client import Client
    with Client("localhost:50051") as client:
        result = client.fuse(shot_a, shot_b)      # numpy arrays, file paths or PNG/TIFF bytes
        fused = result.image                      # H x W x C numpy array
        for r in client.fuse_stream(pairs, window=8):
            ...                                   # out of order; r.tile_id, r.error
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
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


class Client:
    """One channel to a TSVA gateway. Thread-safe; use as a context manager or call close().

    tls_ca / tls_cert / tls_key: PEM files for TLS (tls_ca alone) or mutual TLS (all three);
    token: a bearer token sent with every call; timeout: deadline in seconds of each unary call.
    """

    def __init__(self, server: str = _core.DEFAULT_SERVER, *, tls_ca=None, tls_cert=None, tls_key=None,
                 token: str | None = None, timeout: float | None = None,
                 max_message_bytes: int = _core.DEFAULT_MAX_MESSAGE_BYTES):
        self._settings = _core.connection_settings(server, tls_ca, tls_cert, tls_key, token, timeout,
                                                   max_message_bytes)
        self._channel = self._settings.open_channel(grpc)
        self._stub = tsva_pb2_grpc.VirtualAutofocusStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    @property
    def server(self) -> str:
        return self._settings.server

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _unary(self, method, request, timeout):
        timeout = self._settings.timeout if timeout is _NOT_GIVEN else timeout
        try:
            return method(request, timeout=timeout, metadata=self._settings.metadata)
        except grpc.RpcError as exc:
            raise _core.rpc_error(exc, self.server) from None

    def fuse(self, shot_a: ImageSource, shot_b: ImageSource, *, defocus_a_um: float = 0.0,
             defocus_b_um: float = 0.0, tile_id: str = "", slide_id: str = "",
             position: Sequence[int] | None = None, output_encoding: str | int | None = None,
             timeout: float | None = _NOT_GIVEN) -> FuseResult:
        """Fuses one pair. Raises TsvaError (bad tile: INVALID_ARGUMENT naming the field) or
        ImageInputError for an input that cannot be read here."""
        request = _core.fuse_request(shot_a, shot_b, tile_id=tile_id, slide_id=slide_id, position=position,
                                     defocus_a_um=defocus_a_um, defocus_b_um=defocus_b_um,
                                     output_encoding_=output_encoding)
        start = time.perf_counter()
        response = self._unary(self._stub.Fuse, request, timeout)
        result = FuseResult.from_proto(response, round_trip_ms=(time.perf_counter() - start) * 1000.0)
        return result.raise_for_error()

    def find_focus(self, planes: Sequence[ImageSource], z_um: Sequence[float], *, tile_id: str = "",
                   timeout: float | None = _NOT_GIVEN) -> FocusResult:
        """Index and z of the sharpest plane of a z-stack, and z refined between the planes."""
        return FocusResult.from_proto(self._unary(self._stub.FindFocus, _core.focus_request(planes, z_um, tile_id),
                                                  timeout))

    def info(self, *, timeout: float | None = _NOT_GIVEN) -> ServiceInfo:
        return ServiceInfo.from_proto(self._unary(self._stub.GetInfo, pb.GetInfoRequest(), timeout))

    def health(self, service: str = "", *, timeout: float | None = _NOT_GIVEN) -> str:
        """The grpc.health.v1 status name of `service` ("" = the whole server), e.g. "SERVING"."""
        response = self._unary(self._health.Check, health_pb2.HealthCheckRequest(service=service), timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def wait_until_serving(self, timeout: float = 30.0, service: str = "") -> None:
        """Blocks until health says SERVING; TsvaError(DEADLINE_EXCEEDED) after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TsvaError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"{self.server} not SERVING after {timeout:g} s (last: {last})", server=self.server)
            try:
                last = self.health(service, timeout=min(left, 2.0))
                if last == "SERVING":
                    return
            except TsvaError as exc:
                last = str(exc)
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def fuse_stream(self, pairs: Iterable[Any], *, window: int = 8, output_encoding: str | int | None = None,
                    timeout: float | None = None) -> Iterator[FuseResult]:
        """Fuses pairs over one FuseTiles stream, keeping up to `window` tiles in flight (taken
        from `pairs` but their results not yet taken by the caller).

        `pairs` yields FusePair, dicts of its fields, (shot_a, shot_b) or (tile_id, shot_a, shot_b);
        it is consumed lazily, so it may be endless. Results come as they are ready, out of order
        (match by `tile_id`, or `index`, the pair's position in `pairs`). A tile that fails, here or
        on the server, is yielded as a result with `error` set; the stream goes on. Only when the
        stream itself breaks (server gone, deadline) are the tiles in flight yielded as errors and
        then a TsvaError raised; pairs not yet taken from `pairs` are left there.
        """
        _core.check_window(window)
        return self._fuse_stream(pairs, window, output_encoding, timeout)

    def _fuse_stream(self, pairs, window, output_encoding, timeout) -> Iterator[FuseResult]:
        book = _core.StreamBook(output_encoding)
        slots = threading.Semaphore(window)
        events: queue.Queue = queue.Queue()  # (kind, payload) from the sender and reader threads
        stop = threading.Event()
        # Held from taking a pair to recording it, so that a broken stream can account for every
        # pair taken (see the "failed" branch below).
        taking = threading.Lock()

        def requests():
            # Runs in gRPC's sender thread: an exception here would cancel the stream, so every
            # failure is turned into an event.
            iterator = iter(pairs)
            index = 0
            try:
                while True:
                    while not slots.acquire(timeout=0.1):
                        if stop.is_set():
                            return
                    with taking:
                        if stop.is_set():
                            return
                        try:
                            item = next(iterator)
                        except StopIteration:
                            return
                        request, failure = book.prepare(index, item)
                    index += 1
                    if failure is not None:
                        events.put(("result", failure))
                        continue
                    yield request
            except Exception as exc:  # the caller's iterable raised
                events.put(("raise", exc))

        call = self._stub.FuseTiles(requests(), timeout=timeout, metadata=self._settings.metadata)

        def read():
            try:
                for response in call:
                    events.put(("response", response))
                events.put(("closed", None))
            except grpc.RpcError as exc:
                events.put(("failed", exc))

        reader = threading.Thread(target=read, name="tsva-fuse-stream-reader", daemon=True)
        reader.start()
        input_error: Exception | None = None
        try:
            while True:
                kind, payload = events.get()
                # A tile holds its slot until the caller has taken its result, so `window` also
                # bounds the results waiting for a slow caller.
                if kind == "result":
                    yield payload
                    slots.release()
                elif kind == "response":
                    yield book.complete(payload)
                    slots.release()
                elif kind == "raise":
                    input_error = payload  # raised once the tiles already sent are answered
                elif kind == "closed":
                    # The server ended the stream cleanly: anything still in flight was not answered.
                    yield from book.abandon(grpc.StatusCode.INTERNAL, "the server closed the stream without answering")
                    if input_error is not None:
                        raise input_error
                    return
                else:  # "failed"
                    error = _core.rpc_error(payload, self.server)
                    stop.set()
                    # Let a pair being taken right now be recorded, so it is answered below. The
                    # bound keeps a caller's iterable that blocks for long from hanging us.
                    if taking.acquire(timeout=10.0):
                        taking.release()
                    while not events.empty():  # pairs that failed here before the stream broke
                        kind, payload = events.get_nowait()
                        if kind == "result":
                            yield payload
                    yield from book.abandon(error.code, f"stream failed: {error.message}")
                    raise error
        finally:
            stop.set()
            call.cancel()
