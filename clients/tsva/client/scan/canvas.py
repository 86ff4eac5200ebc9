"""The slide's pixels on disk while it is scanned: one raw file per pyramid level in the work folder.

Memory stays bounded by a band of rows, never the slide: tiles are written into level 0 where they
land (positioned writes), the lower levels are each built from the level above, band by band, and
the TIFF writers read bands back. Pixels are stored as 255 - value, so the never-written parts of
the sparse file (tiles not answered yet) read as white glass. Because every tile's share of the
slide is fixed by the layout, a resumed scan only writes the tiles still missing.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

BAND_ROWS = 256  # rows per band when building levels


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
        inverted = 255 - tile
        row_bytes = self.width * self.channels
        for r in rows:
            cols = np.flatnonzero(mask[r])
            c0, c1 = int(cols[0]), int(cols[-1]) + 1
            offset = (y + int(r)) * row_bytes + (x + c0) * self.channels
            segment = inverted[r, c0:c1]
            if c1 - c0 != len(cols):  # a seam crosses this row: keep the pixels that are not ours
                old = np.frombuffer(os.pread(self._fd, segment.nbytes, offset), np.uint8).reshape(segment.shape)
                segment = np.where(mask[r, c0:c1, None], segment, old)
            os.pwrite(self._fd, np.ascontiguousarray(segment).tobytes(), offset)

    def band(self, level: int, y: int, rows: int) -> np.ndarray:
        """Rows [y, y + rows) of `level` (clipped at the bottom) as pixel values."""
        width, height = self.levels[level]
        rows = max(0, min(rows, height - y))
        row_bytes = width * self.channels
        with open(self.level_path(level), "rb") as f:
            f.seek(y * row_bytes)
            data = f.read(rows * row_bytes)
        return 255 - np.frombuffer(data, np.uint8).reshape(rows, width, self.channels)

    def build_pyramid(self, smallest: int) -> list[tuple[int, int]]:
        """Levels 1.. by 2x2 averaging, until the level fits in `smallest` pixels both ways."""
        self.levels = self.levels[:1]
        while max(self.levels[-1]) > smallest:
            level = len(self.levels)
            width, height = self.levels[-1]
            new_w, new_h = (width + 1) // 2, (height + 1) // 2
            with open(self.level_path(level), "wb") as out:
                for y in range(0, height, 2 * BAND_ROWS):
                    band = self.band(level - 1, y, 2 * BAND_ROWS).astype(np.uint16)
                    if band.shape[0] % 2:
                        band = np.concatenate([band, band[-1:]])
                    if band.shape[1] % 2:
                        band = np.concatenate([band, band[:, -1:]], axis=1)
                    half = (band[0::2, 0::2] + band[1::2, 0::2] + band[0::2, 1::2] + band[1::2, 1::2] + 2) // 4
                    out.write((255 - half.astype(np.uint8)).tobytes())
            self.levels.append((new_w, new_h))
        return self.levels

    def remove(self) -> None:
        self.close()
        for level in range(len(self.levels) + 8):
            self.level_path(level).unlink(missing_ok=True)
