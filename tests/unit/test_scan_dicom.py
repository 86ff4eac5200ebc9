"""`tsva scan --dicom`: the DICOM WSI series written from the slide's OME-TIFF, read back with
wsidicom, pydicom and OpenSlide (which reads DICOM WSI too): levels, tile size, dimensions, pixel
spacing, the header, and pixels equal to the TIFF's (exactly: JPEG tiles are the TIFF's own bytes,
the others JPEG 2000 lossless); without the extra, one line naming it, exit 2, before any call."""
from __future__ import annotations

import sys

import numpy as np
import openslide
import pytest
import tifffile
from PIL import Image

pytest.importorskip("wsidicom")
import pydicom  # noqa: E402
from pydicom.encaps import generate_frames  # noqa: E402
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, VLWholeSlideMicroscopyImageStorage  # noqa: E402
from tsva.client.scan import dicom, writers  # noqa: E402
from tsva.client.scan.canvas import Canvas  # noqa: E402
from wsidicom import WsiDicom  # noqa: E402

WIDTH, HEIGHT, PIXEL_UM = 1040, 600, 0.25  # three levels: 1040x600, 520x300, 260x150
DESCRIPTION = "TSVA two-shot scan of manifest.csv; complete"


def _slide(folder, compression):
    """A slide written by the scan's writers: smooth random colour (compresses like tissue)."""
    canvas = Canvas(folder / f"work-{compression}", WIDTH, HEIGHT, 3, create=True)
    rng = np.random.default_rng(5)
    small = rng.integers(0, 256, (HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(small).resize((WIDTH, HEIGHT), Image.BICUBIC))
    canvas.put(0, 0, image, np.ones((HEIGHT, WIDTH), bool))
    canvas.build_pyramid(2 * writers.TILE)
    path = folder / f"slide-{compression}.ome.tif"
    writers.write_slides(path, folder / f"slide-{compression}.tif", canvas, PIXEL_UM, name="S-17",
                         description=DESCRIPTION, codec=writers.codec_for(compression, 90), threads=2)
    canvas.remove()
    return path


@pytest.fixture(scope="module", params=["jpeg", "deflate"])
def series(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"dicom-{request.param}")
    path = _slide(folder, request.param)
    header = dicom.SlideHeader("S-17", PIXEL_UM, DESCRIPTION)
    files = dicom.write_series(path, folder / "dicom", header, threads=2)
    return request.param, path, folder / "dicom", files


def _datasets(files):
    """The series' instances, largest level first."""
    return sorted((pydicom.dcmread(f) for f in files), key=lambda ds: -ds.TotalPixelMatrixColumns)


def test_one_instance_per_level_with_size_tiles_and_pixel_spacing(series):
    _, path, folder, files = series
    with tifffile.TiffFile(path) as tif:
        levels = [(level.shape[1], level.shape[0]) for level in tif.series[0].levels]
    assert len(levels) == 3 and sorted(p.name for p in folder.iterdir()) == sorted(f.name for f in files)
    with WsiDicom.open(folder) as wsi:
        assert [(lv.size.width, lv.size.height) for lv in wsi.levels] == levels
        assert (wsi.tile_size.width, wsi.tile_size.height) == (writers.TILE, writers.TILE)
        for index, level in enumerate(wsi.levels):  # mm per pixel, 2x per level as in the TIFFs
            assert float(level.pixel_spacing.width) == pytest.approx(PIXEL_UM / 1000 * 2 ** index)
            assert float(level.pixel_spacing.height) == pytest.approx(PIXEL_UM / 1000 * 2 ** index)


def test_pixels_equal_the_tiffs_at_every_level(series):
    compression, path, folder, _ = series
    with tifffile.TiffFile(path) as tif, WsiDicom.open(folder) as wsi:
        for index, level in enumerate(tif.series[0].levels):
            expected = level.asarray()
            # Exact for both: JPEG frames are the TIFF's bytes (both decoded by libjpeg-turbo), the
            # lossless tiles JPEG 2000 lossless.
            whole = np.asarray(wsi.read_region((0, 0), index, (expected.shape[1], expected.shape[0])).convert("RGB"))
            assert np.array_equal(whole, expected), (compression, index)
            x, y = 300 >> index, 170 >> index  # a region across tile borders
            region = np.asarray(wsi.read_region((x, y), index, (200 >> index, 150 >> index)).convert("RGB"))
            assert np.array_equal(region, expected[y: y + (150 >> index), x: x + (200 >> index)])


def test_the_header_names_the_slide_and_says_it_is_virtually_autofocused(series):
    compression, _, _, files = series
    datasets = _datasets(files)
    for index, ds in enumerate(datasets):
        assert ds.SOPClassUID == VLWholeSlideMicroscopyImageStorage
        assert ds.ContainerIdentifier == "S-17"
        assert ds.SpecimenDescriptionSequence[0].SpecimenIdentifier == "S-17"
        assert ds.SeriesDescription == dicom.SERIES_DESCRIPTION
        assert "virtually autofocused" in ds.PyramidDescription and ds.ImageComments == DESCRIPTION
        assert ds.FocusMethod == "AUTO"
        assert list(ds.ImageType) == (["ORIGINAL", "PRIMARY", "VOLUME", "NONE"] if index == 0 else
                                      ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"])
        pixel_spacing = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        assert [float(v) for v in pixel_spacing] == pytest.approx([PIXEL_UM / 1000 * 2 ** index] * 2)
        if compression == "jpeg":
            assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit and ds.PhotometricInterpretation == "YBR_FULL_422"
            assert ds.LossyImageCompression == "01" and ds.LossyImageCompressionMethod == "ISO_10918_1"
        else:
            assert ds.file_meta.TransferSyntaxUID == JPEG2000Lossless and ds.PhotometricInterpretation == "YBR_RCT"
            assert ds.LossyImageCompression == "00"
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PyramidUID"):
        assert len({ds[key].value for ds in datasets}) == 1  # one series, one pyramid
    assert len({ds.SOPInstanceUID for ds in datasets}) == len(datasets)


@pytest.mark.parametrize("series", ["jpeg"], indirect=True)  # only JPEG tiles can be copied
def test_jpeg_tiles_are_copied_not_reencoded(series):
    _, path, _, files = series
    with tifffile.TiffFile(path) as tif:
        for ds, level in zip(_datasets(files), tif.series[0].levels):
            page = level.keyframe
            frames = list(generate_frames(ds.PixelData, number_of_frames=ds.NumberOfFrames))
            assert len(frames) == len(page.dataoffsets)
            for frame, offset, count in zip(frames, page.dataoffsets, page.databytecounts):
                tif.filehandle.seek(offset)
                stored = tif.filehandle.read(count)
                assert frame in (stored, stored + b"\0")  # DICOM pads fragments to an even length


def test_openslide_reads_the_series(series):
    _, path, _, files = series
    with tifffile.TiffFile(path) as tif:
        levels = tif.series[0].levels
        slide = openslide.OpenSlide(str(files[0]))  # any instance of the series opens the whole
        try:
            assert slide.properties["openslide.vendor"] == "dicom"
            assert slide.level_dimensions == tuple((lv.shape[1], lv.shape[0]) for lv in levels)
            assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(PIXEL_UM)
            region = np.asarray(slide.read_region((260, 190), 0, (300, 220)).convert("RGB"))
            assert np.array_equal(region, levels[0].asarray()[190: 410, 260: 560])
        finally:
            slide.close()


@pytest.mark.parametrize("compression", ["jpeg", "zstd"])
def test_grey_slide_is_monochrome_with_the_tiffs_pixels(tmp_path, compression):
    canvas = Canvas(tmp_path / "work", 700, 500, 1, create=True)
    image = (np.add.outer(np.arange(500), np.arange(700)) % 256).astype(np.uint8)[..., None]
    canvas.put(0, 0, image, np.ones((500, 700), bool))
    canvas.build_pyramid(2 * writers.TILE)
    writers.write_slides(tmp_path / "g.ome.tif", tmp_path / "g.tif", canvas, 0.5, name="g", description="g",
                         codec=writers.codec_for(compression, 90, 1), threads=1)
    files = dicom.write_series(tmp_path / "g.ome.tif", tmp_path / "dicom", dicom.SlideHeader("grey\\7", 0.5, "g"))
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    assert ds.ContainerIdentifier == "grey/7"  # a backslash would split the value in two
    with tifffile.TiffFile(tmp_path / "g.ome.tif") as tif, WsiDicom.open(tmp_path / "dicom") as wsi:
        for index, level in enumerate(tif.series[0].levels):
            expected = level.asarray()
            region = np.asarray(wsi.read_region((0, 0), index, (expected.shape[1], expected.shape[0])))
            assert np.array_equal(region.squeeze(), expected.squeeze())


def test_writing_again_replaces_the_earlier_series(tmp_path):
    path = _slide(tmp_path, "jpeg")
    header = dicom.SlideHeader("S-17", PIXEL_UM, "partial: 1 of 2 tiles not fused (see qc.csv)", partial=True)
    first = dicom.write_series(path, tmp_path / "dicom", header)
    again = dicom.write_series(path, tmp_path / "dicom", header, threads=2)  # as --resume does
    assert sorted(p.name for p in (tmp_path / "dicom").iterdir()) == sorted(f.name for f in again)
    assert not {f.name for f in first} & {f.name for f in again}  # new instances, the old ones gone
    ds = pydicom.dcmread(again[0], stop_before_pixels=True)
    assert ds.SeriesDescription.endswith("(partial)") and "(partial)" in ds.PyramidDescription


def test_dicom_without_the_extra_is_refused_before_any_call(tmp_path, capsys, monkeypatch):
    from tsva.client import scan as scan_package
    from tsva.common import cli
    for name in ("a", "b"):
        Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(tmp_path / f"{name}.png")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("tile_id,x,y,shot_a,shot_b,defocus_a_um,defocus_b_um\nt0,0,0,a.png,b.png,-1,1\n")
    monkeypatch.setitem(sys.modules, "wsidicom", None)  # as in a client install without the dicom extra
    monkeypatch.delitem(sys.modules, "tsva.client.scan.dicom", raising=False)
    monkeypatch.delattr(scan_package, "dicom", raising=False)
    status = cli.main(["scan", str(manifest), "-o", str(tmp_path / "o"), "--dicom",
                       "--server", "127.0.0.1:9"])  # nothing listens there: refused before connecting
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "tsva-client[dicom]" in err and "wsidicom" in err
