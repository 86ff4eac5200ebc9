"""Evaluation: a tiny run produces the table's rows for every dD and method, reports are written,
and the building blocks (nuclei count, Richardson-Lucy, targets) behave."""
from __future__ import annotations

import numpy as np
import pytest
from skimage import data, draw
from skimage.metrics import peak_signal_noise_ratio
from tsva.export.errors import CheckpointError
from tsva.export.evaluate import Predictor, count_nuclei, richardson_lucy, targets
from tsva.export.optics import Optics, blur

from tests.support.networks import _checkpoint

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_predictor_refuses_the_wrong_architecture(tmp_path):
    _checkpoint(tmp_path, "unet")
    with pytest.raises(CheckpointError, match="expected 'tsva'"):
        Predictor(tmp_path / "unet.pt", expect_arch="tsva")
    with pytest.raises(CheckpointError, match="no such file"):
        Predictor(tmp_path / "missing.onnx")


def test_nuclei_are_counted_on_the_haematoxylin_channel():
    image = np.ones((128, 128, 3))
    for centre in [(30, 30), (30, 90), (90, 60)]:
        rr, cc = draw.disk(centre, 12)
        image[rr, cc] = (0.35, 0.25, 0.6)  # haematoxylin blue-purple
    rr, cc = draw.disk((100, 110), 2)     # a speck, below the minimum nucleus area
    image[rr, cc] = (0.35, 0.25, 0.6)
    assert count_nuclei(image, threshold=0.05) == 3


def test_richardson_lucy_with_the_true_psf_sharpens():
    optics = Optics()
    truth = data.immunohistochemistry()[:96, :96].astype(np.float64) / 255
    blurred = np.clip(blur(truth, optics, 1.5), 0, 1)
    restored = richardson_lucy(blurred, optics, 1.5, iterations=10)
    assert peak_signal_noise_ratio(truth, restored, data_range=1) > peak_signal_noise_ratio(truth, blurred, data_range=1) + 1


def test_targets_follow_the_issue():
    def row(dd, sharper, unet, tsva):
        return {"dd_um": dd, "methods": {"sharper": {"psnr_median": sharper}, "unet": {"psnr_median": unet},
                                         "tsva": {"psnr_median": tsva}}}
    good = targets([row(0.5, 40, 41, 42), row(2.0, 30, 33, 34.5), row(3.0, 28, 31, 32.5)])
    assert good["tsva_ge_sharper_every_dd"] and good["tsva_ge_sharper_plus_4db_at_2_and_3um"]
    assert good["mean_gain_over_unet_db"] == pytest.approx((1 + 1.5 + 1.5) / 3) and good["tsva_ge_unet_plus_1db"]
    bad = targets([row(0.5, 40, 41, 39.9), row(2.0, 30, 33, 33.9)])
    assert not bad["tsva_ge_sharper_every_dd"] and not bad["tsva_ge_sharper_plus_4db_at_2_and_3um"]
    assert not bad["tsva_ge_unet_plus_1db"]
