"""Evaluation: a tiny run produces the table's rows for every dD and method, reports are written,
and the building blocks (nuclei count, Richardson-Lucy, targets) behave."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage import data, draw
from skimage.metrics import peak_signal_noise_ratio

from tsva.export.checkpoint import save_checkpoint
from tsva.export.errors import CheckpointError
from tsva.export.evaluate import (METHODS, EvalConfig, Predictor, count_nuclei, evaluate, evaluation_pools,
                                  richardson_lucy, targets, write_reports)
from tsva.export.network import NetworkConfig, build_network
from tsva.export.onnx_export import export_onnx
from tsva.export.optics import Optics, Sample, blur
from tsva.export.textures import load_textures, split_textures

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _checkpoint(tmp_path, arch):
    torch.manual_seed(0)
    net = build_network(NetworkConfig(arch=arch, base_width=4, depth=2))
    torch.nn.init.normal_(net.decoder.head.weight, std=0.01)
    save_checkpoint(tmp_path / f"{arch}.pt", net, net.config)
    return net.eval()


@pytest.mark.slow
def test_tiny_evaluation_produces_every_row_and_report(tmp_path):
    optics = Optics(defocus_um=(1.0, 2.0, 3.0))
    _checkpoint(tmp_path, "tsva")
    unet = _checkpoint(tmp_path, "unet")
    export_onnx(unet, tmp_path / "unet.onnx")  # an exported model evaluates like a checkpoint
    _, held_out = split_textures(load_textures(None, optics.pixel_size_um, 64))
    cfg = EvalConfig(pairs_per_dd=2, patch_size=64, rl_iterations=3)
    pools = evaluation_pools(held_out, optics, Sample(), cfg)
    result = evaluate(pools, optics, Predictor(tmp_path / "tsva.pt", expect_arch="tsva"),
                      Predictor(tmp_path / "unet.onnx"), cfg)
    assert [r["dd_um"] for r in result["rows"]] == [1.0, 2.0, 3.0]
    for row in result["rows"]:
        assert set(row["methods"]) == set(METHODS) and row["pairs"] == 2
        for scores in row["methods"].values():
            lo, hi = scores["psnr_iqr"]
            assert lo <= scores["psnr_median"] <= hi and 10 < scores["psnr_median"] < 80
            assert 0 < scores["ssim_median"] <= 1 and scores["nuclei_count_mae"] >= 0
    assert set(result["targets"]) >= {"tsva_ge_sharper_every_dd", "tsva_ge_unet_plus_1db", "mean_gain_over_unet_db"}

    paths = write_reports(result, tmp_path / "docs", "tiny test", {"command": "tsva evaluate (test)"})
    table = paths["markdown"].read_text()
    for dd in ("| 1 |", "| 2 |", "| 3 |"):
        assert dd in table
    assert "TSVA PSNR [IQR]" in table and "Richardson-Lucy" in table and "U-Net (1 input)" in table
    saved = json.loads(paths["json"].read_text())
    assert saved["summary"].startswith("tiny test") and len(saved["rows"]) == 3
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
