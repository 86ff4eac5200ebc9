"""The embedded backend: ONNX Runtime in the gateway's process.

CPU by default; the TensorRT and CUDA execution providers are used where this ONNX Runtime build
has them. On the CPU the model's int8 form (NAME.int8.onnx beside it, written by `tsva quantize`
from this very file) is run when present: it computes the same tiles within 0.2 dB, faster
(docs/performance.md); `--precision float32` keeps the float file. session.run releases the GIL
and runs in one worker thread, so the event loop keeps serving gRPC while a batch runs, and
batches never compete for the same cores.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from tsva.server.backends.base import OUTPUT_X, Backend, BackendUnavailable, ModelInfo
from tsva.common.contract import ContractError, contract_from_io
from tsva.common.metadata import ModelMetadata
from tsva.common.precision import PRECISIONS, matching_int8

log = logging.getLogger(__name__)

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class ModelLoadError(RuntimeError):
    """The model file is missing or does not follow the model contract."""


def choose_providers(requested: list[str] | None, available: list[str]) -> list[str]:
    if not requested or requested == ["auto"]:
        return [p for p in PREFERRED_PROVIDERS if p in available] or ["CPUExecutionProvider"]
    missing = [p for p in requested if p not in available]
    if missing:
        raise ModelLoadError(f"--providers: {', '.join(missing)} not available in this ONNX Runtime "
                             f"(available: {', '.join(available)})")
    return requested


def model_file(model_path: Path, precision: str, providers: list[str]) -> tuple[Path, str]:
    """(the file to load, why): the int8 sibling on the CPU under `auto` when it belongs to
    `model_path`; `int8` insists on it, `float32` never uses it."""
    if precision not in PRECISIONS:
        raise ModelLoadError(f"--precision: {precision!r}, expected one of {', '.join(PRECISIONS)}")
    if precision == "float32":
        return model_path, "--precision float32"
    int8, why_not = matching_int8(model_path)
    if precision == "int8":
        if int8 is None:
            raise ModelLoadError(f"--precision int8: {model_path}: {why_not} (tsva quantize {model_path} writes it)")
        return int8, "--precision int8"
    if providers[0] != "CPUExecutionProvider":
        return model_path, "the int8 form is for CPUs"
    return (model_path, why_not) if int8 is None else (int8, f"the int8 form of {model_path.name}, on the CPU")


class EmbeddedBackend(Backend):
    name = "embedded"

    def __init__(self, model_path: str | Path, *, providers: list[str] | None = None,
                 intra_op_threads: int = 0, max_batch_size: int = 0, precision: str = "auto"):
        self.model_path = Path(model_path)
        self.precision = precision
        self.requested_providers = providers
        self.intra_op_threads = intra_op_threads
        self.max_batch_size = max_batch_size
        self._session = None
        self._info: ModelInfo | None = None
        self._healthy = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tsva-onnxruntime")

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        import onnxruntime as ort

        if not self.model_path.is_file():
            raise ModelLoadError(f"model not found: {self.model_path} (set --model-path or TSVA_MODEL_PATH)")
        options = ort.SessionOptions()
        if self.intra_op_threads:
            options.intra_op_num_threads = self.intra_op_threads
        providers = choose_providers(self.requested_providers, ort.get_available_providers())
        path, why = model_file(self.model_path, self.precision, providers)
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:
            raise ModelLoadError(f"cannot load {path}: {exc}") from None
        metadata = dict(session.get_modelmeta().custom_metadata_map)
        # The batch axis is left out, as Triton's config does; the contract reads the rest.
        inputs = {i.name: (i.type, i.shape[1:]) for i in session.get_inputs()}
        outputs = {o.name: (o.type, o.shape[1:]) for o in session.get_outputs()}
        try:
            contract = contract_from_io(inputs, outputs, metadata, where=str(path))
        except ContractError as exc:
            raise ModelLoadError(str(exc)) from None
        self._session = session
        accelerated = session.get_providers()[0] in PREFERRED_PROVIDERS[:2]
        typed = ModelMetadata.from_props(metadata)  # GetInfo shows the props as stored (`metadata`)
        self._info = ModelInfo(device="gpu" if accelerated else "cpu",
                               name=self.model_path.stem if typed.model_name is None else typed.model_name,
                               version="1" if typed.model_version is None else typed.model_version,
                               max_batch_size=self.max_batch_size, metadata=metadata, contract=contract)
        log.info("embedded backend: %s (%s, %s: %s) on %s", path, contract.name, typed.precision or "float32",
                 why, ", ".join(session.get_providers()))
        self._healthy = True

    def _run(self, y1: np.ndarray, y2: np.ndarray, dd: np.ndarray | None = None) -> np.ndarray:
        return self._session.run([OUTPUT_X], self._info.contract.model_inputs(y1, y2, dd))[0]

    async def infer(self, y1: np.ndarray, y2: np.ndarray, timeout_s: float | None = None,
                    dd: np.ndarray | None = None) -> np.ndarray:
        if self._session is None:
            raise BackendUnavailable("embedded backend: model not loaded")
        loop = asyncio.get_running_loop()
        try:
            # No timeout: a running session cannot be interrupted, and abandoning it would only
            # hide the work still occupying the cores.
            out = await loop.run_in_executor(self._executor, self._run, y1, y2, dd)
        except Exception as exc:
            self._healthy = False
            raise BackendUnavailable(f"embedded backend: ONNX Runtime failed on a batch of "
                                     f"{tuple(y1.shape)}: {exc}") from None
        self._healthy = True
        return out

    async def ready(self) -> bool:
        if self._session is None:
            return False
        if self._healthy:
            return True
        # After a failure, serve again only once a small probe batch runs.
        probe = self._info.contract.probe()
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._run, probe, probe)
        except Exception:
            return False
        self._healthy = True
        return True

    def model_info(self) -> ModelInfo:
        if self._info is None:
            raise BackendUnavailable("embedded backend: model not loaded")
        return self._info

    async def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._session = None
