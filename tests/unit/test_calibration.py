"""Calibration: the fitted defocus of a pair made by the simulator itself is recovered."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data
from tsva.export.calibration import calibrate
from tsva.export.errors import TextureError
from tsva.export.optics import Optics, blur


def _save(path, image):
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


def test_calibration_recovers_the_defocus_of_a_simulated_pair(tmp_path):
    optics = Optics()
    sharp = data.immunohistochemistry()[:160, :160].astype(np.float64) / 255
    a = _save(tmp_path / "in.png", sharp)
    b = _save(tmp_path / "out.png", blur(sharp, optics, 2.0))
    result = calibrate(a, b, optics, crop=96, search_um=(0.0, 4.0))
    assert result["defocus_um"] == pytest.approx(2.0, abs=0.15)
    assert result["psnr"] > 45 and result["psnr"] > result["psnr_unblurred"] + 10


def test_calibration_refuses_images_of_different_size(tmp_path):
    sharp = data.immunohistochemistry()[:64, :64].astype(np.float64) / 255
    with pytest.raises(TextureError, match="differ in size"):
        calibrate(_save(tmp_path / "a.png", sharp), _save(tmp_path / "b.png", sharp[:32]), Optics())
