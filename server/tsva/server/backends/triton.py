"""Backend that runs batches on one or more Triton Inference Servers over gRPC.

- One Triton request carries a whole micro-batch (raw binary tensors), up to the model's
  max_batch_size as Triton's model config states it; a larger batch is split.
- Targets (`--triton-urls`) are resolved to addresses, one endpoint per Triton server (a headless
  Service name gives every ready pod), and resolved again every `resolve_interval_s`.
- Load is spread by outstanding requests: each batch goes to the ready endpoint with the fewest
  requests in flight.
- A request that fails with UNAVAILABLE (server down, connection broken or refused) is retried on
  another endpoint after a bounded, jittered backoff; the endpoint is left out until a probe finds
  the model ready again. Only failed requests are retried, so every batch gets exactly one result.
- Readiness = the model is ready on at least one endpoint, probed every `probe_interval_s`.
- Deadlines propagate: the gRPC deadline and Triton's own queue timeout are the time left.
- Tensors travel inside the gRPC messages or, to a Triton on this host, through shared memory
  (`shared_memory`, see triton_shm.py); an endpoint where shared memory fails falls back to gRPC.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import tritonclient.grpc.aio as grpcaio
from tritonclient.utils import InferenceServerException

from .base import INPUT_Y1, OUTPUT_X, Backend, BackendUnavailable, ModelInfo
from tsva.common.contract import ContractError, ModelContract, contract_from_io
from .triton_shm import SHM_ERROR_HINTS, ShmPool, ShmUnavailable, Staged, is_loopback, stage_grpc
from .triton_targets import Resolver, parse_targets, resolve_dns, split

log = logging.getLogger(__name__)

# Triton's gRPC answers that mean "this endpoint cannot serve now": worth another endpoint.
_RETRYABLE = {"StatusCode.UNAVAILABLE"}
# UNAVAILABLE answers that come from a live server shedding load (queue full / queue timeout):
# retry, but do not take the endpoint out.
_OVERLOAD_HINTS = ("queue", "Exceeds maximum")
_MAX_MESSAGE_BYTES = 2**31 - 1


class TritonInferenceError(RuntimeError):
    """Triton answered the batch with an error that another endpoint would repeat
    (bad shapes, model error). Not retried."""


class BackendDeadlineExceeded(TimeoutError):
    """The request's deadline passed before Triton answered. Maps to DEADLINE_EXCEEDED."""


def channel_args() -> list[tuple[str, int]]:
    """Large messages (a batch of 64 patches is ~77 MB) and a short reconnect backoff, so a
    restarted Triton is found again within about a second, not gRPC's default of up to 2 min."""
    return [
        ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.min_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]


@dataclass
class EndpointState:
    """One Triton server: the target it was found under and its address."""
    target: str
    url: str
    client: grpcaio.InferenceServerClient
    up: bool = False
    reason: str = "not probed yet"
    outstanding: int = 0
    max_batch_size: int | None = None
    version: str = ""
    contract: ModelContract | None = None  # read from the model's config when it (re)joins
    contract_error: str | None = None  # its model follows no contract
    device: str = "gpu"  # "cpu" when every instance group of the model is KIND_CPU
    max_side: int = 0  # the TensorRT profile's largest H, W (0: no profile)
    served: int = 0  # batches answered
    shm: bool = False  # send its batches through shared memory (until that fails)
    changed_at: float = field(default_factory=time.monotonic)

    def mark(self, up: bool, reason: str) -> None:
        if up != self.up:
            (log.info if up else log.warning)("Triton %s %s (%s)", self.label, "up" if up else "down", reason)
            self.changed_at = time.monotonic()
        self.up, self.reason = up, reason

    @property
    def label(self) -> str:
        return self.url if self.url == self.target else f"{self.target} ({self.url})"


class TritonBackend(Backend):
    name = "triton"

    def __init__(
        self,
        urls: str | Iterable[str],
        model_name: str = "tsva",
        model_version: str = "",
        *,
        request_timeout_s: float = 60.0,
        startup_timeout_s: float = 60.0,
        probe_interval_s: float = 1.0,
        probe_timeout_s: float = 2.0,
        resolve_interval_s: float = 10.0,
        max_attempts: int | None = None,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 1.0,
        resolver: Resolver = resolve_dns,
        shared_memory: str = "off",
        metrics=None,
    ):
        """urls: Triton gRPC targets, HOST:PORT (the gateway adds the local ONNX file's metadata,
        which Triton does not expose). request_timeout_s: deadline of a batch when the caller
        gives none. max_attempts: tries of one batch across endpoints (default: two rounds over
        the endpoints, at least 3). resolver: (host, port) -> addresses (DNS by default).
        shared_memory: auto (system shared memory to loopback endpoints), system, cuda or off.
        metrics: the gateway's Metrics (shared-memory fallbacks, batches by transport), optional."""
        self.targets = parse_targets(urls)
        self.model_name = model_name
        self.model_version = model_version
        self.request_timeout_s = request_timeout_s
        self.startup_timeout_s = startup_timeout_s
        self.probe_interval_s = probe_interval_s
        self.probe_timeout_s = probe_timeout_s
        self.resolve_interval_s = resolve_interval_s
        self._max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._resolver = resolver
        self._endpoints: list[EndpointState] = []
        self._retired: list[EndpointState] = []  # gone from DNS, closed once idle
        self._resolve_errors: dict[str, str] = {}
        self._resolved_at = float("-inf")
        self._monitor: asyncio.Task | None = None
        self._info: ModelInfo | None = None
        self._next = 0  # round-robin among equally loaded endpoints
        self.shared_memory = shared_memory
        self._metrics = metrics
        self._shm: ShmPool | None = None

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self.shared_memory != "off":
            try:
                self._shm = ShmPool("cuda" if self.shared_memory == "cuda" else "system")
            except ShmUnavailable as exc:
                self._shm_failed("all endpoints", exc)
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            await self._refresh()
            if any(ep.up for ep in self._endpoints):
                break
            errors = [ep.contract_error for ep in self._endpoints]
            if errors and all(errors):  # every endpoint serves a model the gateway cannot feed
                await self.close()
                raise ContractError("; ".join(dict.fromkeys(errors)))
            if time.monotonic() >= deadline:
                reasons = self._down_reasons()
                await self.close()
                raise BackendUnavailable(
                    f"model {self.model_name!r} is not ready on any Triton endpoint after "
                    f"{self.startup_timeout_s:.0f} s: {reasons}")
            await asyncio.sleep(self.probe_interval_s)
        self._info = await self._read_model_info()
        self._monitor = asyncio.create_task(self._monitor_loop(), name="triton-probe")

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            try:
                await self._monitor
            except asyncio.CancelledError:
                pass
            self._monitor = None
        if self._shm is not None:  # unregister while the clients are still open
            await self._shm.close()
            self._shm = None
        for ep in self._endpoints + self._retired:
            await ep.client.close()
        self._endpoints, self._retired = [], []

    # ----------------------------------------------------------------- endpoints and readiness
    async def ready(self) -> bool:
        return any(ep.up for ep in self._endpoints)

    def endpoint_status(self) -> list[dict]:
        """Per endpoint: target, url, up, reason, outstanding requests, batches served, max batch."""
        return [dict(target=ep.target, url=ep.url, up=ep.up, reason=ep.reason, outstanding=ep.outstanding,
                     served=ep.served, max_batch_size=ep.max_batch_size) for ep in self._endpoints]

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval_s)
            try:
                await self._refresh()
            except Exception:  # a probe bug must not stop readiness tracking
                log.exception("Triton probe failed")

    async def _refresh(self) -> None:
        # With no endpoint up, resolve at every probe: a restarted Service may have new pods.
        if (time.monotonic() - self._resolved_at >= self.resolve_interval_s
                or not any(ep.up for ep in self._endpoints)):
            await self._resolve()
        await asyncio.gather(*(self._probe(ep) for ep in self._endpoints))
        for ep in [ep for ep in self._retired if ep.outstanding == 0]:
            self._retired.remove(ep)
            await ep.client.close()

    async def _resolve(self) -> None:
        """Brings the endpoint list in line with what the targets resolve to now. A target that
        does not resolve keeps its endpoints (probes tell whether they still answer)."""
        self._resolved_at = time.monotonic()
        wanted: dict[str, str] = {}  # url -> target
        failed: set[str] = set()
        for target in self.targets:
            host, port = split(target)
            try:
                urls = await self._resolver(host, int(port))
            except OSError as exc:
                urls = []
                self._resolve_errors[target] = f"cannot resolve {host}: {exc}"
            if not urls:
                failed.add(target)
                self._resolve_errors.setdefault(target, f"{host} resolves to no address")
                continue
            self._resolve_errors.pop(target, None)
            for url in urls:
                wanted.setdefault(url, target)
        current = {ep.url: ep for ep in self._endpoints}
        kept = [ep for ep in self._endpoints if ep.url in wanted or ep.target in failed]
        for ep in self._endpoints:
            if ep not in kept:
                log.info("Triton %s left %s", ep.url, ep.target)
                self._retired.append(ep)
        for url, target in wanted.items():
            if url not in current:
                if self._endpoints or url != target:
                    log.info("Triton %s found under %s", url, target)
                kept.append(EndpointState(target, url, grpcaio.InferenceServerClient(url, channel_args=channel_args())))
        self._endpoints = kept

    async def _probe(self, ep: EndpointState) -> None:
        try:
            ready = await ep.client.is_model_ready(
                self.model_name, self.model_version, client_timeout=self.probe_timeout_s)
            if ready and (not ep.up or ep.max_batch_size is None):
                # (Re)joining endpoint: its config may differ from before (redeployed model), and
                # a restarted Triton has forgotten its shared-memory registrations.
                await self._read_endpoint_config(ep)
                self._shm_rejoin(ep)
                if self._info is not None and ep.contract != self._info.contract:
                    ep.mark(False, f"serves the {ep.contract.name} contract, the gateway runs "
                                   f"{self._info.contract.name} (restart the gateway to follow it)")
                    ep.max_batch_size = None  # read again at the next probe
                    return
        except InferenceServerException as exc:
            ep.mark(False, _short(exc))
            return
        except ContractError as exc:  # a model the gateway cannot feed: no use waiting for it
            ep.mark(False, str(exc))
            ep.contract_error = str(exc)
            return
        except Exception as exc:  # unexpected replies
            ep.mark(False, str(exc))
            return
        ep.contract_error = None
        ep.mark(bool(ready), "model ready" if ready else f"model {self.model_name!r} not ready")

    async def _read_endpoint_config(self, ep: EndpointState) -> None:
        reply = await ep.client.get_model_config(
            self.model_name, self.model_version, as_json=True, client_timeout=self.probe_timeout_s)
        config = reply["config"]
        tensors = lambda key: {t["name"]: (t.get("data_type", ""), t.get("dims", []))  # noqa: E731
                               for t in config.get(key, [])}
        # ContractError (a ValueError) names the inputs found; the probe marks the endpoint down with it.
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        ep.contract = contract_from_io(tensors("input"), tensors("output"), params,
                                       where=f"model {self.model_name!r} on {ep.url}")
        kinds = {g.get("kind", "KIND_AUTO") for g in config.get("instance_group", [])}
        ep.device = "cpu" if kinds == {"KIND_CPU"} else "gpu"
        ep.max_side = profile_max_side(config, ep.contract)
        # max_batch_size 0 means the model does not batch: one patch per request.
        ep.max_batch_size = max(1, int(config.get("max_batch_size", 0)))
        metadata = await ep.client.get_model_metadata(
            self.model_name, self.model_version, as_json=True, client_timeout=self.probe_timeout_s)
        versions = metadata.get("versions") or [self.model_version or ""]
        ep.version = max(versions, key=lambda v: int(v) if v.isdigit() else -1)

    async def _read_model_info(self) -> ModelInfo:
        live = [ep for ep in self._endpoints if ep.up]
        # metadata stays empty: Triton does not expose the ONNX metadata_props; the gateway reads
        # them from its local copy of the model file.
        contracts = {ep.contract for ep in live}
        if len(contracts) > 1:
            raise BackendUnavailable(f"model {self.model_name!r}: endpoints serve different contracts "
                                     f"({', '.join(f'{ep.url}: {ep.contract.name}' for ep in live)})")
        return ModelInfo(name=self.model_name, version=live[0].version,
                         max_batch_size=min(ep.max_batch_size for ep in live), contract=live[0].contract,
                         device="cpu" if all(ep.device == "cpu" for ep in live) else "gpu",
                         max_side=min((ep.max_side for ep in live if ep.max_side), default=0))

    def model_info(self) -> ModelInfo:
        if self._info is None:
            raise RuntimeError("TritonBackend.model_info() before start()")
        return self._info

    def _down_reasons(self) -> str:
        reasons = [f"{ep.label}: {ep.reason}" for ep in self._endpoints if not ep.up]
        reasons += [f"{target}: {error}" for target, error in self._resolve_errors.items()]
        return "; ".join(reasons) or "none"

    # ----------------------------------------------------------------- inference
    async def infer(self, y1: np.ndarray, y2: np.ndarray, timeout_s: float | None = None,
                    dd: np.ndarray | None = None) -> np.ndarray:
        if y1.shape != y2.shape or y1.ndim != 4:
            raise ValueError(f"y1 {list(y1.shape)} and y2 {list(y2.shape)} must be the same [N, C, H, W]")
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else self.request_timeout_s)
        contract = self.model_info().contract
        # For a conditioned model every item's dD travels with its pixels.
        arrays = contract.model_inputs(np.ascontiguousarray(y1, dtype=contract.pixel_type),
                                       np.ascontiguousarray(y2, dtype=contract.pixel_type), dd)
        # The smallest max_batch_size of the endpoints seen so far: one that joined later (e.g. a
        # CPU Triton beside GPU ones) may take less than the model_info() of start-up said.
        step = min([ep.max_batch_size for ep in self._endpoints if ep.max_batch_size]
                   or [self.model_info().max_batch_size])
        if len(y1) <= step:
            return await self._infer_batch(arrays, deadline)
        parts = await asyncio.gather(*(
            self._infer_batch({name: a[i:i + step] for name, a in arrays.items()}, deadline)
            for i in range(0, len(y1), step)))
        return np.concatenate(parts)

    def _pick(self) -> EndpointState | None:
        """The ready endpoint with the fewest requests in flight (round-robin among ties)."""
        live = [ep for ep in self._endpoints if ep.up]
        if not live:
            return None
        least = min(ep.outstanding for ep in live)
        candidates = [ep for ep in live if ep.outstanding == least]
        self._next += 1
        return candidates[self._next % len(candidates)]

    # ----------------------------------------------------------------- transport
    def _shm_failed(self, where: str, exc: ShmUnavailable) -> None:
        log.warning("shared memory to Triton %s unavailable, sending tensors over gRPC instead: %s", where, exc)
        if self._metrics is not None:
            self._metrics.triton_shm_fallbacks.labels(exc.reason).inc()

    def _shm_rejoin(self, ep: EndpointState) -> None:
        """An endpoint (re)joins: decide its transport afresh and register regions again on use."""
        if self._shm is None:
            ep.shm = False
            return
        self._shm.forget(ep.url)
        ep.shm = self.shared_memory != "auto" or is_loopback(ep.url)

    async def _stage(self, ep: EndpointState, arrays: dict, outputs: dict) -> Staged | None:
        """The batch in shared memory for this endpoint, or None: send it inside the request."""
        if self._shm is None or not ep.shm:
            return None
        try:
            return await self._shm.stage(ep, arrays, outputs)
        except ShmUnavailable as exc:
            ep.shm = False  # until the endpoint rejoins
            self._shm_failed(ep.label, exc)
            return None

    async def _infer_batch(self, arrays: dict[str, np.ndarray], deadline: float) -> np.ndarray:
        """arrays: the model's inputs by name (y1, y2 and, for a conditioned model, dd)."""
        y1 = arrays[INPUT_Y1]
        expected = {OUTPUT_X: (y1.shape, y1.dtype)}  # the model answers x like y1, in either contract
        in_request: Staged | None = None  # built once, reused by retries
        max_attempts = self._max_attempts or max(3, 2 * len(self._endpoints))
        failures: list[str] = []
        for attempt in range(max_attempts):
            ep = self._pick()
            if ep is None:
                raise BackendUnavailable(
                    f"model {self.model_name!r} is not ready on any Triton endpoint: {self._down_reasons()}"
                    + (f"; this batch failed on: {'; '.join(failures)}" if failures else ""))
            left = deadline - time.monotonic()
            if left <= 0:
                raise BackendDeadlineExceeded(f"deadline passed before Triton answered ({'; '.join(failures)})")
            staged = await self._stage(ep, arrays, expected)
            if staged is None:
                staged = in_request = in_request or stage_grpc(arrays, expected)
            # A region goes back to the pool only once Triton has answered; after a timeout or a
            # broken connection Triton may still write into it, so it is retired instead.
            answered = False
            ep.outstanding += 1
            try:
                result = await ep.client.infer(
                    self.model_name, staged.inputs, self.model_version, outputs=staged.outputs,
                    client_timeout=left,                        # gRPC deadline
                    timeout=max(1, int(left * 1e6)),            # Triton's queue timeout, in us
                )
                answered = True
                x = staged.output(result, OUTPUT_X)
            except InferenceServerException as exc:
                status = exc.status() or ""
                if status == "StatusCode.DEADLINE_EXCEEDED":
                    raise BackendDeadlineExceeded(f"Triton {ep.label}: {_short(exc)}") from None
                shm_lost = staged.transport != "grpc" and any(h in str(exc) for h in SHM_ERROR_HINTS)
                if status not in _RETRYABLE and not shm_lost:
                    answered = True
                    raise TritonInferenceError(f"Triton {ep.label}: {_short(exc)}") from None
                failures.append(f"{ep.label}: {_short(exc)}")
                if shm_lost:  # a restarted Triton forgot the regions: register again, retry
                    answered = True
                    self._shm.forget(ep.url)
                    log.info("Triton %s does not know its shared-memory region, registering again: %s",
                             ep.label, _short(exc))
                else:
                    log.info("batch of %d failed on Triton %s, retrying elsewhere: %s",
                             len(y1), ep.label, _short(exc))
                    if not any(hint in str(exc) for hint in _OVERLOAD_HINTS):
                        ep.mark(False, _short(exc))
            else:
                ep.served += 1
                if self._metrics is not None:
                    self._metrics.triton_batches.labels(staged.transport).inc()
                if x is None or x.shape != y1.shape:
                    raise TritonInferenceError(
                        f"Triton {ep.label} answered x {None if x is None else list(x.shape)} "
                        f"for inputs {list(y1.shape)}")
                # Over gRPC, read-only (a view of the response bytes): the batcher only reads it
                # when stitching. Through shared memory, a copy out of the region.
                return x
            finally:
                ep.outstanding -= 1
                if staged is not in_request:
                    staged.release(reuse=answered)
            if attempt + 1 == max_attempts:
                break
            backoff = min(self.backoff_max_s, self.backoff_initial_s * 2**attempt) * random.uniform(0.5, 1.0)
            await asyncio.sleep(max(0.0, min(backoff, deadline - time.monotonic())))
        raise BackendUnavailable(
            f"model {self.model_name!r}: batch failed {max_attempts} times: {'; '.join(failures)}")


def profile_max_side(config: dict, contract: ModelContract) -> int:
    """The smaller of H and W in the y1 entry of a TensorRT accelerator's trt_profile_max_shapes
    (`y1:64x3x320x320,...` in the JSON model config), 0 when the config has none: a float32 GPU
    model built for patches must not be sent whole tiles outside its engine's profile."""
    accelerators = (config.get("optimization", {}).get("execution_accelerators", {})
                    .get("gpu_execution_accelerator", []))
    for accelerator in accelerators:
        shapes = accelerator.get("parameters", {}).get("trt_profile_max_shapes", "")
        for entry in shapes.split(","):
            name, _, dims = entry.strip().partition(":")
            if name == INPUT_Y1:
                try:
                    batch_item = [int(d) for d in dims.split("x")][1:]
                    return min(contract.item_size(batch_item))
                except (ValueError, IndexError):
                    return 0
    return 0


def _short(exc: InferenceServerException) -> str:
    status = (exc.status() or "").replace("StatusCode.", "")
    message = exc.message() if hasattr(exc, "message") else str(exc)
    return f"{status} {message}".strip()
