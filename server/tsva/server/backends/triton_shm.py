"""How tensors travel to Triton: inside the gRPC messages, or through shared memory.

Shared memory (`--triton-shared-memory`) is for a Triton on the same host (compose, a gateway
container beside Triton in one pod): the gateway writes a batch's inputs into a region of
/dev/shm that Triton has registered, Triton writes the outputs into the same region after them,
and the gRPC request carries only names and offsets. That saves the protobuf encoding, the socket
copies and Triton's decoding of ~tens of MB per batch on both sides.

- `system`: POSIX shared memory (tritonclient.utils.shared_memory), for inputs on any device.
- `cuda`: CUDA IPC memory on GPU 0 (tritonclient.utils.cuda_shared_memory, needs cuda-python and a
  GPU); one region per tensor, as that API has no offsets.
- `auto`: system shared memory to endpoints on a loopback address, gRPC to the others.
- `off`: always gRPC.

Regions are pooled per process and reused by later batches (a batch takes the smallest free
region that fits; one too small is replaced), so their number is bounded by the batches in
flight. Each region is registered lazily with each endpoint that is sent a batch through it.
A region that cannot be created or registered (no /dev/shm shared with Triton, /dev/shm full,
no GPU) makes that endpoint fall back to gRPC: logged once per endpoint, counted in
tsva_triton_shm_fallbacks_total, and the batch is sent over gRPC, so no tile fails for it.

The transport moves whatever tensors the backend hands it (any dtype and shape): the model
contract, not the transport, decides what a tensor is.
"""
from __future__ import annotations

import ipaddress
import itertools
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import np_to_triton_dtype

log = logging.getLogger(__name__)

MODES = ("auto", "system", "cuda", "off")
_ALIGN = 64             # byte alignment of each tensor inside a region
_MIN_REGION = 1 << 20   # regions are sized in powers of two from 1 MiB, so later batches reuse them
# Words of Triton's answer when a request names a region it does not know (Triton restarted and
# lost its registrations): re-register and retry rather than fail the batch.
SHM_ERROR_HINTS = ("shared memory", "shared_memory")


class ShmUnavailable(RuntimeError):
    """A region could not be created or registered. `reason` is 'create' or 'register'."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def is_loopback(url: str) -> bool:
    """True for HOST:PORT on this host's loopback (127.0.0.0/8, ::1, localhost)."""
    host = url.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _aligned(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _region_size(n: int) -> int:
    return max(_MIN_REGION, 1 << (max(n, 1) - 1).bit_length())


@dataclass
class Staged:
    """One batch's tensors, ready for client.infer(inputs=..., outputs=...)."""
    inputs: list
    outputs: list
    transport: str  # "grpc", "system" or "cuda"
    _read: object = None       # (result, name) -> numpy array
    _release: object = None

    def output(self, result, name: str) -> np.ndarray | None:
        return result.as_numpy(name) if self._read is None else self._read(result, name)

    def release(self, reuse: bool = True) -> None:
        """reuse=False when Triton may still write into the region (timeout, broken connection)."""
        if self._release is not None:
            self._release(reuse)
            self._release = None


def stage_grpc(arrays: dict[str, np.ndarray], outputs: dict[str, tuple]) -> Staged:
    """Tensors inside the request (raw binary contents, no JSON/list conversion)."""
    inputs = []
    for name, array in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(np.ascontiguousarray(array))
        inputs.append(tensor)
    return Staged(inputs, [grpcclient.InferRequestedOutput(name) for name in outputs], "grpc")


# ------------------------------------------------------------------------------------- regions
@dataclass(eq=False)
class _Region:
    name: str       # Triton's name of the region (also the /dev/shm file's name)
    size: int
    handle: object
    registered: dict = field(default_factory=dict)  # url -> client of the endpoints that know it


class _SystemRegions:
    """POSIX shared-memory regions (/dev/shm/<name>); one region holds all tensors of a batch,
    one after another. Python's own multiprocessing.shared_memory creates them: tritonclient's
    helper needs pkg_resources (setuptools) at import and copies each array twice. Its resource
    tracker also unlinks the regions of a process that was killed."""
    kind = "system"

    def __init__(self, prefix: str):
        self.prefix = prefix

    def create(self, name: str, size: int) -> _Region:
        from multiprocessing import shared_memory

        try:
            handle = shared_memory.SharedMemory(name=name, create=True, size=size)
        except Exception as exc:  # /dev/shm missing, full or read-only; name taken
            raise ShmUnavailable("create", f"cannot create /dev/shm/{name} ({size} bytes): {exc}") from None
        return _Region(name, size, handle)

    async def register(self, client, region: _Region, timeout_s: float) -> None:
        await client.register_system_shared_memory(region.name, "/" + region.name, region.size,
                                                   client_timeout=timeout_s)

    async def unregister(self, client, region: _Region, timeout_s: float) -> None:
        await client.unregister_system_shared_memory(region.name, client_timeout=timeout_s)

    def view(self, region: _Region, dtype, shape, offset: int) -> np.ndarray:
        """A writable numpy view of the region's bytes (no copy)."""
        count = int(np.prod(shape))
        return np.frombuffer(region.handle.buf, dtype=dtype, count=count, offset=offset).reshape(shape)

    def destroy(self, region: _Region) -> None:
        region.handle.close()
        region.handle.unlink()


class _CudaRegions:
    """CUDA IPC regions on GPU 0. Not exercised by the test suite (it needs a GPU)."""
    kind = "cuda"

    def __init__(self, prefix: str, device_id: int = 0):
        try:
            from tritonclient.utils import cuda_shared_memory
        except ImportError as exc:  # cuda-python missing: no GPU path in this install
            raise ShmUnavailable("create", f"CUDA shared memory unavailable: {exc}") from None
        self._shm = cuda_shared_memory
        self.prefix, self.device_id = prefix, device_id

    def create(self, name: str, size: int) -> _Region:
        try:
            return _Region(name, size, self._shm.create_shared_memory_region(name, size, self.device_id))
        except Exception as exc:
            raise ShmUnavailable("create", f"cannot create CUDA region {name} ({size} bytes): {exc}") from None

    async def register(self, client, region: _Region, timeout_s: float) -> None:
        await client.register_cuda_shared_memory(region.name, self._shm.get_raw_handle(region.handle),
                                                 self.device_id, region.size, client_timeout=timeout_s)

    async def unregister(self, client, region: _Region, timeout_s: float) -> None:
        await client.unregister_cuda_shared_memory(region.name, client_timeout=timeout_s)

    def destroy(self, region: _Region) -> None:
        self._shm.destroy_shared_memory_region(region.handle)


class ShmPool:
    """This process's shared-memory regions, shared by all endpoints of one backend."""

    def __init__(self, kind: str = "system", *, register_timeout_s: float = 5.0):
        prefix = f"tsva_{os.getpid()}_{id(self) & 0xFFFF:x}_"
        self.regions = _CudaRegions(prefix) if kind == "cuda" else _SystemRegions(prefix)
        self.kind = kind
        self.register_timeout_s = register_timeout_s
        self._free: list[_Region] = []
        self._all: list[_Region] = []
        self._retired: list[_Region] = []  # never reused; unregistered and unlinked at the next acquire
        self._names = itertools.count()
        self._swept: set[str] = set()  # endpoints cleared of dead gateways' regions

    async def _acquire(self, nbytes: int, ep) -> _Region:
        while self._retired:
            await self._drop(self._retired.pop())
        fitting = [r for r in self._free if r.size >= nbytes]
        if fitting:
            region = min(fitting, key=lambda r: r.size)
            self._free.remove(region)
        else:
            if self._free:  # replace a free region that is too small, so the count stays bounded
                await self._drop(self._free.pop(0))
            region = self.regions.create(f"{self.regions.prefix}{next(self._names)}", _region_size(nbytes))
            self._all.append(region)
        if ep.url not in region.registered:
            if ep.url not in self._swept:
                self._swept.add(ep.url)
                await self._unregister_stale(ep)
            try:
                await self.regions.register(ep.client, region, self.register_timeout_s)
            except Exception as exc:
                self._free.append(region)
                raise ShmUnavailable("register", f"Triton {ep.url} cannot register {region.name}: "
                                     f"{getattr(exc, 'message', lambda: exc)()}") from None
            region.registered[ep.url] = ep.client
        return region

    def _release(self, region: _Region, reuse: bool = True) -> None:
        if region in self._all:
            (self._free if reuse else self._retired).append(region)

    async def _drop(self, region: _Region) -> None:
        """Unregisters a region from the endpoints that know it (best effort: one that is down
        has forgotten it), then unlinks it."""
        self._all.remove(region)
        for url, client in region.registered.items():
            try:
                await self.regions.unregister(client, region, self.register_timeout_s)
            except Exception as exc:
                log.debug("unregister %s on %s: %s", region.name, url, exc)
        region.registered.clear()
        try:
            self.regions.destroy(region)
        except Exception as exc:
            log.warning("cannot remove shared-memory region %s: %s", region.name, exc)

    async def stage(self, ep, arrays: dict[str, np.ndarray], outputs: dict[str, tuple]) -> Staged:
        """Writes `arrays` into one region (one copy each) and points Triton's outputs after them.
        outputs: name -> (shape, dtype) that the model will answer. Raises ShmUnavailable."""
        layout, offset = {}, 0
        for name, array in arrays.items():
            layout[name] = (offset, array.nbytes)
            offset += _aligned(array.nbytes)
        for name, (shape, dtype) in outputs.items():
            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            layout[name] = (offset, nbytes)
            offset += _aligned(nbytes)
        if self.kind == "cuda":
            return await self._stage_cuda(ep, arrays, outputs)
        region = await self._acquire(offset, ep)
        inputs = []
        for name, array in arrays.items():
            start, nbytes = layout[name]
            self.regions.view(region, array.dtype, array.shape, start)[...] = array
            tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_shared_memory(region.name, nbytes, start)
            inputs.append(tensor)
        requested = []
        for name in outputs:
            start, nbytes = layout[name]
            out = grpcclient.InferRequestedOutput(name)
            out.set_shared_memory(region.name, nbytes, start)
            requested.append(out)

        def read(result, name: str) -> np.ndarray | None:
            if result.get_output(name) is None:
                return None
            shape, dtype = outputs[name]
            answered = list(result.get_output(name).shape)
            if answered != list(shape):  # the caller checks shapes; do not read past what was asked
                return np.empty(answered, dtype)
            # A copy: the region is reused by the next batch once this one is released.
            return self.regions.view(region, dtype, shape, layout[name][0]).copy()

        return Staged(inputs, requested, "system", read, lambda reuse: self._release(region, reuse))

    async def _stage_cuda(self, ep, arrays, outputs) -> Staged:
        """One region per tensor (the CUDA API copies whole regions, without offsets)."""
        taken: list[_Region] = []
        try:
            inputs, requested = [], []
            for name, array in arrays.items():
                region = await self._acquire(array.nbytes, ep)
                taken.append(region)
                self.regions._shm.set_shared_memory_region(region.handle, [np.ascontiguousarray(array)])
                tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
                tensor.set_shared_memory(region.name, array.nbytes)
                inputs.append(tensor)
            out_regions = {}
            for name, (shape, dtype) in outputs.items():
                nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
                region = await self._acquire(nbytes, ep)
                taken.append(region)
                out_regions[name] = region
                out = grpcclient.InferRequestedOutput(name)
                out.set_shared_memory(region.name, nbytes)
                requested.append(out)
        except BaseException:
            for region in taken:
                self._release(region)
            raise

        def read(result, name):
            shape, dtype = outputs[name]
            return self.regions._shm.get_contents_as_numpy(out_regions[name].handle, np.dtype(dtype), list(shape))

        def release(reuse):
            for region in taken:
                self._release(region, reuse)

        return Staged(inputs, requested, "cuda", read, release)

    def forget(self, url: str) -> None:
        """The endpoint lost its registrations (Triton restarted): register again on next use."""
        self._swept.discard(url)
        for region in self._all:
            region.registered.pop(url, None)

    async def _unregister_stale(self, ep) -> None:
        """Unregisters regions of gateway processes that are gone: a killed worker cannot unregister
        its own, and Triton would keep them mapped. A region is stale when its /dev/shm file is
        gone (a live gateway keeps its files until it unregisters them). Best effort."""
        if self.kind != "system":
            return
        try:
            status = await ep.client.get_system_shared_memory_status(as_json=True,
                                                                     client_timeout=self.register_timeout_s)
            for region in (status.get("regions") or {}).values():
                name, key = region.get("name", ""), region.get("key", "").lstrip("/")
                if name.startswith("tsva_") and key and not os.path.exists(f"/dev/shm/{key}"):
                    await ep.client.unregister_system_shared_memory(name, client_timeout=self.register_timeout_s)
                    log.info("Triton %s: unregistered %s, a region of a gateway process that is gone", ep.url, name)
        except Exception as exc:
            log.debug("Triton %s: stale region check failed: %s", ep.url, exc)

    async def close(self) -> None:
        """Unregisters and unlinks every region (call before the endpoints' clients close)."""
        for region in list(self._all):
            await self._drop(region)
        self._free, self._retired = [], []
