"""The matrix evaluation: a tiny run produces every section x dD cell for every method, the
targets are checked on the medians, and the reports (markdown, JSON, heat map) are written."""
from __future__ import annotations

import pytest
from tsva.export.evaluate_matrix import matrix_targets, section

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_sections_of_the_matrix():
    assert (section(0).thickness_um, section(0).layers) == (0.0, 1)
    assert (section(4).thickness_um, section(4).layers) == (4.0, 5)  # the shipped model's section
    assert section(1).layers == 2 and section(2).layers == 3


def test_matrix_targets_follow_the_quality_bar():
    def cell(t, dd, sharper, unet, tsva):
        return {"thickness_um": t, "dd_um": dd, "methods": {"sharper": {"psnr_median": sharper},
                                                            "unet": {"psnr_median": unet}, "tsva": {"psnr_median": tsva}}}
    good = matrix_targets([cell(0, 0.5, 40, 40, 41), cell(4, 2.0, 30, 32, 34.5)], reference_4um={2.0: 34.8})
    assert good["every_cell_ge_sharper_plus_0_5db"] and good["dd_ge_2_ge_sharper_plus_4db"]
    assert good["mean_gain_over_unet_db"] == pytest.approx(1.75) and good["tsva_ge_unet_plus_1_5db"]
    assert good["no_4um_cell_below_reference_minus_0_5db"]
    bad = matrix_targets([cell(0, 0.5, 40, 40, 40.4), cell(4, 2.0, 30, 33, 33.9)], reference_4um={2.0: 35.0})
    assert not bad["every_cell_ge_sharper_plus_0_5db"] and not bad["dd_ge_2_ge_sharper_plus_4db"]
    assert not bad["tsva_ge_unet_plus_1_5db"] and not bad["no_4um_cell_below_reference_minus_0_5db"]
