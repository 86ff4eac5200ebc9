"""Which slide pixels each tile owns: the nearest tile centre among the tiles covering a pixel
(ties to the earlier row). On a regular grid the seams fall midway in the overlaps, so the fused
tiles' borders, where the network sees least context, are cut away; any arrangement the manifest
allows gets a clean partition, and each tile's share is known before any tile is answered, so tiles
can be placed in whatever order they come back (and a resumed scan places only the missing ones)."""
from __future__ import annotations

import numpy as np

from .manifest import Tile


class Layout:
    def __init__(self, tiles: list[Tile]):
        self.tiles = tiles
        self._cell = max(max(t.width for t in tiles), max(t.height for t in tiles), 1)
        self._grid: dict[tuple[int, int], list[int]] = {}
        for i, t in enumerate(tiles):
            for key in self._cells(t.x, t.y, t.width, t.height):
                self._grid.setdefault(key, []).append(i)

    def _cells(self, x, y, w, h):
        c = self._cell
        for gx in range(x // c, (x + w - 1) // c + 1):
            for gy in range(y // c, (y + h - 1) // c + 1):
                yield gx, gy

    def neighbours(self, index: int) -> list[int]:
        t = self.tiles[index]
        found = set()
        for key in self._cells(t.x, t.y, t.width, t.height):
            found.update(self._grid.get(key, ()))
        found.discard(index)
        return [j for j in sorted(found) if _intersects(t, self.tiles[j])]

    def owned(self, index: int) -> np.ndarray:
        """HxW bool mask of the pixels of tile `index` that it owns."""
        t = self.tiles[index]
        ys = np.arange(t.y, t.y + t.height)[:, None] + 0.5
        xs = np.arange(t.x, t.x + t.width)[None, :] + 0.5
        cx, cy = t.centre
        mine = (xs - cx) ** 2 + (ys - cy) ** 2
        mask = np.ones((t.height, t.width), dtype=bool)
        for j in self.neighbours(index):
            o = self.tiles[j]
            x0, x1 = max(t.x, o.x) - t.x, min(t.x + t.width, o.x + o.width) - t.x
            y0, y1 = max(t.y, o.y) - t.y, min(t.y + t.height, o.y + o.height) - t.y
            ox, oy = o.centre
            theirs = (xs[:, x0:x1] - ox) ** 2 + (ys[y0:y1] - oy) ** 2
            beaten = theirs < mine[y0:y1, x0:x1] if j > index else theirs <= mine[y0:y1, x0:x1]
            mask[y0:y1, x0:x1] &= ~beaten
        return mask


def _intersects(a: Tile, b: Tile) -> bool:
    return a.x < b.x + b.width and b.x < a.x + a.width and a.y < b.y + b.height and b.y < a.y + a.height
