"""`tsva fuse`, `tsva focus`, `tsva info` as processes against a real gateway process on loopback."""
import json
import subprocess
import sys

import numpy as np
import tifffile
from PIL import Image as PILImage
from skimage import data, filters

from tests.support.tiles import assert_close, expected_fusion, sharp_and_blurred


def tsva(*args, timeout=120):
    proc = subprocess.run([sys.executable, "-m", "tsva.common.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def test_fuse_png_pair_to_png_and_tiff(gateway, tmp_path):
    sharp, blurred = sharp_and_blurred(100, 130)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    PILImage.fromarray(blurred).save(a)
    PILImage.fromarray(sharp).save(b)
    out = tmp_path / "out.png"
    code, stdout, stderr = tsva("fuse", a, b, "-o", out, "--dd", 1.0, "--server", gateway.address)
    assert code == 0, stderr
    fused = np.asarray(PILImage.open(out))
    assert fused.shape == sharp.shape  # a tile of the input's size
    assert_close(fused, expected_fusion(sharp, blurred))
    assert "Y1        shot B" in stdout and str(b) in stdout
    assert "brenner" in stdout and "inference" in stdout and "round trip" in stdout

    out_tif = tmp_path / "out.tif"
    code, stdout, stderr = tsva("fuse", a, b, "-o", out_tif, "--json", "--server", gateway.address)
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["y1_shot"] == "B" and summary["brenner_b"] > summary["brenner_a"]
    assert summary["fused"]["encoding"] == "IMAGE_ENCODING_TIFF" and summary["output"] == str(out_tif)
    np.testing.assert_array_equal(tifffile.imread(out_tif), fused)


def test_fuse_16_bit_tiffs(gateway, tmp_path):
    sharp, blurred = sharp_and_blurred(64, 64, dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", sharp)
    tifffile.imwrite(tmp_path / "b.tiff", blurred)
    code, _, stderr = tsva("fuse", tmp_path / "a.tif", tmp_path / "b.tiff", "-o", tmp_path / "o.tiff",
                           "--server", gateway.address)
    assert code == 0, stderr
    fused = tifffile.imread(tmp_path / "o.tiff")
    assert fused.dtype == np.uint16
    assert_close(fused, expected_fusion(sharp, blurred), tolerance=2)


def test_fuse_rejected_by_the_server_is_one_line(gateway, tmp_path):
    sharp, blurred = sharp_and_blurred(64, 64)
    PILImage.fromarray(sharp).save(tmp_path / "a.png")
    PILImage.fromarray(blurred[:32]).save(tmp_path / "b.png")
    code, _, stderr = tsva("fuse", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "o.png",
                           "--tile-id", "tile-77", "--server", gateway.address)
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert "rejected the input" in stderr and "tile-77" in stderr
    assert not (tmp_path / "o.png").exists()


def test_focus_text_and_json(gateway, tmp_path):
    tissue = data.camera()[200:300, 200:330]
    z = [0.0, 1.0, 2.0, 3.0, 4.0]
    planes = []
    for i, zi in enumerate(z):
        plane = np.round(filters.gaussian(tissue, sigma=1.5 * abs(zi - 2.3), preserve_range=True)).astype(np.uint8)
        planes.append(tmp_path / f"z{i}.png")
        PILImage.fromarray(plane).save(planes[-1])
    code, stdout, stderr = tsva("focus", *planes, "--z", *z, "--server", gateway.address)
    assert code == 0, stderr
    assert stdout.startswith(f"best plane  2 ({planes[2]}) at z = 2.000 um")
    code, stdout, stderr = tsva("focus", *planes, "--z-step", 1.0, "--json", "--server", gateway.address)
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["best_index"] == 2 and result["best_plane"] == str(planes[2])
    assert 2.0 < result["refined_z_um"] < 3.0 and len(result["brenner"]) == 5


def test_info_text_and_json(gateway):
    code, stdout, stderr = tsva("info", "--server", gateway.address)
    assert code == 0, stderr
    assert "model       tiny version 7 on the embedded backend" in stdout
    assert "NA 0.75" in stdout and "0.5, 1, 1.5 um" in stdout and "SERVING" in stdout
    code, stdout, stderr = tsva("info", "--json", "--server", gateway.address)
    assert code == 0, stderr
    info = json.loads(stdout)
    assert info["model_name"] == "tiny" and info["optics"]["wavelengths_um"] == [0.61, 0.53, 0.47]
    assert info["limits"]["max_batch_size"] == 8 and info["health"] == "SERVING"


def test_info_into_a_closed_pipe_ends_quietly(gateway):
    """`tsva info | head -0`: the reader is gone before the verb writes; no error line, no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "tsva.common.cli", "info", "--server", gateway.address],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the read end closes first: every write to stdout is EPIPE
    _, stderr = proc.communicate(timeout=120)
    assert stderr == "" and proc.returncode == 1
