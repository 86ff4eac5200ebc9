"""The matrix evaluation: a tiny run produces every section x dD cell for every method, the
targets are checked on the medians, and the reports (markdown, JSON, heat map) are written."""
from __future__ import annotations

import json

import pytest
import torch
from tsva.export.checkpoint import save_checkpoint
from tsva.export.evaluate import METHODS, EvalConfig, Predictor
from tsva.export.evaluate_matrix import evaluate_matrix, simulated_pools, write_matrix_reports
from tsva.export.network import NetworkConfig, build_network
from tsva.export.optics import Optics
from tsva.export.textures import load_textures, split_textures

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _checkpoint(tmp_path, arch, condition="none"):
    torch.manual_seed(0)
    net = build_network(NetworkConfig(arch=arch, base_width=4, depth=2, condition=condition))
    torch.nn.init.normal_(net.decoder.head.weight, std=0.01)
    save_checkpoint(tmp_path / f"{arch}.pt", net, net.config)
    return tmp_path / f"{arch}.pt"


@pytest.mark.slow
def test_tiny_matrix_has_every_cell_and_report(tmp_path):
    optics = Optics(defocus_um=(1.0, 3.0))
    _, held_out = split_textures(load_textures(None, optics.pixel_size_um, 48))
    cfg = EvalConfig(pairs_per_dd=2, patch_size=48, rl_iterations=2)
    pools = simulated_pools(held_out, optics, cfg, thicknesses=(0.0, 4.0))
    tsva = Predictor(_checkpoint(tmp_path, "tsva", condition="defocus"), expect_arch="tsva")  # conditioned
    result = evaluate_matrix(pools, optics, tsva, Predictor(_checkpoint(tmp_path, "unet")), cfg)
    cells = {(c["thickness_um"], c["dd_um"]) for c in result["cells"]}
    assert cells == {(0.0, 1.0), (0.0, 3.0), (4.0, 1.0), (4.0, 3.0)}
    for c in result["cells"]:
        assert set(c["methods"]) == set(METHODS) and c["pairs"] == 2
        for s in c["methods"].values():
            assert s["psnr_iqr"][0] <= s["psnr_median"] <= s["psnr_iqr"][1] and s["nuclei_count_mae"] >= 0
    t = result["targets"]
    assert {"every_cell_ge_sharper_plus_0_5db", "dd_ge_2_ge_sharper_plus_4db", "mean_gain_over_unet_db"} <= set(t)

    paths = write_matrix_reports(result, tmp_path / "docs", "tiny matrix", {"command": "tsva evaluate (test)"})
    md = paths["markdown"].read_text()
    assert "| 0 um |" in md and "| 4 um |" in md and "TSVA minus the sharper shot" in md
    saved = json.loads(paths["json"].read_text())
    assert len(saved["cells"]) == 4 and saved["summary"].startswith("tiny matrix")
    assert paths["heat_map"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
