"""An in-process backend for unit tests of the data plane (Pipeline, MicroBatcher, servicer).

It stands in for ONNX Runtime / Triton (tsva.server.backends.embedded / triton, which the tests
in tests/e2e drive as real sessions and servers): it implements tsva.server.backends.base with
numpy, x = clip(0.75*y1 + 0.25*y2) - the tiny test model's function (tests.support.tiles.
expected_fusion) - in the contract it is given (float32 NCHW in [0, 1] or uint8/uint16 NHWC).
It records every batch, can hold batches until released and can fail the batches that carry a
white item (fault injection for the "a backend error fails exactly that batch" rule).
"""
from __future__ import annotations

import asyncio

import numpy as np
from tsva.common.contract import FLOAT32_CONTRACT, ModelContract
from tsva.server.backends.base import Backend, BackendUnavailable, ModelInfo

W1, W2 = 0.75, 0.25


class FakeBackend(Backend):
    name = "fake"

    def __init__(self, contract: ModelContract = FLOAT32_CONTRACT, *, metadata: dict[str, str] | None = None,
                 max_batch_size: int = 0, device: str = "cpu"):
        self.contract = contract
        self.info = ModelInfo(name="fake", version="3", max_batch_size=max_batch_size, metadata=dict(metadata or {}),
                              contract=contract, device=device)
        self.batches: list[tuple[tuple[int, ...], np.dtype]] = []  # (shape, dtype) of each batch run
        self.dd: list[np.ndarray] = []        # the dd input of each batch (conditioned models)
        self.fail_on_white = False              # fail a batch holding a white item (y1 or y2)
        self.gate: asyncio.Event | None = None  # when set: batches wait until it is set
        self.entered = 0                        # batches that reached infer()

    async def start(self) -> None:
        pass

    async def ready(self) -> bool:
        return True

    def model_info(self) -> ModelInfo:
        return self.info

    async def infer(self, y1: np.ndarray, y2: np.ndarray, timeout_s: float | None = None,
                    dd: np.ndarray | None = None) -> np.ndarray:
        self.entered += 1
        if self.gate is not None:
            await self.gate.wait()
        self.batches.append((tuple(y1.shape), y1.dtype))
        if dd is not None:
            self.dd.append(dd.copy())
        peak = 1.0 if y1.dtype == np.float32 else float(np.iinfo(y1.dtype).max)
        if self.fail_on_white and any(float(item.mean()) / peak > 0.999 for item in (*y1, *y2)):
            raise BackendUnavailable("fake backend: injected failure")
        x = np.clip(W1 * y1.astype(np.float64) / peak + W2 * y2.astype(np.float64) / peak, 0.0, 1.0)
        if y1.dtype == np.float32:
            return x.astype(np.float32)
        return np.rint(x * peak).astype(y1.dtype)
