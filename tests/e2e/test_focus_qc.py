"""Per-tile focus QC: the gateway's depth-from-defocus estimate of a tile's focus offset n.

Pairs with a known n come from the project's optics simulator (tsva-export), a single thin layer
(the tiny test model's metadata names no section, so the estimator models one layer too)."""
from __future__ import annotations

import pytest
from tsva.server.focus_qc import FocusEstimator

from tests.support.focus import OPTICS, shots, specimen  # noqa: F401 (fixtures)


@pytest.mark.parametrize("n, dd", [(-1.5, 1.0), (0.4, 1.0), (1.2, 0.5), (2.6, 1.5)])
def test_estimate_recovers_the_focus_offset(specimen, n, dd):
    a, b = shots(specimen, n, dd)
    estimate = FocusEstimator(OPTICS).estimate(a, b, -dd, dd)
    assert estimate.focus_offset_um == pytest.approx(n, abs=0.3)
    assert estimate.rescan == (abs(n) > OPTICS.focus_range_um)


@pytest.mark.slow
def test_qc_fields_over_grpc_and_the_flagged_tiles_metric(gateway, specimen):
    from tsva.client.sdk import Client

    from tests.support.metrics import read_metrics

    with Client(gateway.address) as client:
        a, b = shots(specimen, 0.6, 1.0)
        ok = client.fuse(a, b, defocus_a_um=-1.0, defocus_b_um=1.0)
        assert ok.focus_offset_um == pytest.approx(0.6, abs=0.3)
        assert not ok.rescan and ok.rescan_reason == "" and ok.trained_focus_range_um == 2.0
        a, b = shots(specimen, -3.0, 1.0)
        far = client.fuse(a, b, defocus_a_um=-1.0, defocus_b_um=1.0)
        assert far.rescan and far.focus_offset_um < -2.0 and "outside the trained" in far.rescan_reason
        none = client.fuse(a, b)  # no defocus offsets: no estimate, and no flag
        assert none.focus_offset_um is None and not none.rescan
        results = list(client.fuse_stream([dict(shot_a=a, shot_b=b, tile_id="s1", defocus_a_um=-1, defocus_b_um=1)]))
        assert results[0].rescan
    assert read_metrics(gateway.metrics_url)[("tsva_rescan_tiles_total", ())] >= 2
