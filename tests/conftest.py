"""Fixtures shared by all tests, and the tiers: a test's folder is its marker.

tests/unit: in process, no servers, each test well under a second (`pytest -m "not e2e"`, the fast
tier). tests/e2e: real processes over real connections (gateway, tritonserver, Docker engine, the
`tsva` command), and the training side's end-to-end runs (simulate, train steps, export, evaluate).
Harnesses live in the package tests.support, imported by tests and benchmarks alike.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.gateway import start_gateway
from tests.support.models import make_tiny_onnx

TIERS = ("unit", "e2e")


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        tier = Path(item.fspath).relative_to(here).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/unit or tests/e2e")
        item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture
def torch_one_thread():
    """One torch thread for training-side tests: on a small, shared machine extra threads only contend."""
    import torch  # only the training-side tests need torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_onnx(tmp_path_factory.mktemp("models") / "tiny.onnx")


@pytest.fixture(scope="module")
def gateway(tiny_model):
    """One gateway per test module, tiny model, small patches so tests stay fast."""
    with start_gateway(tiny_model, patch_size=64, patch_overlap=16, max_batch=8) as gw:
        yield gw
