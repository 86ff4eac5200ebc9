"""`tsva scan` end to end: the verb as a process against a real gateway process over gRPC on
loopback (the tiny pointwise model of conftest, so a scan takes seconds)."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import openslide
import pytest
import tifffile
from PIL import Image
from scipy import ndimage
from tsva.client.sdk import Client

from tests.support.gateway import start_gateway
from tests.support.metrics import read_metrics

HEADER = "tile_id,x,y,shot_a,shot_b,defocus_a_um,defocus_b_um\n"
pytestmark = pytest.mark.slow


def _manifest(folder, cols, rows, size, overlap, seed=0):
    """A grid of tiles cut from one smooth random specimen; shot A blurred more than shot B."""
    w, h = size
    width, height = cols * (w - overlap) + overlap, rows * (h - overlap) + overlap
    rng = np.random.default_rng(seed)
    specimen = ndimage.gaussian_filter(rng.random((height, width, 3)), (2, 2, 0))
    specimen = (255 * (specimen - specimen.min()) / np.ptp(specimen)).astype(np.uint8)
    lines = []
    for r in range(rows):
        for c in range(cols):
            x, y = c * (w - overlap), r * (h - overlap)
            crop = specimen[y: y + h, x: x + w]
            tid = f"r{r}c{c}"
            Image.fromarray(ndimage.gaussian_filter(crop, (1.5, 1.5, 0))).save(folder / f"{tid}_a.png")
            Image.fromarray(ndimage.gaussian_filter(crop, (0.7, 0.7, 0))).save(folder / f"{tid}_b.png")
            lines.append(f"{tid},{x},{y},{tid}_a.png,{tid}_b.png,-1,1\n")
    path = folder / "manifest.csv"
    path.write_text(HEADER + "".join(lines))
    return path


def _scan(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "tsva.common.cli", "scan", *map(str, args), "--no-progress"],
                          capture_output=True, text=True, timeout=300, **kwargs)


def _check_tiles_match_fused(address, folder, out, tile_ids):
    """The slide's pixels inside a tile's centre equal the server's fused tile."""
    rows = {line.split(",")[0]: line.split(",") for line in (folder / "manifest.csv").read_text().splitlines()[1:]}
    slide = openslide.OpenSlide(str(out / "slide.tif"))
    try:
        with Client(address) as client:
            for tid in tile_ids:
                _, x, y, a, b, da, db = rows[tid]
                fused = client.fuse(str(folder / a), str(folder / b), defocus_a_um=float(da),
                                    defocus_b_um=float(db)).image
                h, w = fused.shape[:2]
                cx, cy, m = int(x) + w // 4, int(y) + h // 4, 8  # inside the tile's own share
                region = np.asarray(slide.read_region((cx, cy), 0, (w // 2 - m, h // 2 - m)).convert("RGB"))
                assert np.array_equal(region, fused[h // 4: h // 4 + h // 2 - m, w // 4: w // 4 + w // 2 - m])
    finally:
        slide.close()


def test_manifest_scan_writes_the_fused_tiles_and_qc(gateway, tmp_path):
    manifest = _manifest(tmp_path, 3, 2, (192, 160), 32)
    out = tmp_path / "out"
    done = _scan(manifest, "-o", out, "--server", gateway.address, "--window", 3, "--compression", "deflate")
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["width"], summary["height"], summary["tiles"], summary["fused"]) == (512, 288, 6, 6)
    assert summary["status"] == "complete" and "slide.ome.tif" in done.stdout
    qc = (out / "qc.csv").read_text().splitlines()
    assert qc[0].startswith("tile_id,x,y,status,focus_offset_um,rescan")
    assert len(qc) == 7 and all(",ok," in line for line in qc[1:])
    assert not (out / "work").exists()  # a complete scan leaves no work files
    _check_tiles_match_fused(gateway.address, tmp_path, out, ["r0c0", "r1c2"])
    with tifffile.TiffFile(out / "slide.ome.tif") as tif:
        assert tif.series[0].levels[0].shape == (288, 512, 3)
    samples = read_metrics(gateway.metrics_url)
    assert ("tsva_rescan_tiles_total", ()) in samples


def test_server_dying_mid_scan_leaves_a_partial_slide_and_resume_finishes_it(tmp_path):
    manifest = _manifest(tmp_path, 8, 6, (256, 256), 32, seed=1)
    out = tmp_path / "out"
    with start_gateway(None, patch_size=64, patch_overlap=16, max_batch=4) as gw:
        scan = subprocess.Popen([sys.executable, "-m", "tsva.common.cli", "scan", str(manifest), "-o", str(out),
                                 "--server", gw.address, "--window", "1", "--compression", "deflate", "--no-progress"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and scan.poll() is None:
            ok = read_metrics(gw.metrics_url).get(("tsva_tiles_total", (("outcome", "ok"),)), 0)
            if ok >= 3:
                break
            time.sleep(0.02)
        gw.process.kill()  # the server dies mid-scan
        stdout, stderr = scan.communicate(timeout=120)
    assert scan.returncode == 1, stderr
    unanswered = (out / "unanswered.txt").read_text().split()
    assert 0 < len(unanswered) < 48
    assert "not fused" in stderr and unanswered[0] in stderr and "--resume" in stderr
    slide = openslide.OpenSlide(str(out / "slide.tif"))
    assert "partial" in slide.properties["openslide.comment"]
    slide.close()
    with tifffile.TiffFile(out / "slide.ome.tif") as tif:
        assert "(partial)" in tif.ome_metadata
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unanswered"] + summary["failed"] == len(unanswered) and summary["status"].startswith("partial")
    # A fresh scan into the same folder is refused; --resume sends only the missing tiles.
    again = _scan(manifest, "-o", out, "--server", "127.0.0.1:9")
    assert again.returncode == 2 and "--resume" in again.stderr
    with start_gateway(None, patch_size=64, patch_overlap=16, max_batch=4) as gw:
        resumed = _scan(manifest, "-o", out, "--server", gw.address, "--resume", "--compression", "deflate")
        assert resumed.returncode == 0, resumed.stderr
        sent = read_metrics(gw.metrics_url).get(("tsva_tiles_total", (("outcome", "ok"),)), 0)
        assert sent == len(unanswered)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["status"] == "complete" and summary["fused"] == 48
        assert (out / "unanswered.txt").read_text() == ""
        _check_tiles_match_fused(gw.address, tmp_path, out, ["r0c0", unanswered[-1]])


def test_simulated_scan_end_to_end(gateway, tmp_path):
    pytest.importorskip("tsva.export.optics")
    from importlib.resources import files
    # An H&E field at 0.5 um/px shipped with the training side (tsva/export/data/he, MIT).
    source = files("tsva.export") / "data" / "he" / "torchstain_target.png"
    image = np.asarray(Image.open(source).convert("RGB"))
    h, w = image.shape[:2]
    Image.fromarray(image[h // 2 - 60: h // 2 + 60, w // 2 - 60: w // 2 + 60]).save(tmp_path / "he_0.5um.png")
    out = tmp_path / "out"
    done = _scan("--simulate", tmp_path / "he_0.5um.png", "-o", out, "--server", gateway.address,
                 "--tile-size", "128x128", "--overlap", "16", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["width"], summary["height"], summary["tiles"], summary["fused"]) == (240, 240, 4, 4)
    assert summary["psnr_fused_db"] > 20 and summary["psnr_sharper_shot_db"] > 20
    assert "qc_median_abs_error_um" in summary
    for name in ("side_by_side.png", "focus_map.png", "slide.ome.tif", "slide.tif"):
        assert (out / name).stat().st_size > 0
    with tifffile.TiffFile(out / "slide.ome.tif") as ome, tifffile.TiffFile(out / "slide.tif") as generic:
        # The default compression is JPEG (what scanners write), the same in both files.
        assert ome.pages[0].compression == generic.pages[0].compression == tifffile.COMPRESSION.JPEG
    qc = (out / "qc.csv").read_text().splitlines()
    assert all(line.split(",")[-1] != "" for line in qc[1:])  # the true n of every tile is recorded


def test_simulate_without_the_training_side_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    from tsva.common import cli
    monkeypatch.setitem(sys.modules, "tsva.export", None)  # as in a client-only install
    status = cli.main(["scan", "--simulate", str(tmp_path / "x.png"), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "tsva-export" in err


def test_zstd_slide_in_threads_holds_the_fused_tiles(gateway, tmp_path):
    pytest.importorskip("imagecodecs")
    manifest = _manifest(tmp_path, 2, 2, (192, 160), 32)
    out = tmp_path / "out"
    done = _scan(manifest, "-o", out, "--server", gateway.address, "--compression", "zstd", "--write-threads", 3)
    assert done.returncode == 0, done.stderr
    _check_tiles_match_fused(gateway.address, tmp_path, out, ["r0c0", "r1c1"])
    with tifffile.TiffFile(out / "slide.ome.tif") as ome, tifffile.TiffFile(out / "slide.tif") as generic:
        assert ome.pages[0].compression == generic.pages[0].compression == tifffile.COMPRESSION.ZSTD
        assert np.array_equal(ome.series[0].levels[0].asarray(), generic.pages[0].asarray())


@pytest.mark.parametrize("flags", [[], ["--compression", "jpeg"]], ids=["default", "jpeg"])
def test_a_compression_without_its_codec_is_refused_before_any_call(tmp_path, capsys, monkeypatch, flags):
    from tsva.common import cli
    manifest = _manifest(tmp_path, 1, 1, (64, 64), 0)
    monkeypatch.setitem(sys.modules, "imagecodecs", None)  # as in a client install without the scan extra
    status = cli.main(["scan", str(manifest), "-o", str(tmp_path / "o"), *flags,
                       "--server", "127.0.0.1:9"])  # nothing listens there: refused before connecting
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "imagecodecs" in err and "--compression deflate" in err
