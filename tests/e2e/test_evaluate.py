"""Evaluation: a tiny run produces the table's rows for every dD and method, reports are written,
and the building blocks (nuclei count, Richardson-Lucy, targets) behave."""
from __future__ import annotations

import json

import pytest
from tsva.export.evaluate import METHODS, EvalConfig, Predictor, evaluate, evaluation_pools, write_reports
from tsva.export.onnx_export import export_onnx
from tsva.export.optics import Optics, Sample
from tsva.export.textures import load_textures, split_textures

from tests.support.networks import _checkpoint

pytestmark = pytest.mark.usefixtures("torch_one_thread")


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
