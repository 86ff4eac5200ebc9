"""Micro-batcher: items (patches or whole tiles) of every stream and call share backend batches,
through a bounded queue.

A tile enters as one job (tsva.server.patching: a PatchJob's patches are cut lazily, only when a
batch is filled, so a queued tile costs no extra memory; a WholeTileJob is one item). A batch
holds items of one shape only: the shape of the oldest queued job, then the items of later jobs
of that shape; jobs of other shapes wait for the next batch. The queue holds at most `queue_size`
items: `run_job` waits for room, which holds the caller's stream (gRPC flow control then slows the
client: backpressure). A batch leaves when it is full or `max_delay_s` after its first item
arrived. A job whose caller is cancelled (client cancel, deadline) leaves the queue at once and
its items are never run.
"""
from __future__ import annotations

import asyncio
import collections
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from tsva.server.backends.base import Backend, BackendUnavailable
from tsva.server.patching import PatchJob, TileJob, WholeTileJob  # noqa: F401 (PatchJob: importable from here)

BUFFER_SHAPES = 4  # distinct item shapes whose batch buffers are kept for reuse


class MicroBatcher:
    def __init__(self, backend: Backend, *, max_batch: int, max_delay_s: float, queue_size: int,
                 concurrency: int = 1, timeout_s: float | None = None, max_whole_tiles: int | None = None,
                 metrics=None, on_backend_error: Callable[[Exception], None] | None = None):
        self.backend = backend
        self.max_batch, self.max_delay_s, self.queue_size = max_batch, max_delay_s, queue_size
        # Whole tiles per batch (default max_batch): 1 on CPU, where a batch of tiles computes no
        # faster than its tiles one by one and holds all their activations at once.
        self.max_whole_tiles = max_batch if max_whole_tiles is None else max(1, min(max_whole_tiles, max_batch))
        self.timeout_s = timeout_s
        self.metrics = metrics
        self.on_backend_error = on_backend_error
        self._jobs: collections.deque[PatchJob] = collections.deque()
        self._depth = 0
        self._room = asyncio.Condition()
        self._arrived = asyncio.Event()
        # `concurrency` batches run in the backend at once; one more per slot is cut meanwhile, so
        # cutting overlaps inference and the backend's time is measured without queueing.
        self._slots = asyncio.Semaphore(2 * concurrency)
        self._backend_slots = asyncio.Semaphore(concurrency)
        # Batch buffers are reused per item shape (fresh pages would cost page faults on every
        # batch); at most one pair per batch slot and shape, for the BUFFER_SHAPES latest shapes.
        self._buffers: collections.OrderedDict[tuple, list] = collections.OrderedDict()
        # Patch cutting and stitching run off the event loop, in one thread, so they never race on a
        # tile's accumulator and the loop stays free for gRPC.
        self._numpy = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tsva-stitch")
        self._task: asyncio.Task | None = None
        self._batches: set[asyncio.Task] = set()

    def _get_buffers(self, shape: tuple, dtype: np.dtype, n: int):
        free = self._buffers.get((shape, dtype))
        while free:
            y1, y2 = free.pop()
            if len(y1) >= n:
                return y1, y2
        # Patches: room for a full batch at once; whole tiles: only what this batch needs.
        size = self.max_batch if np.prod(shape) * self.max_batch * dtype.itemsize <= 64 << 20 else n
        return np.empty((size, *shape), dtype), np.empty((size, *shape), dtype)

    def _put_buffers(self, shape: tuple, dtype: np.dtype, buffers) -> None:
        key = (shape, dtype)
        self._buffers.setdefault(key, []).append(buffers)
        self._buffers.move_to_end(key)
        while len(self._buffers) > BUFFER_SHAPES:
            self._buffers.popitem(last=False)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="tsva-batcher")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._batches, return_exceptions=True)
        self._numpy.shutdown(wait=True)

    async def run_job(self, job: TileJob) -> None:
        """Queues the job's items, waits until all are taken back. Raises BackendUnavailable."""
        loop = asyncio.get_running_loop()
        job.future = loop.create_future()
        async with self._room:
            # A tile larger than the whole queue still gets in once the queue is empty.
            await self._room.wait_for(lambda: self._depth == 0 or self._depth + job.total <= self.queue_size)
            job.enqueued_at = time.perf_counter()
            self._jobs.append(job)
            self._set_depth(self._depth + job.total)
        self._arrived.set()
        try:
            await job.future
        except asyncio.CancelledError:
            await self._drop(job)
            raise

    async def _drop(self, job: TileJob) -> None:
        if not job.future.done():
            job.future.cancel()
        if job in self._jobs:
            self._jobs.remove(job)
            self._set_depth(self._depth - job.queued)
            await self._wake_waiters()

    def _set_depth(self, depth: int) -> None:
        self._depth = depth
        if self.metrics:
            self.metrics.queue_depth.set(depth)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while self._depth == 0:
                self._arrived.clear()
                await self._arrived.wait()
            deadline = loop.time() + self.max_delay_s
            while self._depth < self._head_limit() and (remaining := deadline - loop.time()) > 0:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
            # Patches stay in the queue (and can still be dropped) until a batch slot is free.
            await self._slots.acquire()
            entries = self._take()
            if not entries:
                self._slots.release()
                continue
            await self._wake_waiters()
            task = loop.create_task(self._run_batch(entries))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    def _head_limit(self) -> int:
        """Items the next batch may hold: it takes the oldest job's kind (patches or whole tiles)."""
        return self.max_whole_tiles if self._jobs and isinstance(self._jobs[0], WholeTileJob) else self.max_batch

    def _take(self) -> list[tuple[TileJob, int]]:
        """Items for one batch: the oldest job's shape, then later jobs of the same shape."""
        entries: list[tuple[TileJob, int]] = []
        if not self._jobs:
            return entries
        key = (self._jobs[0].shape, self._jobs[0].dtype)
        limit = self._head_limit()
        now = time.perf_counter()
        finished = []
        for job in self._jobs:
            if len(entries) >= limit:
                break
            if (job.shape, job.dtype) != key:
                continue
            if job.next == 0:
                job.queue_s = now - job.enqueued_at
            n = min(job.queued, limit - len(entries))
            entries.extend((job, i) for i in range(job.next, job.next + n))
            job.next += n
            if job.queued == 0:
                finished.append(job)
        for job in finished:
            self._jobs.remove(job)
        self._set_depth(self._depth - len(entries))
        return entries

    async def _run_batch(self, entries: list[tuple[TileJob, int]]) -> None:
        loop = asyncio.get_running_loop()
        first = entries[0][0]
        shape, dtype, n = first.shape, first.dtype, len(entries)
        buffers = None
        try:
            # A lone item that is already a valid tensor (a pixel-typed whole tile) goes as it is.
            direct = first.direct() if n == 1 else None
            if direct is not None:
                y1, y2 = direct
            else:
                buffers = self._get_buffers(shape, dtype, n)
                y1, y2 = buffers[0][:n], buffers[1][:n]
                await loop.run_in_executor(self._numpy, _fill, entries, y1, y2)
            try:
                async with self._backend_slots:
                    started = time.perf_counter()
                    out = await self.backend.infer(y1, y2, timeout_s=self.timeout_s,
                                                   **({"dd": _defocus(entries)} if first.dd_um is not None else {}))
                    elapsed = time.perf_counter() - started
                if out.shape != y1.shape or out.dtype != y1.dtype:
                    raise BackendUnavailable(f"backend returned {tuple(out.shape)} {out.dtype} for a batch of "
                                             f"{tuple(y1.shape)} {y1.dtype}")
            except Exception as exc:  # any backend failure fails exactly the tiles of this batch
                error = exc if isinstance(exc, BackendUnavailable) else BackendUnavailable(
                    f"backend {self.backend.name} failed: {type(exc).__name__}: {exc}")
                if self.metrics:
                    self.metrics.backend_errors.inc()
                self._fail_jobs({job for job, _ in entries}, error)
                if self.on_backend_error:
                    self.on_backend_error(error)
                return
            if self.metrics:
                self.metrics.batch_size.observe(n)
                self.metrics.backend_latency.observe(elapsed)
                self.metrics.backend_bytes.labels("sent").inc(y1.nbytes + y2.nbytes)
                self.metrics.backend_bytes.labels("received").inc(out.nbytes)
            live = [(job, i, k) for k, (job, i) in enumerate(entries) if not job.future.done()]
            await loop.run_in_executor(self._numpy, _put, live, out)
            for job in {job for job, _, _ in live}:
                job.inference_s += elapsed
            for job, _, _ in live:
                job.done += 1
                if job.done == job.total and not job.future.done():
                    job.future.set_result(None)
        finally:
            if buffers is not None:
                self._put_buffers(shape, dtype, buffers)
            self._slots.release()

    def _fail_jobs(self, jobs, error: Exception) -> None:
        for job in jobs:
            if job.future.done():
                continue
            job.future.set_exception(error)
            if job in self._jobs:  # its remaining patches would only fail again
                self._jobs.remove(job)
                self._set_depth(self._depth - job.queued)
        task = asyncio.get_running_loop().create_task(self._wake_waiters())
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _wake_waiters(self) -> None:
        async with self._room:
            self._room.notify_all()


def _defocus(entries) -> np.ndarray:
    """Each item's dD (its tile's), float32 [N, 1], for a defocus-conditioned model."""
    return np.array([[job.dd_um if job.dd_um is not None else 0.0] for job, _ in entries], np.float32)


def _fill(entries, y1: np.ndarray, y2: np.ndarray) -> None:
    for k, (job, i) in enumerate(entries):
        job.fill(i, y1[k], y2[k])


def _put(live, out: np.ndarray) -> None:
    for job, i, k in live:
        job.put(i, out[k])
