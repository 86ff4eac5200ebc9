"""Pyramidal tiled TIFFs from the canvas, written tile by tile (tifffile takes an iterator of tiles):

- OME-TIFF (`.ome.tif`): level 0 with the lower levels as SubIFDs, the physical pixel size in the
  OME-XML and the resolution tags: QuPath and Bio-Formats read it.
- a generic tiled TIFF (`.tif`): the levels as successive tiled pages: OpenSlide reads it (it does
  not read OME SubIFD pyramids).

Both hold the same pixels, encoded once: the tiles are compressed in a pool of threads (the codecs
release the GIL), in order, a bounded number ahead, and each encoded tile goes into both files (same
levels, tile size and order): the OME-TIFF written in the calling thread, the generic TIFF in a
second one fed through a bounded queue.
Deflate (lossless) needs nothing more (libdeflate from imagecodecs when installed: 2.4x zlib's
speed at the same size); zstd (lossless, 4x cheaper again) and JPEG need imagecodecs.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import os
import queue
import threading
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .canvas import Canvas, ordered_map, pool_of

TILE = 256
COMPRESSIONS = ("deflate", "zstd", "jpeg", "none")
DEFLATE_LEVEL = 1  # files ~3 % larger than level 6 for a third less CPU (libdeflate)
ZSTD_LEVEL = 1  # the size of deflate's level 1 at a quarter of its CPU
AHEAD_PER_THREAD = 8  # tiles encoded ahead of the writer per thread: bounds memory, keeps threads busy


@dataclass(frozen=True)
class Codec:
    """A compression: tifffile's name for its TIFF tag and the encoder of one tile (HxWxC uint8)."""
    name: str
    tiff: str | None
    encode: Callable[[np.ndarray], bytes]


def codec_for(compression: str, quality: int = 90, channels: int = 3) -> Codec:
    """The codec for `compression`; ValueError (before any scanning) when imagecodecs is needed and missing."""
    try:
        import imagecodecs
    except ModuleNotFoundError:
        imagecodecs = None
    if compression == "none":
        return Codec(compression, None, lambda tile: tile.tobytes())
    if compression == "deflate":  # TIFF's Adobe deflate is a zlib stream
        if imagecodecs is not None and imagecodecs.DEFLATE.available:
            return Codec(compression, "zlib", partial(imagecodecs.deflate_encode, level=DEFLATE_LEVEL))
        return Codec(compression, "zlib", lambda tile: zlib.compress(tile, DEFLATE_LEVEL))
    if compression not in COMPRESSIONS:
        raise ValueError(f"--compression: {compression!r} is not one of {', '.join(COMPRESSIONS)}")
    if imagecodecs is None:
        raise ValueError(f"--compression {compression} needs imagecodecs: pip install 'tsva-client[scan]', "
                         "or --compression deflate (lossless, nothing more to install)")
    if compression == "zstd":
        return Codec(compression, "zstd", partial(imagecodecs.zstd_encode, level=ZSTD_LEVEL))
    if channels == 3:
        # What tifffile writes for JPEG RGB, so the tags it sets describe these bytes: YCbCr 4:2:0.
        return Codec(compression, "jpeg", partial(imagecodecs.jpeg8_encode, level=quality, colorspace="RGB",
                                                  outcolorspace="YCBCR", subsampling=(2, 2)))
    return Codec(compression, "jpeg", partial(imagecodecs.jpeg8_encode, level=quality))


def _stored_tiles(canvas: Canvas, level: int, ready: concurrent.futures.Future | None = None) -> Iterator[np.ndarray]:
    """The level's tiles in TIFF order (rows of tiles, top down) as stored (255 - value): views into
    one band of rows at a time; the edge tiles are cut short (padded when encoded). With `ready`,
    the level is read once it is built (its failure raised here)."""
    if ready is not None:
        ready.result()
    width, height = canvas.levels[level]
    for y in range(0, height, TILE):
        band = canvas.stored_band(level, y, TILE)
        for x in range(0, width, TILE):
            yield band[:, x: x + TILE]


def _encode_stored(stored: np.ndarray, encode: Callable[[np.ndarray], bytes], channels: int) -> bytes:
    """One tile: the stored values turned back into pixel values, edge tiles padded with white, encoded."""
    h, w = stored.shape[:2]
    tile = np.empty((TILE, TILE, channels), np.uint8)
    np.subtract(255, stored, out=tile[:h, :w])
    tile[h:] = 255
    tile[:h, w:] = 255
    return encode(tile if channels > 1 else tile[..., 0])


def encoded_tiles(canvas: Canvas, level: int, codec: Codec, pool, ahead: int,
                  ready: concurrent.futures.Future | None = None) -> Iterator[bytes]:
    """The level's tiles, encoded, in order; with a pool at most `ahead` tiles are in flight."""
    encode = partial(_encode_stored, encode=codec.encode, channels=canvas.channels)
    return ordered_map(pool, encode, _stored_tiles(canvas, level, ready), ahead)


@contextlib.contextmanager
def pyramid_beside(canvas: Canvas, smallest: int | None, threads: int) -> Iterator[list]:
    """Builds the canvas's pyramid down to `smallest` in a thread of its own, so that it runs while
    level 0 (which needs none of it) is encoded; yields one future per level, done once the level is
    built (a failure: every level not built yet raises it). None: the pyramid is already built."""
    if smallest is None:
        yield [None] * len(canvas.levels)
        return
    canvas.plan_pyramid(smallest)
    ready = [concurrent.futures.Future() for _ in canvas.levels]
    ready[0].set_result(None)

    def build() -> None:
        try:
            canvas.build_pyramid(smallest, threads, on_level=lambda level: ready[level].set_result(None))
        except BaseException as error:
            for future in ready:
                if not future.done():
                    future.set_exception(error)

    builder = threading.Thread(target=build, name="tsva-pyramid")
    builder.start()
    try:
        yield ready
    finally:
        builder.join()


def _options(canvas: Canvas, codec: Codec) -> dict:
    # The encoded bytes must agree with what tifffile would do for these options (photometric,
    # compression; for JPEG RGB its YCbCr 4:2:0 tags): it writes them as they are.
    return dict(tile=(TILE, TILE), photometric="rgb" if canvas.channels == 3 else "minisblack",
                compression=codec.tiff, resolutionunit="CENTIMETER", dtype=np.uint8)


def _shape(canvas: Canvas, level: int) -> tuple[int, ...]:
    width, height = canvas.levels[level]
    return (height, width, canvas.channels) if canvas.channels > 1 else (height, width)


def _resolution(pixel_size_um: float, level: int) -> tuple[float, float]:
    px_cm = 1e4 / (pixel_size_um * 2 ** level)
    return px_cm, px_cm


def write_ome_tiff(path: Path, canvas: Canvas, pixel_size_um: float, levels: list[Iterator[bytes]], codec: Codec,
                   *, name: str, description: str) -> None:
    """The OME-TIFF from the levels' encoded tiles (one iterator per level, in order)."""
    import tifffile

    metadata = {"axes": "YXS" if canvas.channels > 1 else "YX", "Name": name, "Description": description,
                "PhysicalSizeX": pixel_size_um, "PhysicalSizeXUnit": "µm",
                "PhysicalSizeY": pixel_size_um, "PhysicalSizeYUnit": "µm"}
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tif:
        for level, tiles in enumerate(levels):
            extra = dict(subifds=len(canvas.levels) - 1, metadata=metadata) if level == 0 else \
                dict(subfiletype=1, metadata=None)
            tif.write(tiles, shape=_shape(canvas, level), resolution=_resolution(pixel_size_um, level),
                      **_options(canvas, codec), **extra)


def write_generic_tiff(path: Path, canvas: Canvas, pixel_size_um: float, levels: list[Iterator[bytes]],
                       codec: Codec, *, description: str) -> None:
    """The generic tiled TIFF (levels as pages) from the levels' encoded tiles."""
    import tifffile

    with tifffile.TiffWriter(path, bigtiff=True, ome=False) as tif:
        for level, tiles in enumerate(levels):
            tif.write(tiles, shape=_shape(canvas, level), resolution=_resolution(pixel_size_um, level),
                      description=description if level == 0 else None, subfiletype=0 if level == 0 else 1,
                      metadata=None, **_options(canvas, codec))


def cpus() -> int:
    """The CPUs this process may run on (its affinity where the platform says)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def write_slides(ome_path: Path, generic_path: Path, canvas: Canvas, pixel_size_um: float, *, name: str,
                 description: str, codec: Codec, threads: int | None = None,
                 build_pyramid_to: int | None = None) -> list[tuple[int, int]]:
    """Both slides from the canvas: each tile encoded once, in `threads` threads (default: the CPUs
    this process may use), and written into the OME-TIFF here and into the generic TIFF by a second
    thread, handed over through a bounded queue. `build_pyramid_to` (a size): the pyramid is built
    here, beside level 0's encoding; None: it is built already. Returns the levels' sizes."""
    threads = threads or cpus()
    handoff: queue.Queue = queue.Queue(maxsize=AHEAD_PER_THREAD * threads)
    failed = threading.Event()

    def forked(tiles: Iterator[bytes]) -> Iterator[bytes]:
        for tile in tiles:
            while True:
                if generic.done():  # its writer failed (it ends only after the last tile): its error, here
                    generic.result()
                    raise RuntimeError("the generic TIFF's writer stopped early")
                try:
                    handoff.put(tile, timeout=0.1)
                    break
                except queue.Full:
                    pass
            yield tile

    def taken(count: int) -> Iterator[bytes]:
        for _ in range(count):
            while True:
                try:
                    yield handoff.get(timeout=0.1)
                    break
                except queue.Empty:
                    if failed.is_set():  # the OME-TIFF's writer failed: stop waiting
                        raise RuntimeError("the OME-TIFF's writer stopped early") from None

    with pyramid_beside(canvas, build_pyramid_to, threads) as ready, pool_of(threads) as pool, \
            concurrent.futures.ThreadPoolExecutor(1, "tsva-generic-tiff") as second:
        counts = [-(-height // TILE) * -(-width // TILE) for width, height in canvas.levels]
        generic = second.submit(write_generic_tiff, generic_path, canvas, pixel_size_um,
                                [taken(count) for count in counts], codec, description=description)
        levels = [forked(encoded_tiles(canvas, level, codec, pool, AHEAD_PER_THREAD * threads, ready[level]))
                  for level in range(len(canvas.levels))]
        try:
            write_ome_tiff(ome_path, canvas, pixel_size_um, levels, codec, name=name, description=description)
        except BaseException:
            failed.set()
            raise
        generic.result()
    return canvas.levels
