"""The protocol-independent data plane: validate -> decode -> Brenner order -> patch -> batch ->
stitch -> encode. The gRPC servicer only translates; every rule about tiles lives here.
"""
from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import numpy as np

import tsva.server
from tsva.common.images import decode_image, encode_image
from tsva.server.backends.base import Backend
from tsva.server.batcher import MicroBatcher
from tsva.common.brenner import brenner, refine_peak
from tsva.server.config import Config
from tsva.server.errors import InvalidRequest
from tsva.server.focus_qc import GatewayFocusQC
from tsva.server.metrics import Metrics
from tsva.common.contract import MODEL_CHANNELS
from tsva.server.patching import PatchGrid, PatchJob, Stitcher, TileJob, WholeTileJob, pad_to_canvas
from tsva.v1 import tsva_pb2 as pb

OUTPUT_ENCODINGS = (pb.IMAGE_ENCODING_UNSPECIFIED, pb.IMAGE_ENCODING_RAW, pb.IMAGE_ENCODING_PNG,
                    pb.IMAGE_ENCODING_TIFF)


def describe(array: np.ndarray) -> str:
    h, w, c = array.shape
    return f"{w}x{h}x{c} {array.dtype.name}"


@dataclass
class DecodedPair:
    shot_a: np.ndarray
    shot_b: np.ndarray
    brenner_a: float
    brenner_b: float

    @property
    def b_is_sharper(self) -> bool:
        # Ties (blank glass: both 0) keep shot_a as Y1.
        return self.brenner_b > self.brenner_a


class TileSlot:
    """One admitted tile; release() is idempotent (also safe from a task's done-callback, for a
    task cancelled before it ever ran)."""

    def __init__(self, semaphore: asyncio.Semaphore):
        self._semaphore = semaphore

    def release(self) -> None:
        if self._semaphore is not None:
            self._semaphore.release()
            self._semaphore = None


PIXEL_SIZE_TOLERANCE = 0.10  # a request's pixel_size_um may differ this much from the model's

class Pipeline:
    def __init__(self, config: Config, backend: Backend, batcher: MicroBatcher, metrics: Metrics):
        self.config, self.backend, self.batcher, self.metrics = config, backend, batcher, metrics
        self._tile_slots = asyncio.Semaphore(config.max_inflight_tiles)
        self.focus_qc = GatewayFocusQC(lambda: _model_metadata(config, backend), metrics)
        # The patch plan and the tensors' form follow the served model (read at backend start).
        model = backend.model_info()
        self.contract = model.contract
        self.patch_side = config.patch_side(model.device, model.max_side)  # 0: whole tiles
        self._model_meta: dict[str, str] | None = None

    # ---- Fuse ------------------------------------------------------------------------------

    async def admit(self) -> "TileSlot":
        """Waits for one of the --max-inflight-tiles slots. A stream takes the slot before it
        reads on, so requests waiting for work never pile up in memory."""
        await self._tile_slots.acquire()
        return TileSlot(self._tile_slots)

    async def fuse(self, request: pb.FuseRequest, *, slot: "TileSlot | None" = None) -> pb.FuseResponse:
        """Fuses one pair; `slot` (from admit()) is released here, else one is taken and released.
        Raises InvalidRequest/ImageError (the message names the field; the caller adds the tile),
        BackendUnavailable, CancelledError."""
        received = time.perf_counter()
        if slot is None:
            slot = await self.admit()
        self.metrics.inflight_tiles.inc()
        try:
            self._check_request(request)
            return await self._fuse(request, received)
        finally:
            self.metrics.inflight_tiles.dec()
            slot.release()

    def _check_request(self, request: pb.FuseRequest) -> None:
        for name in ("shot_a", "shot_b"):
            if not request.HasField(name):
                raise InvalidRequest(f"{name}: missing")
        if request.output_encoding not in OUTPUT_ENCODINGS:
            raise InvalidRequest(f"output_encoding: unknown value {request.output_encoding} "
                                 f"(UNSPECIFIED, RAW, PNG or TIFF)")
        for name in ("defocus_a_um", "defocus_b_um"):
            if not math.isfinite(getattr(request, name)):
                raise InvalidRequest(f"{name}: {getattr(request, name)} is not a finite number")
        if request.HasField("pixel_size_um"):
            self._check_pixel_size(request.pixel_size_um)

    def _check_pixel_size(self, pixel_size_um: float) -> None:
        """A tile of another magnification would be fused with the wrong blur: refused."""
        try:
            model = float(self._metadata().get("optics.pixel_size_um", ""))
        except ValueError:
            model = 0.0
        if not (math.isfinite(pixel_size_um) and pixel_size_um > 0):
            raise InvalidRequest(f"pixel_size_um: {pixel_size_um} is not a positive number")
        if model > 0 and abs(pixel_size_um - model) > PIXEL_SIZE_TOLERANCE * model:
            raise InvalidRequest(f"pixel_size_um: {pixel_size_um:g} um/px is more than "
                                 f"{PIXEL_SIZE_TOLERANCE:.0%} from the model's {model:g} um/px")

    def _metadata(self) -> dict[str, str]:
        """The served model's metadata, read once (reading it means loading the model file)."""
        if self._model_meta is None:
            self._model_meta = _model_metadata(self.config, self.backend)
        return self._model_meta

    def _model_dd(self, request: pb.FuseRequest) -> float:
        """The pair's dD for a defocus-conditioned model, clamped to the dD values it was trained
        for (the focus QC flags a pair outside them for rescan, with the reason)."""
        dd = abs(request.defocus_b_um - request.defocus_a_um) / 2
        try:
            trained = [float(v) for v in self._metadata().get("optics.defocus_um", "").split(",") if v.strip()]
        except ValueError:
            trained = []
        return float(min(max(dd, min(trained)), max(trained))) if trained else float(dd)

    async def _fuse(self, request: pb.FuseRequest, received: float) -> pb.FuseResponse:
        cfg = self.config
        pair = await asyncio.to_thread(self._decode_pair, request)
        decoded = time.perf_counter()
        y1, y2 = (pair.shot_b, pair.shot_a) if pair.b_is_sharper else (pair.shot_a, pair.shot_b)
        height, width, channels = y1.shape
        encoding = request.output_encoding or request.shot_a.encoding
        if encoding == pb.IMAGE_ENCODING_PNG and y1.dtype == np.uint16 and channels == 3:
            raise InvalidRequest("output_encoding: PNG cannot hold 16-bit colour here; ask for TIFF or RAW")
        job: TileJob
        if self.patch_side:
            grid = PatchGrid(height, width, self.patch_side, cfg.patch_overlap, cfg.patch_align)
            job = PatchJob(grid, pad_to_canvas(y1, grid), pad_to_canvas(y2, grid), self.contract,
                           Stitcher(grid, MODEL_CHANNELS))
        else:
            job = WholeTileJob(y1, y2, self.contract)
        if self.contract.defocus_input:
            job.dd_um = self._model_dd(request)
        qc = self.focus_qc.start(request, pair.shot_a, pair.shot_b)  # beside the inference
        await self.batcher.run_job(job)
        stitched = time.perf_counter()
        # The fused image is written straight into the response (no copy of it into a message).
        response = await asyncio.to_thread(self._finish, job, y1.dtype, channels, encoding)
        done = time.perf_counter()

        if pair.b_is_sharper:
            self.metrics.shot_order_swaps.inc()
        self.metrics.fused_pixels.inc(height * width)
        self.metrics.tile_latency.observe(done - received)
        ms = lambda seconds: 1000.0 * seconds  # noqa: E731
        response.MergeFrom(pb.FuseResponse(
            tile_id=request.tile_id, slide_id=request.slide_id, position=request.position,
            brenner_a=pair.brenner_a, brenner_b=pair.brenner_b,
            y1_shot=pb.SHOT_B if pair.b_is_sharper else pb.SHOT_A,
            timings=pb.Timings(decode_ms=ms(decoded - received), queue_ms=ms(job.queue_s),
                               inference_ms=ms(job.inference_s), encode_ms=ms(done - stitched),
                               total_ms=ms(done - received))))
        await self.focus_qc.finish(qc, response)
        return response

    def _decode_pair(self, request: pb.FuseRequest) -> DecodedPair:
        limits = dict(max_width=self.config.max_tile_width, max_height=self.config.max_tile_height)
        shot_a = decode_image(request.shot_a, "shot_a", **limits)
        shot_b = decode_image(request.shot_b, "shot_b", **limits)
        if shot_a.shape != shot_b.shape or shot_a.dtype != shot_b.dtype:
            raise InvalidRequest(f"shot_b: {describe(shot_b)} does not match shot_a {describe(shot_a)} "
                                 f"(size, channels and pixel type must agree)")
        return DecodedPair(shot_a, shot_b, brenner(shot_a), brenner(shot_b))

    @staticmethod
    def _finish(job: TileJob, dtype, channels: int, encoding: int) -> pb.FuseResponse:
        response = pb.FuseResponse()
        encode_image(job.result(dtype, channels), encoding, out=response.fused)
        return response

    # ---- FindFocus ---------------------------------------------------------------------------

    async def find_focus(self, request: pb.FindFocusRequest) -> pb.FindFocusResponse:
        return await asyncio.to_thread(self._find_focus, request)

    def _find_focus(self, request: pb.FindFocusRequest) -> pb.FindFocusResponse:
        planes, z = request.planes, np.asarray(request.z_um, dtype=np.float64)
        if not planes:
            raise InvalidRequest("planes: empty (send the z-stack, one image per plane)")
        if len(z) != len(planes):
            raise InvalidRequest(f"z_um: {len(z)} values for {len(planes)} planes (one z per plane)")
        if not np.all(np.isfinite(z)):
            raise InvalidRequest("z_um: values must be finite numbers")
        steps = np.diff(z)
        if len(z) > 1 and not (np.all(steps > 0) or np.all(steps < 0)):
            raise InvalidRequest("z_um: must be strictly increasing or strictly decreasing")
        limits = dict(max_width=self.config.max_tile_width, max_height=self.config.max_tile_height)
        scores, first = [], None
        for i, plane in enumerate(planes):
            array = decode_image(plane, f"planes[{i}]", **limits)
            if first is None:
                first = array
            elif array.shape != first.shape or array.dtype != first.dtype:
                raise InvalidRequest(f"planes[{i}]: {describe(array)} does not match planes[0] {describe(first)}")
            scores.append(brenner(array))
        scores = np.asarray(scores)
        best = int(np.argmax(scores))
        return pb.FindFocusResponse(tile_id=request.tile_id, best_index=best, best_z_um=float(z[best]),
                                    refined_z_um=refine_peak(z, scores, best), brenner=scores.tolist())

    # ---- GetInfo ------------------------------------------------------------------------------

    def info(self, metadata: dict[str, str]) -> pb.GetInfoResponse:
        cfg = self.config
        model = self.backend.model_info()
        return pb.GetInfoResponse(
            service_version=tsva.server.__version__, model_name=model.name, model_version=model.version,
            backend=self.backend.name, optics=optics_from_metadata(metadata),
            limits=pb.Limits(max_tile_width=cfg.max_tile_width, max_tile_height=cfg.max_tile_height,
                             max_batch_size=self.batcher.max_batch, max_message_bytes=cfg.max_message_bytes,
                             max_concurrent_streams=cfg.max_streams),
            patch_size=self.patch_side, patch_overlap=cfg.patch_overlap if self.patch_side else 0,
            model_metadata=metadata)


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        return []


def optics_from_metadata(metadata: dict[str, str]) -> pb.Optics:
    """GetInfo.optics from the model's metadata keys optics.* (missing or unreadable keys stay 0)."""
    scalar = lambda key: (_floats(metadata.get(key, "")) or [0.0])[0]  # noqa: E731
    return pb.Optics(numerical_aperture=scalar("optics.numerical_aperture"),
                     refractive_index=scalar("optics.refractive_index"),
                     pixel_size_um=scalar("optics.pixel_size_um"),
                     wavelengths_um=_floats(metadata.get("optics.wavelengths_um", "")),
                     defocus_um=_floats(metadata.get("optics.defocus_um", "")),
                     focus_sigma_um=scalar("optics.focus_sigma_um"))


def _model_metadata(config: Config, backend: Backend) -> dict[str, str]:
    from tsva.server.app import model_metadata  # app imports this module
    return model_metadata(config, backend)
