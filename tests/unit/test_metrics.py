"""tsva.server.metrics on explicit registries: no global default, two sets never share values."""
import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from tsva.server.metrics import Metrics

OUTCOMES = ("ok", "invalid_argument", "unavailable", "cancelled", "deadline_exceeded", "resource_exhausted",
            "internal")


def test_metrics_need_a_registry():
    with pytest.raises(TypeError):
        Metrics()


def test_two_registries_keep_their_own_values():
    first, second = CollectorRegistry(), CollectorRegistry()
    a, b = Metrics(first), Metrics(second)
    a.tiles.labels("ok").inc(3)
    a.queue_depth.set(7)
    b.tiles.labels("ok").inc()
    assert first.get_sample_value("tsva_tiles_total", {"outcome": "ok"}) == 3
    assert second.get_sample_value("tsva_tiles_total", {"outcome": "ok"}) == 1
    assert (first.get_sample_value("tsva_queue_depth"), second.get_sample_value("tsva_queue_depth")) == (7, 0)
    # Every outcome is exported from the start, at 0; nothing landed on the global registry.
    assert all(second.get_sample_value("tsva_tiles_total", {"outcome": o}) is not None for o in OUTCOMES)
    assert REGISTRY.get_sample_value("tsva_tiles_total", {"outcome": "ok"}) is None


def test_one_registry_holds_one_set():
    registry = CollectorRegistry()
    Metrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Metrics(registry)
