"""`tsva loadtest` against a real gateway process on loopback (tiny model, small tiles, short runs),
plus the pieces that need no server: simulated tiles, percentiles, the knee, the loopback guard."""
from __future__ import annotations

import numpy as np
import pytest
from tsva.client.loadtest import stats, tiles
from tsva.client.verbs.loadtest import format_row


def test_simulated_pairs_look_like_two_defocused_shots():
    spec = tiles.TileSpec(160, 96)
    shot_a, shot_b = tiles.shot_pair(spec, seed=3)
    assert shot_a.shape == shot_b.shape == (96, 160, 3) and shot_a.dtype == np.uint8
    for shot in (shot_a, shot_b):
        assert shot.std() > 10  # tissue texture, never blank
    # Different blur on each side of focus: Brenner gradients differ clearly, shot A is sharper.
    brenner = [float(((s[:, 2:].astype(float) - s[:, :-2]) ** 2).sum()) for s in (shot_a, shot_b)]
    assert brenner[0] > 1.2 * brenner[1]
    grey16, _ = tiles.shot_pair(tiles.TileSpec(64, 48, 1, "uint16"), seed=3)
    assert grey16.shape == (48, 64, 1) and grey16.dtype == np.uint16 and grey16.max() > 255
    # The template + tile_id concatenation parses as one complete request.
    from tsva.v1 import tsva_pb2 as pb
    request = pb.FuseRequest.FromString(tiles.with_tile_id(tiles.request_template(spec, 3), "t-42"))
    assert request.tile_id == "t-42" and request.shot_a.width == 160 and request.shot_b.height == 96


def test_percentiles_and_knee():
    level = stats.LevelStats(concurrency=2, window=1, megapixels_per_tile=1.0)
    level.measure_start = 10.0
    level.record_ok(sent=9.0, done=9.5)  # sent during warm-up: excluded
    for i in range(1, 101):
        level.record_ok(sent=10.0, done=10.0 + i / 1000.0)  # 1..100 ms
    level.record_error(sent=10.5, done=10.6, status="UNAVAILABLE", message="gone")
    summary = level.summary()
    assert summary["warmup_tiles"] == 1 and summary["ok"] == 100 and summary["errors"] == {"UNAVAILABLE": 1}
    assert summary["p50"] == pytest.approx(50.5, abs=0.01) and summary["max"] == pytest.approx(100.0)
    assert summary["throughput"] == pytest.approx(100 / 0.6, rel=1e-3)
    assert "UNAVAILABLE=1" in format_row(summary)
    levels = [dict(concurrency=c, throughput=t, ok=1) for c, t in ((1, 10.0), (2, 18.0), (4, 19.0), (8, 19.5))]
    assert stats.find_knee(levels)["concurrency"] == 2
    assert stats.find_knee([dict(concurrency=1, throughput=0.0, ok=0)]) is None


def test_a_tile_error_without_status_is_counted_by_its_code_name():
    from tsva.client.loadtest.runner import tile_error_status
    from tsva.v1 import tsva_pb2 as pb
    assert tile_error_status(pb.TileError(code=13, message="boom")) == "INTERNAL"  # grpc.StatusCode(13) raises
    assert tile_error_status(pb.TileError(code=3, status="INVALID_ARGUMENT")) == "INVALID_ARGUMENT"
    assert tile_error_status(pb.TileError(code=99)) == "UNKNOWN"
