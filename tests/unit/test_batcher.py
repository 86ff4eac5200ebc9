"""MicroBatcher in process on the fake backend (tests.support.fake_backend, in place of ONNX
Runtime/Triton): batches hold items of one shape, at most max_batch of them, leave full or after
max_delay, and a cancelled job leaves the queue at once without its items ever running."""
import asyncio
import time

import numpy as np
from prometheus_client import CollectorRegistry
from tsva.common.contract import FLOAT32_CONTRACT
from tsva.server.batcher import MicroBatcher
from tsva.server.metrics import Metrics
from tsva.server.patching import PatchGrid, PatchJob, Stitcher, WholeTileJob, pad_to_canvas

from tests.support.fake_backend import FakeBackend

F32 = np.dtype(np.float32)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 10))


def tile(height, width, value=100):
    return np.full((height, width, 3), value, np.uint8)


def whole(height, width, value=100):
    return WholeTileJob(tile(height, width, value), tile(height, width, value // 2), FLOAT32_CONTRACT)


def batcher(backend, registry=None, **options):
    settings = dict(max_batch=8, max_delay_s=0.002, queue_size=512)
    settings.update(options)
    return MicroBatcher(backend, metrics=Metrics(registry or CollectorRegistry()), **settings)


def test_a_batch_holds_items_of_one_shape_oldest_shape_first():
    backend = FakeBackend()

    async def main():
        b = batcher(backend)
        b.start()
        jobs = [whole(32, 32), whole(48, 48), whole(32, 32), whole(48, 48)]
        await asyncio.gather(*(b.run_job(job) for job in jobs))  # queued in one go
        await b.close()
        return jobs

    jobs = run(main())
    assert sorted(backend.batches) == [((2, 3, 32, 32), F32), ((2, 3, 48, 48), F32)]
    expected = np.clip(0.75 * 100 / 255 + 0.25 * 50 / 255, 0, 1)
    for job in jobs:  # every job got its own item back
        assert np.allclose(job.result(np.uint8, 3), round(expected * 255))


def test_patches_of_a_tile_are_spread_over_batches_of_at_most_max_batch():
    backend = FakeBackend()
    grid = PatchGrid(96, 120, 64, 16)  # 2 x 3 patches

    async def main():
        b = batcher(backend, max_batch=4)
        b.start()
        y = tile(96, 120)
        job = PatchJob(grid, pad_to_canvas(y, grid), pad_to_canvas(y, grid), FLOAT32_CONTRACT, Stitcher(grid, 3))
        await b.run_job(job)
        await b.close()
        return job

    job = run(main())
    assert sorted(shape for shape, _ in backend.batches) == [(2, 3, 64, 64), (4, 3, 64, 64)]
    assert job.done == job.total == 6


def test_a_lone_item_waits_max_delay_a_full_batch_does_not():
    backend = FakeBackend()

    async def main():
        lone = batcher(backend, max_delay_s=0.2)
        lone.start()
        started = time.perf_counter()
        await lone.run_job(whole(16, 16))
        waited = time.perf_counter() - started
        await lone.close()
        full = batcher(backend, max_batch=2, max_delay_s=30.0)
        full.start()
        started = time.perf_counter()
        await asyncio.gather(full.run_job(whole(16, 16)), full.run_job(whole(16, 16)))
        not_waited = time.perf_counter() - started
        await full.close()
        return waited, not_waited

    waited, not_waited = run(main())
    assert waited >= 0.19
    assert not_waited < 5.0  # far below the 30 s delay: a full batch leaves at once
    assert [shape[0] for shape, _ in backend.batches] == [1, 2]


def test_a_cancelled_job_leaves_the_queue_and_never_runs():
    """Backend held: the first batch runs, the second is cut and waits for the backend, the
    third job waits in the queue; cancelling it empties the queue; it is never sent."""
    backend = FakeBackend()
    backend.gate = asyncio.Event()
    registry = CollectorRegistry()

    async def main():
        b = batcher(backend, registry, max_batch=1)
        b.start()
        first, second = (asyncio.create_task(b.run_job(whole(16, 16))) for _ in range(2))
        third = asyncio.create_task(b.run_job(whole(32, 32)))
        while not (backend.entered == 1 and registry.get_sample_value("tsva_queue_depth") == 1):
            await asyncio.sleep(0.001)
        third.cancel()
        await asyncio.gather(third, return_exceptions=True)
        depth = registry.get_sample_value("tsva_queue_depth")
        backend.gate.set()
        await asyncio.gather(first, second)
        await b.close()
        return third, depth

    third, depth = run(main())
    assert third.cancelled() and depth == 0
    assert backend.batches == [((1, 3, 16, 16), F32)] * 2  # the 32 x 32 tile never ran


def test_whole_tiles_go_one_per_batch_under_max_whole_tiles_while_patches_fill_max_batch():
    """The CPU rule (app.py: max_whole_tiles=1 under the `auto` plan on CPU): a batch of tiles holds all their
    activations at once and computes no faster on a CPU, so whole tiles go one by one."""
    backend = FakeBackend()
    grid = PatchGrid(96, 120, 64, 16)  # 2 x 3 patches

    async def main():
        b = batcher(backend, max_batch=4, max_whole_tiles=1)
        b.start()
        y = tile(96, 120)
        jobs = [whole(32, 32) for _ in range(3)]
        jobs.append(PatchJob(grid, pad_to_canvas(y, grid), pad_to_canvas(y, grid), FLOAT32_CONTRACT,
                             Stitcher(grid, 3)))
        await asyncio.gather(*(b.run_job(job) for job in jobs))
        await b.close()

    run(main())
    tiles = [shape for shape, _ in backend.batches if shape[2:] == (32, 32)]
    patches = sorted(shape for shape, _ in backend.batches if shape[2:] == (64, 64))
    assert tiles == [(1, 3, 32, 32)] * 3
    assert patches == [(2, 3, 64, 64), (4, 3, 64, 64)]
