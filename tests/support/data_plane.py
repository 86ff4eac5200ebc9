"""The gateway's data plane assembled in process for unit tests: Pipeline + MicroBatcher +
Admission on a FakeBackend (tests.support.fake_backend) and a private metrics registry."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from tsva.server.admission import Admission
from tsva.server.batcher import MicroBatcher
from tsva.server.config import Config
from tsva.server.metrics import Metrics
from tsva.server.pipeline import Pipeline
from tsva.server.tiles import Encoder, keep_pixels

from tests.support.fake_backend import FakeBackend


@dataclass
class DataPlane:
    pipeline: Pipeline
    batcher: MicroBatcher
    backend: FakeBackend
    metrics: Metrics
    registry: CollectorRegistry
    admission: Admission

    def sample(self, name: str, **labels) -> float | None:
        return self.registry.get_sample_value(name, labels)


@contextlib.asynccontextmanager
async def data_plane(backend: FakeBackend | None = None, *, max_batch: int = 8, max_delay_s: float = 0.002,
                     queue_size: int = 512, encoder: Encoder = keep_pixels, on_backend_error=None, **options):
    """A started data plane (call inside a running event loop); `options` are Config fields."""
    backend = backend or FakeBackend()
    config = Config(**options).validate()
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    await backend.start()
    batcher = MicroBatcher(backend, max_batch=max_batch, max_delay_s=max_delay_s, queue_size=queue_size,
                           metrics=metrics, on_backend_error=on_backend_error)
    admission = Admission.from_config(config)
    pipeline = Pipeline(config, backend, batcher, metrics, admission, encoder=encoder)
    batcher.start()
    try:
        yield DataPlane(pipeline, batcher, backend, metrics, registry, admission)
    finally:
        await batcher.close()
