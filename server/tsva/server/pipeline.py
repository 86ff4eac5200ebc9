"""The data plane, over domain types (tsva.server.tiles): validate -> decode -> Brenner order ->
patch -> batch -> stitch -> encode. Every rule about tiles lives here; the gRPC servicer only
translates (tsva.server.translate) and admits (tsva.server.admission).
"""
from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import numpy as np

import tsva.server
from tsva.common.brenner import brenner, refine_peak
from tsva.common.contract import MODEL_CHANNELS
from tsva.common.metadata import ModelMetadata
from tsva.server.admission import Admission, TileSlot
from tsva.server.backends.base import Backend
from tsva.server.batcher import MicroBatcher
from tsva.server.config import CPU_WHOLE_TILE_MAX_PIXELS, Config, ConfigError
from tsva.server.errors import InvalidRequest
from tsva.server.focus_qc import GatewayFocusQC
from tsva.server.metrics import Metrics
from tsva.server.patching import PatchGrid, PatchJob, Stitcher, TileJob, WholeTileJob, pad_to_canvas
from tsva.server.tiles import (Encoder, FocusResult, FocusSurvey, FusedTile, Optics, ServiceInfo, ServiceLimits,
                               TilePair, Timings, keep_pixels)

PIXEL_SIZE_TOLERANCE = 0.10  # a request's pixel_size_um may differ this much from the model's


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


class Pipeline:
    """`metadata`: the served model's metadata_props (GetInfo, pixel size and dD checks, focus
    QC); `encoder`: what the fused pixels become (the servicer's writes them into its reply)."""

    def __init__(self, config: Config, backend: Backend, batcher: MicroBatcher, metrics: Metrics,
                 admission: Admission, *, metadata: dict[str, str] | None = None, encoder: Encoder = keep_pixels):
        self.config, self.backend, self.batcher, self.metrics = config, backend, batcher, metrics
        self.admission, self.encoder = admission, encoder
        self.metadata = dict(metadata if metadata is not None else backend.model_info().metadata)  # as stored
        self.model_metadata = ModelMetadata.from_props(self.metadata)
        self.focus_qc = GatewayFocusQC(lambda: self.model_metadata, metrics)
        # The patch plan and the tensors' form follow the served model (read at backend start).
        model = backend.model_info()
        self.contract = model.contract
        self.patch_side = config.patch_side(model.device, model.max_side)  # 0: whole tiles
        self.patch_align = patch_alignment(config, self.contract, self.patch_side)
        # Whole tiles on CPU: the larger ones as patches (memory grows with a whole tile).
        self.large_tile_side = config.large_tile_side(model.device) if not self.patch_side else 0
        self.large_tile_align = patch_alignment(config, self.contract, self.large_tile_side)

    # ---- Fuse ------------------------------------------------------------------------------

    async def fuse(self, pair: TilePair, *, slot: TileSlot | None = None) -> FusedTile:
        """Fuses one pair; `slot` (from the admission) is released here, else one is taken and
        released. Raises InvalidRequest/ImageError (the message names the field; the caller adds
        the tile), BackendUnavailable, CancelledError."""
        received = time.perf_counter()
        if slot is None:
            slot = await self.admission.tile_slot()
        self.metrics.inflight_tiles.inc()
        try:
            self._check_pair(pair)
            return await self._fuse(pair, received)
        finally:
            self.metrics.inflight_tiles.dec()
            slot.release()

    def _check_pair(self, pair: TilePair) -> None:
        for name in ("defocus_a_um", "defocus_b_um"):
            if not math.isfinite(getattr(pair, name)):
                raise InvalidRequest(f"{name}: {getattr(pair, name)} is not a finite number")
        if pair.pixel_size_um is not None:
            self._check_pixel_size(pair.pixel_size_um)

    def _check_pixel_size(self, pixel_size_um: float) -> None:
        """A tile of another magnification would be fused with the wrong blur: refused."""
        model = self.model_metadata.optics.pixel_size_um or 0.0
        if not (math.isfinite(pixel_size_um) and pixel_size_um > 0):
            raise InvalidRequest(f"pixel_size_um: {pixel_size_um} is not a positive number")
        if model > 0 and abs(pixel_size_um - model) > PIXEL_SIZE_TOLERANCE * model:
            raise InvalidRequest(f"pixel_size_um: {pixel_size_um:g} um/px is more than "
                                 f"{PIXEL_SIZE_TOLERANCE:.0%} from the model's {model:g} um/px")

    def _model_dd(self, pair: TilePair) -> float:
        """The pair's dD for a defocus-conditioned model, clamped to the dD values it was trained
        for (the focus QC flags a pair outside them for rescan, with the reason)."""
        dd = abs(pair.defocus_b_um - pair.defocus_a_um) / 2
        trained = self.model_metadata.optics.defocus_um
        return float(min(max(dd, min(trained)), max(trained))) if trained else float(dd)

    async def _fuse(self, pair: TilePair, received: float) -> FusedTile:
        cfg = self.config
        decoded_pair = await asyncio.to_thread(self._decode_pair, pair)
        decoded = time.perf_counter()
        b_sharper = decoded_pair.b_is_sharper
        y1, y2 = (decoded_pair.shot_b, decoded_pair.shot_a) if b_sharper else (decoded_pair.shot_a,
                                                                                decoded_pair.shot_b)
        height, width, channels = y1.shape
        encoding = pair.output_encoding or pair.shot_a.encoding
        if encoding == "png" and y1.dtype == np.uint16 and channels == 3:
            raise InvalidRequest("output_encoding: PNG cannot hold 16-bit colour here; ask for TIFF or RAW")
        job: TileJob
        side, align = self.patch_side, self.patch_align
        if not side and self.large_tile_side and height * width > CPU_WHOLE_TILE_MAX_PIXELS:
            side, align = self.large_tile_side, self.large_tile_align
        if side:
            grid = PatchGrid(height, width, side, cfg.patch_overlap, align)
            job = PatchJob(grid, pad_to_canvas(y1, grid), pad_to_canvas(y2, grid), self.contract,
                           Stitcher(grid, MODEL_CHANNELS))
        else:
            job = WholeTileJob(y1, y2, self.contract)
        if self.contract.defocus_input:
            job.dd_um = self._model_dd(pair)
        qc = self.focus_qc.start(pair, decoded_pair.shot_a, decoded_pair.shot_b)  # beside the inference
        await self.batcher.run_job(job)
        stitched = time.perf_counter()
        image = await asyncio.to_thread(self._finish, job, y1.dtype, channels, encoding)
        done = time.perf_counter()

        if b_sharper:
            self.metrics.shot_order_swaps.inc()
        self.metrics.fused_pixels.inc(height * width)
        self.metrics.tile_latency.observe(done - received)
        ms = lambda seconds: 1000.0 * seconds  # noqa: E731
        tile = FusedTile(
            tile_id=pair.tile_id, slide_id=pair.slide_id, position=pair.position, image=image, encoding=encoding,
            brenner_a=decoded_pair.brenner_a, brenner_b=decoded_pair.brenner_b, y1_shot="b" if b_sharper else "a",
            timings=Timings(decode_ms=ms(decoded - received), queue_ms=ms(job.queue_s),
                            inference_ms=ms(job.inference_s), encode_ms=ms(done - stitched),
                            total_ms=ms(done - received)))
        await self.focus_qc.finish(qc, tile)
        return tile

    def _limits(self) -> dict[str, int]:
        return dict(max_width=self.config.max_tile_width, max_height=self.config.max_tile_height)

    def _decode_pair(self, pair: TilePair) -> DecodedPair:
        shot_a = pair.shot_a.decode("shot_a", **self._limits())
        shot_b = pair.shot_b.decode("shot_b", **self._limits())
        if shot_a.shape != shot_b.shape or shot_a.dtype != shot_b.dtype:
            raise InvalidRequest(f"shot_b: {describe(shot_b)} does not match shot_a {describe(shot_a)} "
                                 f"(size, channels and pixel type must agree)")
        return DecodedPair(shot_a, shot_b, brenner(shot_a), brenner(shot_b))

    def _finish(self, job: TileJob, dtype, channels: int, encoding: str):
        return self.encoder(job.result(dtype, channels), encoding)

    # ---- FindFocus ---------------------------------------------------------------------------

    async def find_focus(self, survey: FocusSurvey) -> FocusResult:
        return await asyncio.to_thread(self._find_focus, survey)

    def _find_focus(self, survey: FocusSurvey) -> FocusResult:
        planes, z = survey.planes, np.asarray(survey.z_um, dtype=np.float64)
        if not planes:
            raise InvalidRequest("planes: empty (send the z-stack, one image per plane)")
        if len(z) != len(planes):
            raise InvalidRequest(f"z_um: {len(z)} values for {len(planes)} planes (one z per plane)")
        if not np.all(np.isfinite(z)):
            raise InvalidRequest("z_um: values must be finite numbers")
        steps = np.diff(z)
        if len(z) > 1 and not (np.all(steps > 0) or np.all(steps < 0)):
            raise InvalidRequest("z_um: must be strictly increasing or strictly decreasing")
        scores, first = [], None
        for i, plane in enumerate(planes):
            array = plane.decode(f"planes[{i}]", **self._limits())
            if first is None:
                first = array
            elif array.shape != first.shape or array.dtype != first.dtype:
                raise InvalidRequest(f"planes[{i}]: {describe(array)} does not match planes[0] {describe(first)}")
            scores.append(brenner(array))
        scores = np.asarray(scores)
        best = int(np.argmax(scores))
        return FocusResult(tile_id=survey.tile_id, best_index=best, best_z_um=float(z[best]),
                           refined_z_um=refine_peak(z, scores, best), brenner=scores.tolist())

    # ---- GetInfo ------------------------------------------------------------------------------

    def info(self) -> ServiceInfo:
        cfg = self.config
        model = self.backend.model_info()
        return ServiceInfo(
            service_version=tsva.server.__version__, model_name=model.name, model_version=model.version,
            backend=self.backend.name, optics=optics_of(self.model_metadata),
            limits=ServiceLimits(max_tile_width=cfg.max_tile_width, max_tile_height=cfg.max_tile_height,
                                 max_batch_size=self.batcher.max_batch, max_message_bytes=cfg.max_message_bytes,
                                 max_concurrent_streams=self.admission.max_streams),
            patch_size=self.patch_side, patch_overlap=cfg.patch_overlap if self.patch_side else 0,
            model_metadata=dict(self.metadata))


def patch_alignment(config: Config, contract, patch_side: int) -> int:
    """Patch origins' alignment: --patch-align, or the network's stride (the model's size_multiple
    metadata). ConfigError when the patch plan does not fit the served model."""
    align = config.patch_align or contract.stride
    if not patch_side:
        return align
    if patch_side % contract.size_multiple:
        raise ConfigError(f"--patch-size: {patch_side} is not a multiple of the model's size multiple "
                          f"{contract.size_multiple}")
    if patch_side % align:
        raise ConfigError(f"--patch-align: {align} (the model's stride when not set) must divide --patch-size "
                          f"{patch_side}")
    if config.patch_overlap > patch_side - align:
        raise ConfigError(f"--patch-overlap: must be >= 0 and at most --patch-size minus --patch-align "
                          f"({patch_side} - {align})")
    return align


def optics_of(model: ModelMetadata) -> Optics:
    """GetInfo's optics from the model's optics.* metadata (missing or unreadable keys stay 0)."""
    optics = model.optics
    return Optics(numerical_aperture=optics.numerical_aperture or 0.0, refractive_index=optics.refractive_index or 0.0,
                  pixel_size_um=optics.pixel_size_um or 0.0, wavelengths_um=optics.wavelengths_um or (),
                  defocus_um=optics.defocus_um or (), focus_sigma_um=optics.focus_sigma_um or 0.0)
