"""A slide through the service: stream the pairs through FuseTiles (a window of tiles in flight),
place each fused tile's share on the canvas as it comes back, then write the pyramids, the QC CSV,
the focus map and the summary. State is saved as tiles come back, so a scan that breaks off (the
server gone) leaves a valid partial slide and `--resume` sends only the tiles still missing."""
from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tsva.client.results import FusePair

from . import report, writers
from .canvas import Canvas
from .layout import Layout
from .manifest import Slide

STATE = "state.json"
SAVE_EVERY_S = 2.0


class ScanInputError(ValueError):
    """Bad options or output folder (exit 2)."""


@dataclass
class Outcome:
    summary: dict
    unanswered: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.unanswered and not self.failed


class Scan:
    def __init__(self, slide: Slide, out: Path, *, window: int, compression: str, quality: int,
                 resume: bool, simulator=None, progress: bool = True, keep_work: bool = False,
                 write_threads: int | None = None, dicom: bool = False):
        self.slide, self.out, self.window = slide, Path(out), window
        self.compression, self.quality, self.simulator = compression, quality, simulator
        self.codec = writers.codec_for(compression, quality, slide.channels)  # a missing codec: exit 2, before any call
        self.write_threads = write_threads
        self.dicom = _dicom_writer() if dicom else None  # a missing extra: exit 2, before any call
        self.progress, self.keep_work = progress, keep_work
        self.work = self.out / "work"
        self.layout = Layout(slide.tiles)
        self.index = {t.tile_id: i for i, t in enumerate(slide.tiles)}
        self.qc = {t.tile_id: report.TileQC(t.tile_id, t.x, t.y) for t in slide.tiles}
        self.psnr = report.PsnrAccumulator()
        self.region = None
        self.state = {"fingerprint": slide.fingerprint, "width": slide.width, "height": slide.height,
                      "channels": slide.channels, "focal_plane_um": None, "done": [], "sse": self.psnr.sse,
                      "pixels": 0, "wall_s": 0.0}
        self._prepare(resume)

    # ---- state ---------------------------------------------------------------------------------

    def _prepare(self, resume: bool) -> None:
        state_path = self.work / STATE
        if resume:
            if not state_path.is_file():
                raise ScanInputError(f"--resume: no unfinished scan in {str(self.out)!r} (no {STATE})")
            state = json.loads(state_path.read_text())
            if state.get("fingerprint") != self.slide.fingerprint:
                raise ScanInputError(f"--resume: {str(self.out)!r} holds the scan of another input "
                                     f"({state.get('fingerprint')} here, {self.slide.fingerprint} now)")
            self.state.update(state)
            self.psnr.sse, self.psnr.pixels = state["sse"], state["pixels"]
            qc_path = self.out / "qc.csv"
            if qc_path.is_file():
                for row in report.read_qc_csv(qc_path):
                    if row.tile_id in self.qc and row.tile_id in set(state["done"]):
                        self.qc[row.tile_id] = row
        elif state_path.exists():
            raise ScanInputError(f"-o: {str(self.out)!r} holds an unfinished scan: add --resume to continue it, "
                                 f"or choose another folder")
        self.out.mkdir(parents=True, exist_ok=True)
        self.canvas = Canvas(self.work, self.slide.width, self.slide.height, self.slide.channels, create=not resume)

    def _save_state(self) -> None:
        self.state["pixels"] = self.psnr.pixels
        tmp = self.work / (STATE + ".tmp")
        tmp.write_text(json.dumps(self.state))
        tmp.replace(self.work / STATE)
        report.write_qc_csv(self.out / "qc.csv", [self.qc[t.tile_id] for t in self.slide.tiles])

    # ---- streaming ---------------------------------------------------------------------------

    def run(self, client) -> Outcome:
        from tsva.client.errors import TsvaError

        done = set(self.state["done"])
        todo = [t for t in self.slide.tiles if t.tile_id not in done]
        if self.simulator is not None:
            if self.state["focal_plane_um"] is None:
                planes, z = self.simulator.z_stack()
                found = client.find_focus(planes, z, tile_id=self.simulator.focus_tile.tile_id).refined_z_um
                self.state["focal_plane_um"] = round(found / 0.05) * 0.05  # the focus drive's step
            self.simulator.focal_plane_um = self.state["focal_plane_um"]
        self._save_state()
        pending: dict[str, object] = {}
        answered_px = 0
        started = time.perf_counter()
        bar = _progress(len(todo), self.progress)
        broken = None
        last_save = time.monotonic()

        def pairs():
            for t in todo:
                if self.simulator is not None:
                    sim = self.simulator.tile(t)
                    pending[t.tile_id] = sim
                    a, b = sim.shot_a, sim.shot_b
                else:
                    a, b = str(t.shot_a), str(t.shot_b)
                yield FusePair(a, b, tile_id=t.tile_id, slide_id=self.slide.slide_id, position=(t.x, t.y),
                               defocus_a_um=t.defocus_a_um, defocus_b_um=t.defocus_b_um, output_encoding="raw")

        try:
            for result in client.fuse_stream(pairs(), window=self.window):
                answered_px += self._take(result, pending.pop(result.tile_id, None))
                if bar is not None:
                    elapsed = time.perf_counter() - started
                    bar.set_postfix_str(f"{answered_px / 1e6 / max(elapsed, 1e-9):.2f} MP/s", refresh=False)
                    bar.update(1)
                if time.monotonic() - last_save > SAVE_EVERY_S:
                    self._save_state()
                    last_save = time.monotonic()
        except TsvaError as exc:
            broken = str(exc)
        finally:
            if bar is not None:
                bar.close()
        wall = time.perf_counter() - started
        self.state["wall_s"] += wall
        self._save_state()
        return self._finish(wall, answered_px, broken)

    def _take(self, result, sim) -> int:
        qc = self.qc[result.tile_id]
        tile_index = self.index[result.tile_id]
        t = self.slide.tiles[tile_index]
        if sim is not None:
            qc.true_focus_offset_um = sim.focus_offset_um
        if not result.ok:
            qc.status, qc.error = result.error.status, result.error.message
            return 0
        image = result.image
        if image.ndim == 2:
            image = image[..., None]
        if image.shape != (t.height, t.width, self.slide.channels) or image.dtype != np.uint8:
            qc.status = "INTERNAL"
            qc.error = (f"fused tile is {image.shape[1]}x{image.shape[0]}x{image.shape[2]} {image.dtype}, expected "
                        f"{t.width}x{t.height}x{self.slide.channels} uint8 (scan writes 8-bit slides)")
            return 0
        placing = time.thread_time()
        mask = self.layout.owned(tile_index)
        self.canvas.put(t.x, t.y, image, mask)
        self.state["place_cpu_s"] = self.state.get("place_cpu_s", 0.0) + time.thread_time() - placing
        qc.status, qc.error = "ok", ""
        qc.focus_offset_um, qc.rescan, qc.rescan_reason = result.focus_offset_um, result.rescan, result.rescan_reason
        self.state["focus_range_um"] = result.trained_focus_range_um
        if sim is not None:
            sharper = sim.shot_b if result.y1_shot == "B" else sim.shot_a
            self.psnr.add(sim.truth, mask, fused=image, sharper=sharper)
            cx, cy = self.slide.width / 2, self.slide.height / 2
            distance = math.hypot(t.centre[0] - cx, t.centre[1] - cy)
            if self.region is None or distance < self.region[0]:
                self.region = (distance, sharper, image, sim.truth)
        self.state["done"].append(result.tile_id)
        return t.width * t.height

    # ---- outputs -------------------------------------------------------------------------------

    def _finish(self, wall: float, answered_px: int, broken: str | None) -> Outcome:
        rows = [self.qc[t.tile_id] for t in self.slide.tiles]
        unanswered = [r.tile_id for r in rows if r.status == "not answered"]
        failed = [r.tile_id for r in rows if r.status not in ("ok", "not answered")]
        missing = len(unanswered) + len(failed)
        partial = f"partial: {missing} of {len(rows)} tiles not fused (see qc.csv)" if missing else "complete"
        description = f"TSVA two-shot scan of {self.slide.source}; {partial}"
        write_started = time.process_time()
        threads = self.write_threads or writers.cpus()
        stem = self.out / "slide"
        levels = writers.write_slides(stem.with_suffix(".ome.tif"), stem.with_suffix(".tif"), self.canvas,
                                      self.slide.pixel_size_um,
                                      name=f"{self.slide.slide_id}{' (partial)' if missing else ''}",
                                      description=description, codec=self.codec, threads=threads,
                                      build_pyramid_to=2 * writers.TILE)
        write_cpu = time.process_time() - write_started
        dicom_folder = None
        if self.dicom is not None:  # the DICOM WSI series, from the OME-TIFF just written
            dicom_folder, dicom_started = self.out / self.dicom.FOLDER, time.process_time()
            header = self.dicom.slide_header(self.slide, description, partial=bool(missing))
            self.dicom.write_series(stem.with_suffix(".ome.tif"), dicom_folder, header, threads=threads)
            dicom_cpu = time.process_time() - dicom_started
        (self.out / "unanswered.txt").write_text("".join(f"{i}\n" for i in unanswered + failed))
        focus_note = report.write_focus_map(self.out / "focus_map.png", rows, self.slide.tiles, self.slide.width,
                                            self.slide.height, self.slide.pixel_size_um, self._limit())
        flagged = sum(r.rescan for r in rows)
        errors = [abs(r.focus_offset_um - r.true_focus_offset_um) for r in rows
                  if r.focus_offset_um is not None and r.true_focus_offset_um is not None]
        summary = {
            "slide": str(stem.with_suffix(".ome.tif")), "opens_in_openslide": str(stem.with_suffix(".tif")),
            "width": self.slide.width, "height": self.slide.height, "levels": [list(l) for l in levels],
            "pixel_size_um": self.slide.pixel_size_um, "tiles": len(rows), "fused": len(rows) - missing,
            "unanswered": len(unanswered), "failed": len(failed), "flagged_rescan": flagged,
            "wall_s": round(wall, 3), "mp_per_s": round(answered_px / 1e6 / max(wall, 1e-9), 3),
            "writer_cpu_s": round(write_cpu, 3),
            "writer_cpu_s_per_mp": round(write_cpu / max(self.slide.width * self.slide.height / 1e6, 1e-9), 4),
            "place_cpu_s_per_mp": round(self.state.get("place_cpu_s", 0.0) / max(answered_px / 1e6, 1e-9), 4),
            "status": partial,
        }
        if dicom_folder is not None:
            summary.update(dicom=str(dicom_folder), dicom_cpu_s=round(dicom_cpu, 3))
        if broken:
            summary["stream_error"] = broken
        if self.simulator is not None and self.psnr.pixels:
            summary.update(psnr_fused_db=round(self.psnr.psnr("fused"), 2),
                           psnr_sharper_shot_db=round(self.psnr.psnr("sharper"), 2),
                           focal_plane_um=round(self.state["focal_plane_um"], 3))
            if errors:
                summary.update(qc_median_abs_error_um=round(float(np.median(errors)), 3),
                               qc_max_abs_error_um=round(float(np.max(errors)), 3))
            if self.region is not None:
                report.side_by_side(self.out / "side_by_side.png", *self.region[1:])
                summary["side_by_side"] = str(self.out / "side_by_side.png")
        if focus_note:
            summary["focus_map"] = focus_note
        else:
            summary["focus_map"] = str(self.out / "focus_map.png")
        (self.out / "summary.json").write_text(json.dumps(summary, indent=1))
        if missing:
            self.canvas.close()  # keep the work folder: --resume continues from it
        elif not self.keep_work:
            self.canvas.remove()
            shutil.rmtree(self.work, ignore_errors=True)
        return Outcome(summary, unanswered, failed)

    def _limit(self) -> float:
        return self.state.get("focus_range_um", 0.0)


def _dicom_writer():
    try:
        from . import dicom
    except ModuleNotFoundError as exc:
        raise ScanInputError(f"--dicom needs {exc.name}: pip install 'tsva-client[dicom]'") from None
    return dicom


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ModuleNotFoundError:
        return None
    return tqdm(total=total, unit="tile", file=sys.stderr, dynamic_ncols=True)
