"""The contract between the gateway's micro-batcher and an inference backend.

Model I/O (the exported ONNX model follows it): inputs `y1` and `y2`, output `x`, float32 NCHW,
values in [0, 1], batch, height and width dynamic (height and width multiples of 16).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

INPUT_Y1 = "y1"
INPUT_Y2 = "y2"
OUTPUT_X = "x"


class BackendUnavailable(RuntimeError):
    """The backend cannot run inference now (server down, model not ready). Maps to UNAVAILABLE."""


@dataclass
class ModelInfo:
    name: str
    version: str
    max_batch_size: int
    metadata: dict[str, str] = field(default_factory=dict)  # the ONNX model's metadata_props


class Backend(abc.ABC):
    """Runs batches of patch pairs. Implementations must be safe to call from one asyncio loop
    with several batches outstanding at once."""

    name: str  # "embedded" or "triton"

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect / load the model. May raise BackendUnavailable."""

    @abc.abstractmethod
    async def infer(self, y1: np.ndarray, y2: np.ndarray, timeout_s: float | None = None) -> np.ndarray:
        """y1, y2: float32 [N, C, H, W] in [0, 1] -> fused float32 [N, C, H, W].
        Raises BackendUnavailable when no server/model can take the batch."""

    @abc.abstractmethod
    async def ready(self) -> bool:
        """True when a batch sent now would be served."""

    @abc.abstractmethod
    def model_info(self) -> ModelInfo:
        """Name, version, max batch size and metadata of the served model (after start)."""

    async def close(self) -> None:
        """Release connections and sessions."""
