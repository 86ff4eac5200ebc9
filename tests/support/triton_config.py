"""Reading Triton model configs (config.pbtxt) and ONNX graphs' inputs in tests."""
from __future__ import annotations

from pathlib import Path

import onnx
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc


def parse(path: Path) -> mc.ModelConfig:
    return text_format.Parse(Path(path).read_text(), mc.ModelConfig())


def onnx_io(path: Path) -> dict[str, tuple[int, list]]:
    """name -> (elem_type, dims with None for symbolic ones)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    return {v.name: (v.type.tensor_type.elem_type,
                     [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim])
            for v in [*graph.input, *graph.output]}


def assert_bounded_queue(config: mc.ModelConfig) -> None:
    policy = config.dynamic_batching.default_queue_policy
    assert config.HasField("dynamic_batching")
    assert policy.max_queue_size > 0, "an unbounded queue buffers overload without end"
    assert policy.timeout_action == mc.ModelQueuePolicy.REJECT and policy.default_timeout_microseconds > 0
    assert policy.allow_timeout_override, "the gateway's deadline must be able to shorten the wait"
