"""Builds and runs the gateway: gRPC server (service, health, reflection), metrics endpoint,
backend and batcher; health follows backend readiness; SIGTERM/SIGINT shut down gracefully.
"""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from prometheus_client import REGISTRY
from threadpoolctl import threadpool_limits

from tsva.server import memory, security, translate
from tsva.server.admission import Admission
from tsva.server.backends import create_backend
from tsva.server.backends.base import Backend
from tsva.server.backends.embedded import ModelLoadError
from tsva.server.batcher import MicroBatcher
from tsva.server.config import CPU_WHOLE_TILES_PER_BATCH, Config, ConfigError
from tsva.server.metrics import Metrics, serve_metrics
from tsva.server.pipeline import Pipeline
from tsva.server.service import VirtualAutofocusService, add_service
from tsva.common.metadata import read_onnx_props
from tsva.v1 import tsva_pb2 as pb

log = logging.getLogger("tsva.server")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["VirtualAutofocus"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class StartupError(RuntimeError):
    """The gateway cannot start (model, port, security files); the message says why."""


def model_metadata(config: Config, backend: Backend) -> dict[str, str]:
    """The backend's model metadata; with Triton, the local ONNX file's metadata fills the gaps."""
    metadata: dict[str, str] = {}
    if config.backend != "embedded" and Path(config.model_path).is_file():
        with contextlib.suppress(Exception):
            metadata.update(read_onnx_props(config.model_path))
    metadata.update(backend.model_info().metadata)
    return metadata


class Health:
    """grpc.health.v1 status of the whole server and of tsva.v1.VirtualAutofocus, following the backend."""

    def __init__(self, backend: Backend, metrics: Metrics, interval_s: float):
        self.servicer = health_aio.HealthServicer()
        self.backend, self.metrics, self.interval_s = backend, metrics, interval_s
        self._task: asyncio.Task | None = None
        self._status: int | None = None
        self._pending: set[asyncio.Task] = set()

    async def set(self, serving: bool) -> None:
        status = SERVING if serving else NOT_SERVING
        self.metrics.backend_up.set(1 if serving else 0)
        if status != self._status:
            self._status = status
            log.log(logging.INFO if serving else logging.WARNING, "health: %s",
                    health_pb2.HealthCheckResponse.ServingStatus.Name(status))
            for service in ("", SERVICE_NAME):
                await self.servicer.set(service, status)

    def backend_failed(self, error: Exception) -> None:
        log.warning("backend failure: %s", error)
        task = asyncio.get_running_loop().create_task(self.set(False))
        self._pending.add(task)  # keep a reference until it has run
        task.add_done_callback(self._pending.discard)

    async def _probe(self) -> None:
        while True:
            try:
                ready = await asyncio.wait_for(self.backend.ready(), timeout=max(self.interval_s, 1.0) * 5)
            except Exception:
                ready = False
            await self.set(ready)
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._probe())

    async def shutdown(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.servicer.enter_graceful_shutdown()


def warn_if_open(config: Config, port: int, tls: bool, metrics: Metrics) -> None:
    """A plaintext, token-less gRPC port on a non-loopback address takes calls from anyone who can
    reach it: say so (the container-friendly default binds 0.0.0.0) and export it as a metric."""
    try:
        loopback = ipaddress.ip_address(config.host).is_loopback
    except ValueError:
        loopback = config.host == "localhost"
    exposed = not tls and not config.token_file and not loopback
    metrics.open_port.set(1 if exposed else 0)
    if exposed:
        log.warning("the gRPC port on %s:%d is plaintext and needs no token: anyone who can reach it can "
                    "use it. Lock it down with --token-file, --tls-cert/--tls-key (--tls-client-ca for "
                    "mutual TLS), or bind --host 127.0.0.1 behind a proxy", config.host, port)


async def serve(config: Config) -> int:
    """Runs until SIGTERM/SIGINT; returns the process exit status."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    memory.configure()  # tile buffers reused from the heap while tiles flow, trimmed when idle
    # One BLAS thread: tiles already run in parallel on the gateway's threads and ONNX Runtime has
    # its own pool; OpenBLAS threads on top spin against both (Brenner's matrix-vector product of
    # one tile took 240 instead of 3 ms on two busy cores).
    blas = threadpool_limits(1, user_api="blas")  # noqa: F841 (the limit holds while referenced)
    metrics = Metrics(REGISTRY)  # the registry the metrics endpoint serves (with process_* metrics)
    backend = create_backend(config, metrics)
    try:
        await backend.start()
    except Exception as exc:
        raise StartupError(f"backend {config.backend}: {exc}") from None
    info = backend.model_info()
    max_batch = min(config.max_batch, info.max_batch_size) if info.max_batch_size > 0 else config.max_batch
    health = Health(backend, metrics, config.health_interval_s)
    batcher = MicroBatcher(backend, max_batch=max_batch, max_delay_s=config.max_delay_ms / 1000.0,
                           max_whole_tiles=CPU_WHOLE_TILES_PER_BATCH if config.large_tile_side(info.device) else None,
                           queue_size=config.queue_size, concurrency=config.effective_backend_concurrency,
                           timeout_s=config.backend_timeout_s, metrics=metrics,
                           on_backend_error=health.backend_failed)
    admission = Admission.from_config(config)
    try:
        pipeline = Pipeline(config, backend, batcher, metrics, admission, metadata=model_metadata(config, backend),
                            encoder=translate.encode_reply)
    except ConfigError as exc:  # the patch plan does not fit the served model
        raise StartupError(str(exc)) from None

    try:
        credentials = security.server_credentials(config.tls_cert, config.tls_key, config.tls_client_ca)
        interceptors = security.auth_interceptors(config.token_file)
    except security.SecurityConfigError as exc:
        raise StartupError(str(exc)) from None
    # maximum_concurrent_rpcs bounds unary calls too (each holds its request in memory while it
    # waits for a tile slot); beyond it gRPC answers RESOURCE_EXHAUSTED.
    server = grpc.aio.server(interceptors=interceptors, maximum_concurrent_rpcs=config.max_calls, options=[
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        # Workers share the port; a lone gateway must fail on a port that is taken.
        ("grpc.so_reuseport", 1 if config.workers > 1 else 0),
        ("grpc.http2.bdp_probe", 0),
    ])
    add_service(VirtualAutofocusService(pipeline, metrics, admission), server)
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server)
    address = f"{config.host}:{config.port}"
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError as exc:
        raise StartupError(f"--port: cannot bind {address} ({exc})") from None
    if port == 0:
        raise StartupError(f"--port: cannot bind {address}")

    metrics_server = None
    if config.metrics_port:
        try:
            metrics_server, _ = serve_metrics(config.metrics_host, config.metrics_port, metrics.registry)
        except OSError as exc:
            raise StartupError(f"--metrics-port: cannot bind {config.metrics_host}:{config.metrics_port} "
                               f"({exc})") from None

    batcher.start()
    await server.start()
    health.start()
    log.info("serving tsva.v1 on %s:%d (%s, model %s %s, backend %s, %s tensors, %s)%s", config.host, port,
             "TLS" if credentials else "plaintext", info.name, info.version, backend.name, info.contract.name,
             f"{pipeline.patch_side}-px patches" if pipeline.patch_side else "whole tiles",
             f"; metrics on http://{config.metrics_host}:{config.metrics_port}/metrics" if metrics_server else "")
    warn_if_open(config, port, bool(credentials), metrics)
    await stop.wait()

    log.info("shutting down: finishing in-flight work for up to %.0f s", config.grace_s)
    # Stop accepting first, then tell health watchers; in-flight calls get the grace period.
    stopping = asyncio.create_task(server.stop(config.grace_s))
    await asyncio.sleep(0)
    await health.shutdown()
    await stopping
    await batcher.close()
    await backend.close()
    if metrics_server:
        metrics_server.shutdown()
        metrics_server.server_close()
    log.info("stopped")
    return 0


def main(config: Config) -> int:
    from tsva.server import workers

    worker = os.environ.get(workers.WORKER_ENV)
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s " + (
        f"[worker {worker}] " if worker else "") + "%(name)s: %(message)s")
    if config.workers > 1 and not worker:
        return workers.supervise(config)
    try:
        return asyncio.run(serve(config))
    except (StartupError, ModelLoadError) as exc:
        log.error("cannot start: %s", exc)
        return 2
