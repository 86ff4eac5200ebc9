"""Micro-batcher: patches of every stream and call share backend batches, through a bounded queue.

A tile enters as one `PatchJob` (its patches are cut lazily, only when a batch is filled, so a
queued tile costs no extra memory). The queue holds at most `queue_size` patches: `run_job` waits
for room, which holds the caller's stream (gRPC flow control then slows the client: backpressure).
A batch leaves when it is full or `max_delay_s` after its first patch arrived. A job whose caller
is cancelled (client cancel, deadline) leaves the queue at once and its patches are never run.
"""
from __future__ import annotations

import asyncio
import collections
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from tsva.server.backends.base import Backend, BackendUnavailable
from tsva.server.patching import PatchGrid, Stitcher, extract_patch


class PatchJob:
    """One tile on its way through the backend: inputs, where its outputs go, its timings."""

    def __init__(self, grid: PatchGrid, canvas_y1: np.ndarray, canvas_y2: np.ndarray, scale: float,
                 stitcher: Stitcher):
        self.canvas_y1, self.canvas_y2, self.scale, self.stitcher = canvas_y1, canvas_y2, scale, stitcher
        self.origins = grid.origins
        self.total = len(self.origins)
        self.next = 0        # next patch to put in a batch
        self.done = 0        # patches stitched
        self.future: asyncio.Future | None = None
        self.enqueued_at = 0.0
        self.queue_s = 0.0   # submission to its first patch entering a batch
        self.inference_s = 0.0  # backend time of the batches that carried its patches

    @property
    def queued(self) -> int:
        return self.total - self.next


class MicroBatcher:
    def __init__(self, backend: Backend, *, max_batch: int, max_delay_s: float, queue_size: int,
                 patch_size: int, channels: int = 3, concurrency: int = 1, timeout_s: float | None = None,
                 metrics=None, on_backend_error: Callable[[Exception], None] | None = None):
        self.backend = backend
        self.max_batch, self.max_delay_s, self.queue_size = max_batch, max_delay_s, queue_size
        self.patch_size, self.channels, self.timeout_s = patch_size, channels, timeout_s
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
        # Buffers are reused: one pair per batch that can be taken.
        self._buffers = [self._new_buffers() for _ in range(2 * concurrency)]
        # Patch cutting and stitching run off the event loop, in one thread, so they never race on a
        # tile's accumulator and the loop stays free for gRPC.
        self._numpy = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tsva-stitch")
        self._task: asyncio.Task | None = None
        self._batches: set[asyncio.Task] = set()

    def _new_buffers(self):
        shape = (self.max_batch, self.channels, self.patch_size, self.patch_size)
        return np.empty(shape, np.float32), np.empty(shape, np.float32)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="tsva-batcher")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._batches, return_exceptions=True)
        self._numpy.shutdown(wait=True)

    async def run_job(self, job: PatchJob) -> None:
        """Queues the job's patches, waits until all are stitched. Raises BackendUnavailable."""
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

    async def _drop(self, job: PatchJob) -> None:
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
            while self._depth < self.max_batch and (remaining := deadline - loop.time()) > 0:
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

    def _take(self) -> list[tuple[PatchJob, int]]:
        entries = []
        now = time.perf_counter()
        while self._jobs and len(entries) < self.max_batch:
            job = self._jobs[0]
            if job.next == 0:
                job.queue_s = now - job.enqueued_at
            n = min(job.queued, self.max_batch - len(entries))
            entries.extend((job, i) for i in range(job.next, job.next + n))
            job.next += n
            if job.queued == 0:
                self._jobs.popleft()
        self._set_depth(self._depth - len(entries))
        return entries

    async def _run_batch(self, entries: list[tuple[PatchJob, int]]) -> None:
        loop = asyncio.get_running_loop()
        buffers = self._buffers.pop()
        n = len(entries)
        y1, y2 = buffers[0][:n], buffers[1][:n]
        try:
            await loop.run_in_executor(self._numpy, _fill, entries, y1, y2, self.patch_size)
            try:
                async with self._backend_slots:
                    started = time.perf_counter()
                    out = await self.backend.infer(y1, y2, timeout_s=self.timeout_s)
                    elapsed = time.perf_counter() - started
                if out.shape != y1.shape:
                    raise BackendUnavailable(f"backend returned shape {tuple(out.shape)} for a batch of "
                                             f"{tuple(y1.shape)}")
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
            live = [(job, i, k) for k, (job, i) in enumerate(entries) if not job.future.done()]
            await loop.run_in_executor(self._numpy, _stitch, live, out)
            for job in {job for job, _, _ in live}:
                job.inference_s += elapsed
            for job, _, _ in live:
                job.done += 1
                if job.done == job.total and not job.future.done():
                    job.future.set_result(None)
        finally:
            self._buffers.append(buffers)
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


def _fill(entries, y1: np.ndarray, y2: np.ndarray, patch: int) -> None:
    for k, (job, i) in enumerate(entries):
        origin = job.origins[i]
        extract_patch(job.canvas_y1, origin, patch, job.scale, y1[k])
        extract_patch(job.canvas_y2, origin, patch, job.scale, y2[k])


def _stitch(live, out: np.ndarray) -> None:
    for job, i, k in live:
        job.stitcher.add(job.origins[i], out[k])
