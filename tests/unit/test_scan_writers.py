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
    writers.write_slides(folder / "slide.ome.tif", folder / "slide.tif", canvas, 0.25, name="S",
                         description="test; complete", codec=writers.codec_for("deflate"), threads=2)
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


def test_both_files_hold_the_same_levels_and_pixels(written):
    """Encoded once: the generic TIFF's levels are the OME-TIFF's, pixel for pixel, compressed bytes too."""
    folder, _, _, _, levels = written
    with tifffile.TiffFile(folder / "slide.ome.tif") as ome, tifffile.TiffFile(folder / "slide.tif") as generic:
        ome_levels, pages = ome.series[0].levels, generic.pages
        assert len(pages) == len(ome_levels) == len(levels)
        for level, page in zip(ome_levels, pages):
            assert np.array_equal(level.asarray(), page.asarray())
            ome.filehandle.seek(level.keyframe.dataoffsets[0])
            generic.filehandle.seek(page.dataoffsets[0])
            assert ome.filehandle.read(page.databytecounts[0]) == generic.filehandle.read(page.databytecounts[0])


@pytest.mark.parametrize("pyramid", ["first", "beside"])
@pytest.mark.parametrize("threads", [1, 3])
def test_threaded_encoder_puts_every_tile_where_it_belongs(tmp_path, monkeypatch, threads, pyramid):
    """Each 256-px tile a different flat colour (its index): any reordering by the threads shows;
    the pyramid built first, or by write_slides beside level 0's encoding (what `tsva scan` does)."""
    from tsva.client.scan import canvas as canvas_module
    monkeypatch.setattr(canvas_module, "PYRAMID_BAND_BYTES", 40_000)  # pyramid bands of 10 rows: many, in threads
    cols, rows = 5, 3
    width, height = cols * writers.TILE - 100, rows * writers.TILE - 30  # partial edge tiles too
    canvas = Canvas(tmp_path / "work", width, height, 3, create=True)
    index = np.arange(rows * cols, dtype=np.uint8).reshape(rows, cols)
    values = np.repeat(np.repeat(index, writers.TILE, 0), writers.TILE, 1)[:height, :width] * 7 + 5
    image = np.stack([values, 255 - values, values // 2], axis=-1).astype(np.uint8)
    canvas.put(0, 0, image, np.ones((height, width), bool))
    codec = writers.codec_for("deflate")
    tiles = list(writers.encoded_tiles(canvas, 0, codec, None, 1))
    assert len(tiles) == rows * cols
    if pyramid == "first":
        canvas.build_pyramid(writers.TILE, threads)
    levels = writers.write_slides(tmp_path / "s.ome.tif", tmp_path / "s.tif", canvas, 0.5, name="order",
                                  description="order", codec=codec, threads=threads,
                                  build_pyramid_to=writers.TILE if pyramid == "beside" else None)
    assert levels == [(1180, 738), (590, 369), (295, 185), (148, 93)]  # halved, rounding up, until <= 256
    with tifffile.TiffFile(tmp_path / "s.ome.tif") as tif:
        assert np.array_equal(tif.series[0].levels[0].asarray(), image)
        assert np.array_equal(tif.series[0].levels[1].asarray(), image[::2, ::2])  # flat 2x2 boxes: exact means
    slide = openslide.OpenSlide(str(tmp_path / "s.tif"))
    try:
        assert np.array_equal(np.asarray(slide.read_region((0, 0), 0, (width, height)).convert("RGB")), image)
    finally:
        slide.close()


@pytest.mark.parametrize("compression", ["zstd", "jpeg", "none"])
def test_other_compressions_read_back_in_openslide_and_tifffile(tmp_path, compression):
    pytest.importorskip("imagecodecs")
    rng = np.random.default_rng(1)
    smooth = np.repeat(np.repeat(rng.integers(0, 256, (10, 15, 3), dtype=np.uint8), 32, 0), 32, 1)  # 320x480
    canvas = Canvas(tmp_path / "work", 480, 320, 3, create=True)
    canvas.put(0, 0, smooth, np.ones((320, 480), bool))
    canvas.build_pyramid(writers.TILE)
    writers.write_slides(tmp_path / "s.ome.tif", tmp_path / "s.tif", canvas, 0.25, name="c", description="c",
                         codec=writers.codec_for(compression, quality=95), threads=2)
    # What tifffile writes when it encodes the same pixels itself: the tiles encoded here must match its tags.
    tifffile.imwrite(tmp_path / "ref.tif", smooth, tile=(writers.TILE, writers.TILE), photometric="rgb",
                     compression=None if compression == "none" else compression,
                     compressionargs={"level": 95} if compression == "jpeg" else None)
    slide = openslide.OpenSlide(str(tmp_path / "s.tif"))
    try:
        region = np.asarray(slide.read_region((0, 0), 0, (480, 320)).convert("RGB")).astype(int)
    finally:
        slide.close()
    with tifffile.TiffFile(tmp_path / "s.ome.tif") as tif:
        level0 = tif.series[0].levels[0].asarray().astype(int)
    assert np.array_equal(level0, tifffile.imread(tmp_path / "ref.tif"))
    # JPEG is lossy (YCbCr 4:2:0: saturated 32-px squares of random colours bleed at their edges)
    tolerance = 3 if compression == "jpeg" else 0
    assert np.abs(region - smooth).mean() <= tolerance and np.abs(level0 - smooth).mean() <= tolerance
    assert np.array_equal(region, level0)  # both files: the same encoded tiles


def test_a_codec_that_needs_imagecodecs_is_refused_up_front(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "imagecodecs", None)  # as in a client install without the scan extra
    assert writers.codec_for("deflate").tiff == "zlib"  # deflate falls back on the standard library
    with pytest.raises(ValueError, match="imagecodecs"):
        writers.codec_for("jpeg")


def assert_writing_fails_with_a_full_disk(tmp_path, canvas, **options):
    """write_slides in a thread of its own: it must end within 10 s with the one OSError raised."""
    import threading
    errors = []

    def write():
        try:
            writers.write_slides(tmp_path / "s.ome.tif", tmp_path / "s.tif", canvas, 0.25, name="f", description="f",
                                 codec=writers.codec_for("deflate"), threads=2, **options)
        except OSError as exc:
            errors.append(exc)

    worker = threading.Thread(target=write)
    worker.start()
    worker.join(10)
    assert not worker.is_alive() and len(errors) == 1 and "No space" in str(errors[0])


@pytest.mark.parametrize("failing", ["write_ome_tiff", "write_generic_tiff"])
def test_either_file_failing_stops_both_writers_with_its_error(tmp_path, monkeypatch, failing):
    """The generic TIFF is written by a second thread from a bounded queue: a failure on either side
    (a full disk) must end the other side too and raise, never leave a thread waiting."""
    canvas = Canvas(tmp_path / "work", 1024, 768, 3, create=True)  # 12 tiles at level 0
    canvas.build_pyramid(writers.TILE)

    def fails_after_two(path, canvas, pixel_size_um, levels, codec, **kwargs):
        tiles = levels[0]
        next(tiles), next(tiles)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writers, failing, fails_after_two)
    assert_writing_fails_with_a_full_disk(tmp_path, canvas)


def test_a_pyramid_failing_beside_level_0_ends_the_writers_with_its_error(tmp_path, monkeypatch):
    """The pyramid is built in its own thread while level 0 is encoded: its failure (a full disk) must
    reach the caller once level 1 is wanted, never leave the writers waiting for a level."""
    canvas = Canvas(tmp_path / "work", 1024, 768, 3, create=True)

    def full_disk(self, level, y, rows):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Canvas, "_reduced", full_disk)
    assert_writing_fails_with_a_full_disk(tmp_path, canvas, build_pyramid_to=writers.TILE)
