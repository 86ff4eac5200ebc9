"""Reading a Prometheus endpoint in tests."""
from __future__ import annotations

import urllib.request


def read_metrics(url: str) -> dict[tuple[str, tuple], float]:
    """All samples of the Prometheus endpoint: {(name, sorted label items): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def metric(url: str, name: str, **labels) -> float:
    """One sample's value (0.0 when the sample does not exist yet)."""
    return read_metrics(url).get((name, tuple(sorted(labels.items()))), 0.0)
