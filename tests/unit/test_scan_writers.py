"""The slide writers: tiles placed by the layout, pyramids written tile by tile, read back with
OpenSlide (the generic tiled TIFF) and tifffile (the OME-TIFF with its SubIFD pyramid)."""
from __future__ import annotations

import numpy as np
import openslide
import pytest
import tifffile
from tsva.client.scan import writers
from tsva.client.scan.canvas import Canvas
from tsva.client.scan.layout import Layout
from tsva.client.scan.manifest import Tile

TILE_W, TILE_H, STEP_X, STEP_Y = 300, 220, 260, 190


def _grid(cols=4, rows=3):
    return [Tile(r * cols + c + 1, f"t{r}{c}", c * STEP_X, r * STEP_Y, TILE_W, TILE_H)
            for r in range(rows) for c in range(cols)]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slide")
    tiles = _grid()
    width, height = max(t.x + t.width for t in tiles), max(t.y + t.height for t in tiles)
    layout = Layout(tiles)
    canvas = Canvas(folder / "work", width, height, 3, create=True)
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (TILE_H, TILE_W, 3), dtype=np.uint8) for _ in tiles]
    expected = np.full((height, width, 3), 255, np.uint8)
    for i in reversed(range(len(tiles))):  # any order: the shares do not depend on it
        mask = layout.owned(i)
        canvas.put(tiles[i].x, tiles[i].y, images[i], mask)
        region = expected[tiles[i].y: tiles[i].y + TILE_H, tiles[i].x: tiles[i].x + TILE_W]
        region[mask] = images[i][mask]
    canvas.build_pyramid(2 * writers.TILE)
    writers.write_ome_tiff(folder / "slide.ome.tif", canvas, 0.25, name="S", description="test; complete")
    writers.write_generic_tiff(folder / "slide.tif", canvas, 0.25, description="test; complete")
    return folder, tiles, layout, expected, canvas.levels


def test_layout_partitions_the_slide_with_seams_midway(written):
    _, tiles, layout, _, _ = written
    width, height = max(t.x + t.width for t in tiles), max(t.y + t.height for t in tiles)
    count = np.zeros((height, width), int)
    for i, t in enumerate(tiles):
        count[t.y: t.y + t.height, t.x: t.x + t.width] += layout.owned(i)
    assert (count == 1).all()  # every pixel owned by exactly one tile
    first = layout.owned(0)
    overlap = TILE_W - STEP_X
    assert first[0, : STEP_X + overlap // 2].all() and not first[0, STEP_X + overlap // 2:].any()


def test_openslide_reads_levels_size_resolution_and_pixels(written):
    folder, tiles, _, expected, levels = written
    slide = openslide.OpenSlide(str(folder / "slide.tif"))
    try:
        assert slide.properties["openslide.vendor"] == "generic-tiff"
        assert slide.level_dimensions == tuple(tuple(level) for level in levels)
        assert len(levels) == 3  # 1040x600 -> 520x300 -> 260x150
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.25)
        assert slide.properties["openslide.level[0].tile-width"] == str(writers.TILE)
        assert slide.properties["openslide.comment"].endswith("complete")
        for t in tiles[::5]:
            region = np.asarray(slide.read_region((t.x, t.y), 0, (TILE_W, TILE_H)).convert("RGB"))
            assert np.array_equal(region, expected[t.y: t.y + TILE_H, t.x: t.x + TILE_W])
    finally:
        slide.close()


def test_ome_tiff_subifd_pyramid_physical_size_and_pixels(written):
    folder, _, _, expected, levels = written
    with tifffile.TiffFile(folder / "slide.ome.tif") as tif:
        assert tif.is_ome
        series = tif.series[0]
        assert [lv.shape[:2][::-1] for lv in series.levels] == [tuple(level) for level in levels]
        page = tif.pages[0]
        assert page.is_tiled and (page.tilewidth, page.tilelength) == (writers.TILE, writers.TILE)
        assert len(page.subifds) == len(levels) - 1
        assert 'PhysicalSizeX="0.25"' in tif.ome_metadata and 'PhysicalSizeXUnit="µm"' in tif.ome_metadata
        assert np.array_equal(series.levels[0].asarray(), expected)
        level1 = series.levels[1].asarray().astype(int)
        manual = expected[0:2 * level1.shape[0]:2, 0:2 * level1.shape[1]:2].astype(int)
        assert np.abs(level1 - manual).mean() < 80  # 2x2 averages of random pixels: near, not equal


def test_unwritten_regions_read_as_white(tmp_path):
    canvas = Canvas(tmp_path, 100, 80, 3, create=True)
    canvas.put(10, 10, np.zeros((20, 30, 3), np.uint8), np.ones((20, 30), bool))
    band = canvas.band(0, 0, 80)
    assert (band[10:30, 10:40] == 0).all() and (band[:10] == 255).all() and (band[:, 50:] == 255).all()
