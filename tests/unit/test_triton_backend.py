"""TritonBackend against a real tritonserver process on loopback (no gateway in between).

The server is the tritonserver binary of nvidia-pytriton; it serves the test ONNX models through a
Python-backend model running ONNX Runtime (see triton_harness.py), with model_repository/tsva_cpu's
batch size, inputs/outputs and dynamic batching."""
from __future__ import annotations

import pytest
from tsva.server.backends.triton_targets import parse_targets

pytestmark = pytest.mark.slow  # starts tritonserver processes


def test_parse_targets():
    assert parse_targets("a:1, b:2,") == ["a:1", "b:2"]
    assert parse_targets(["127.0.0.1:8001", "[::1]:8001"]) == ["127.0.0.1:8001", "[::1]:8001"]
    for bad in ("", "host", "host:port", ":8001", "host:70000"):
        with pytest.raises(ValueError, match="--triton-urls"):
            parse_targets(bad)
