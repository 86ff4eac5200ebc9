"""`tsva scan --dicom` end to end: the verb as a process against a real gateway process over gRPC on
loopback; the DICOM WSI series it writes beside the TIFFs opens in wsidicom and OpenSlide with the
slide's levels, pixel spacing and pixels (equal to the OpenSlide TIFF's: the JPEG tiles copied)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import openslide
import pytest
from PIL import Image

from tests.support.tiles import defocused_pair

pytest.importorskip("wsidicom")
import pydicom  # noqa: E402
from wsidicom import WsiDicom  # noqa: E402

pytestmark = pytest.mark.slow


def _manifest(folder, cols=3, rows=2, size=(192, 160), overlap=32):
    """A grid of shot pairs cut from one H&E-like scene."""
    w, h = size
    width, height = cols * (w - overlap) + overlap, rows * (h - overlap) + overlap
    sharp, blurred = defocused_pair(height, width)
    lines = ["tile_id,x,y,shot_a,shot_b,defocus_a_um,defocus_b_um\n"]
    for r in range(rows):
        for c in range(cols):
            x, y, tid = c * (w - overlap), r * (h - overlap), f"r{r}c{c}"
            Image.fromarray(blurred[y: y + h, x: x + w]).save(folder / f"{tid}_a.png")
            Image.fromarray(sharp[y: y + h, x: x + w]).save(folder / f"{tid}_b.png")
            lines.append(f"{tid},{x},{y},{tid}_a.png,{tid}_b.png,-1,1\n")
    (folder / "manifest.csv").write_text("".join(lines))
    return folder / "manifest.csv", (width, height)


def test_scan_with_dicom_writes_a_series_that_opens_like_the_slide(gateway, tmp_path):
    manifest, (width, height) = _manifest(tmp_path)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "tsva.common.cli", "scan", str(manifest), "-o", str(out),
                           "--server", gateway.address, "--compression", "jpeg", "--dicom", "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dicom"] == str(out / "dicom") and "DICOM" in done.stdout
    files = sorted((out / "dicom").glob("*.dcm"))
    tiff = openslide.OpenSlide(str(out / "slide.tif"))
    series = openslide.OpenSlide(str(files[0]))
    try:
        assert len(files) == len(summary["levels"]) == tiff.level_count
        assert series.properties["openslide.vendor"] == "dicom"
        assert series.level_dimensions == tiff.level_dimensions and series.level_dimensions[0] == (width, height)
        assert float(series.properties["openslide.mpp-x"]) == pytest.approx(float(tiff.properties["openslide.mpp-x"]))
        for level, (w, h) in enumerate(tiff.level_dimensions):
            expected = np.asarray(tiff.read_region((0, 0), level, (w, h)).convert("RGB"))
            assert np.array_equal(np.asarray(series.read_region((0, 0), level, (w, h)).convert("RGB")), expected)
    finally:
        tiff.close()
        series.close()
    with WsiDicom.open(out / "dicom") as wsi:
        assert (wsi.size.width, wsi.size.height) == (width, height)
        assert float(wsi.pixel_spacing.width) == pytest.approx(summary["pixel_size_um"] / 1000)
    header = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert header.ContainerIdentifier == "manifest"  # the slide id: the manifest's name when it has none
    assert header.SeriesDescription.startswith("Virtually autofocused") and header.ImageComments.endswith("complete")
