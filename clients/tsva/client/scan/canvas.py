"""The slide's pixels on disk while it is scanned: one raw file per pyramid level in the work folder.

Memory stays bounded by bands of rows, never the slide: tiles are written into level 0 where they
land (positioned writes), the lower levels are each built from the level above, band by band (a
few bands at a time, in threads), and the TIFF writers read bands back. Pixels are stored as
255 - value, so the never-written parts of the sparse file (tiles not answered yet) read as white
glass. Because every tile's share of the slide is fixed by the layout, a resumed scan only writes
the tiles still missing.
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image

PYRAMID_BAND_BYTES = 8 << 20  # the rows of one pyramid task: memory bounded for any slide width


def pool_of(threads: int):
    """A pool of `threads` threads, or none (work inline) for one."""
    if threads > 1:
        return concurrent.futures.ThreadPoolExecutor(threads, "tsva-scan")
    return contextlib.nullcontext()


def ordered_map(pool, function: Callable, items: Iterable, ahead: int) -> Iterator:
    """function(item) for each item, in order; with a pool, at most `ahead` items in flight (memory
    stays bounded, the threads stay busy); without one, inline."""
    if pool is None:
        yield from map(function, items)
        return
    pending: collections.deque = collections.deque()
    try:
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:  # the consumer stopped early (an error): drop what is still queued
            future.cancel()


class Canvas:
    def __init__(self, folder: Path, width: int, height: int, channels: int, *, create: bool):
        self.folder, self.width, self.height, self.channels = Path(folder), width, height, channels
        self.folder.mkdir(parents=True, exist_ok=True)
        self.levels: list[tuple[int, int]] = [(width, height)]
        path = self.level_path(0)
        if create or not path.exists():
            with open(path, "wb") as f:
                f.truncate(width * height * channels)  # sparse: reads as zeros (white) until written
        self._fd = os.open(path, os.O_RDWR)

    def level_path(self, level: int) -> Path:
        return self.folder / f"level{level}.raw"

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def put(self, x: int, y: int, tile: np.ndarray, mask: np.ndarray) -> None:
        """Writes the pixels of `tile` (HxWxC uint8) where `mask` is set, at (x, y) of level 0."""
        rows = np.flatnonzero(mask.any(axis=1))
        if not len(rows):
            return
        owned = mask[rows]
        first = owned.argmax(axis=1)  # each row's share runs from its first to its last owned pixel
        last = owned.shape[1] - owned[:, ::-1].argmax(axis=1)
        split = owned.sum(axis=1) != last - first  # a seam crosses the row: keep the pixels not ours
        r0, c0, c1 = int(rows[0]), int(first.min()), int(last.max())
        inverted = np.subtract(255, tile[r0: int(rows[-1]) + 1, c0:c1])  # the share's bounding box only
        row_bytes, channels = self.width * self.channels, self.channels
        offsets = ((y + rows) * row_bytes + (x + first) * channels).tolist()
        for r, a, b, offset, crossed in zip((rows - r0).tolist(), (first - c0).tolist(), (last - c0).tolist(),
                                             offsets, split.tolist()):
            segment = inverted[r, a:b]  # contiguous: written without a copy
            if crossed:
                old = np.frombuffer(os.pread(self._fd, segment.nbytes, offset), np.uint8).reshape(segment.shape)
                segment = np.where(mask[r + r0, a + c0: b + c0, None], segment, old)
            os.pwrite(self._fd, segment, offset)

    def band(self, level: int, y: int, rows: int) -> np.ndarray:
        """Rows [y, y + rows) of `level` (clipped at the bottom) as pixel values."""
        return 255 - self.stored_band(level, y, rows)

    def stored_band(self, level: int, y: int, rows: int) -> np.ndarray:
        """Rows [y, y + rows) of `level` (clipped at the bottom) as stored: 255 - value."""
        width, height = self.levels[level]
        rows = max(0, min(rows, height - y))
        row_bytes = width * self.channels
        with open(self.level_path(level), "rb") as f:
            f.seek(y * row_bytes)
            data = f.read(rows * row_bytes)
        return np.frombuffer(data, np.uint8).reshape(rows, width, self.channels)

    def plan_pyramid(self, smallest: int) -> list[tuple[int, int]]:
        """The levels' sizes (level 0 halved, rounding up, until it fits in `smallest` pixels both
        ways), before any is built: the writers need them all up front."""
        self.levels = self.levels[:1]
        while max(self.levels[-1]) > smallest:
            width, height = self.levels[-1]
            self.levels.append(((width + 1) // 2, (height + 1) // 2))
        return self.levels

    def build_pyramid(self, smallest: int, threads: int = 1,
                      on_level: Callable[[int], None] | None = None) -> list[tuple[int, int]]:
        """Levels 1.. by 2x2 box means, until the level fits in `smallest` pixels both ways; bands of
        rows reduced in `threads` threads (Pillow's reduce releases the GIL), written in order;
        `on_level(level)` once each level's file is complete (so its readers may start)."""
        self.plan_pyramid(smallest)
        with pool_of(threads) as pool:
            for level in range(1, len(self.levels)):
                width, height = self.levels[level - 1]
                rows = max(2, PYRAMID_BAND_BYTES // (width * self.channels) // 2 * 2)  # even: whole boxes
                with open(self.level_path(level), "wb") as out:
                    for data in ordered_map(pool, lambda y: self._reduced(level - 1, y, rows), range(0, height, rows),
                                            ahead=threads + 1):
                        out.write(data)
                if on_level is not None:
                    on_level(level)
        return self.levels

    def _reduced(self, level: int, y: int, rows: int) -> bytes:
        """Rows [y, y + rows) of `level` halved both ways, as stored. Pillow's reduce works on the
        stored values in integer arithmetic (a mean of 255 - v is 255 - the mean of v) and averages
        the partial boxes of odd edges over the pixels they hold."""
        band = self.stored_band(level, y, rows)
        return Image.fromarray(band if self.channels > 1 else band[..., 0]).reduce(2).tobytes()

    def remove(self) -> None:
        self.close()
        for level in range(len(self.levels) + 8):
            self.level_path(level).unlink(missing_ok=True)
