"""The contract between the gateway's micro-batcher and an inference backend.

Model I/O: inputs `y1` and `y2`, output `x`, batch, height and width dynamic (multiples of 16),
either float32 NCHW in [0, 1] or uint8/uint16 NHWC pixels; tsva.common.contract reads which one
a model follows and owns the conversions.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from tsva.common.contract import FLOAT32_CONTRACT, INPUT_Y1, INPUT_Y2, OUTPUT_X, ModelContract  # noqa: F401


class BackendUnavailable(RuntimeError):
    """The backend cannot run inference now (server down, model not ready). Maps to UNAVAILABLE."""


@dataclass
class ModelInfo:
    name: str
    version: str
    max_batch_size: int
    metadata: dict[str, str] = field(default_factory=dict)  # the ONNX model's metadata_props
    contract: ModelContract = FLOAT32_CONTRACT  # read from the model's inputs at start()
    device: str = "cpu"  # "gpu" when the model runs on a GPU (whole tiles pay off there), else "cpu"
    max_side: int = 0  # largest H, W the model is built for (a TensorRT profile's), 0: no limit known


class Backend(abc.ABC):
    """Runs batches of patch pairs. Implementations must be safe to call from one asyncio loop
    with several batches outstanding at once."""

    name: str  # "embedded" or "triton"

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect / load the model. May raise BackendUnavailable."""

    @abc.abstractmethod
    async def infer(self, y1: np.ndarray, y2: np.ndarray, timeout_s: float | None = None,
                    dd: np.ndarray | None = None) -> np.ndarray:
        """y1, y2: a batch in the model's contract (model_info().contract: float32 [N, C, H, W]
        in [0, 1], or uint8/uint16 [N, H, W, C]) -> the fused batch, same shape and type.
        dd: float32 [N, 1], each item's dD in um, for a defocus-conditioned model (contract.defocus_input).
        Raises BackendUnavailable when no server/model can take the batch."""

    @abc.abstractmethod
    async def ready(self) -> bool:
        """True when a batch sent now would be served."""

    @abc.abstractmethod
    def model_info(self) -> ModelInfo:
        """Name, version, max batch size, metadata and contract of the served model (after start)."""

    async def close(self) -> None:
        """Release connections and sessions."""
