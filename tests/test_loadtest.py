"""`tsva loadtest` against a real gateway process on loopback (tiny model, small tiles, short runs),
plus the pieces that need no server: simulated tiles, percentiles, the knee, the loopback guard."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import free_port, metric, start_gateway
from tsva.client.loadtest import stats, target, tiles
from tsva.client.loadtest.cli import format_row

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _loadtest(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tsva.client.cli", "loadtest", *args], capture_output=True,
                          text=True, timeout=timeout)


# ---- no server needed -----------------------------------------------------------------------------

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


@pytest.mark.parametrize("server, loopback", [
    ("localhost:50051", True), ("127.0.0.1:1", True), ("[::1]:50051", True), ("unix:/tmp/tsva.sock", True),
    ("dns:///localhost:50051", True), ("192.0.2.10:50051", False), ("[2001:db8::1]:443", False),
    ("no-such-host.invalid:50051", False)])
def test_loopback_guard(server, loopback):
    assert target.is_loopback(server) is loopback


def test_remote_target_and_bad_options_refused_before_any_load():
    done = _loadtest("--server", "192.0.2.10:50051", "--duration", "1")
    assert done.returncode == 2 and "--allow-remote" in done.stderr
    done = _loadtest("--server", "127.0.0.1:1", "--tile-size", "12x4000")
    assert done.returncode == 2 and "--tile-size" in done.stderr
    done = _loadtest("--server", "127.0.0.1:1", "--token-file", "/no/such/token")
    assert done.returncode == 2 and "--token-file" in done.stderr
    done = _loadtest("--server", f"127.0.0.1:{free_port()}", "--count", "1")  # nobody listening
    assert done.returncode == 1 and "cannot reach" in done.stderr and "Traceback" not in done.stderr


# ---- against a real gateway -----------------------------------------------------------------------

@pytest.mark.slow
def test_json_out_file_and_plot_agree_with_the_gateway(gateway, tmp_path):
    before = metric(gateway.metrics_url, "tsva_tiles_total", outcome="ok")
    out, plot = tmp_path / "run.json", tmp_path / "latency.png"
    done = _loadtest("--server", gateway.address, "--concurrency", "2", "--window", "2", "--duration", "1.5",
                     "--warmup", "0.5", "--tile-size", "128x96", "--json", "--out", str(out), "--plot", str(plot))
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)  # exactly one JSON object on stdout
    for key in ("p50", "p90", "p99", "max"):
        assert figures[key] > 0
    assert figures["p50"] <= figures["p90"] <= figures["p99"] <= figures["max"]
    assert figures["throughput"] > 0 and figures["fused_mp_per_s"] == pytest.approx(
        figures["throughput"] * 128 * 96 / 1e6, rel=0.01)
    assert figures["errors"] == {} and figures["error_count"] == 0 and figures["complete"] is True
    level = figures["levels"][0]
    # Every tile the load tester counted (warm-up included) was counted as fused by the gateway too.
    after = metric(gateway.metrics_url, "tsva_tiles_total", outcome="ok")
    assert after - before == level["ok"] + level["warmup_tiles"]
    saved = json.loads(out.read_text())
    assert len(saved["latencies_ms"][0]) == level["ok"]
    assert plot.read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.slow
def test_sweep_prints_the_table_and_the_knee(gateway):
    done = _loadtest("--server", gateway.address, "--sweep", "1,2", "--count", "6", "--warmup", "0",
                     "--window", "2", "--tile-size", "64x64", "--mode", "unary")
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["1", "2"]
    assert all(row[2] == "6" for row in rows)  # measured tiles per level
    assert "knee:" in done.stdout


@pytest.mark.slow
def test_server_dying_mid_run_reports_errors_and_keeps_partial_results(tiny_model, tmp_path):
    out = tmp_path / "partial.json"
    with start_gateway(tiny_model, patch_size=64, patch_overlap=16, max_batch=8) as gw:
        run = subprocess.Popen(
            [sys.executable, "-m", "tsva.client.cli", "loadtest", "--server", gw.address, "--concurrency", "2",
             "--window", "2", "--duration", "60", "--warmup", "0", "--tile-size", "96x64", "--give-up-after", "1.5",
             "--out", str(out), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while metric(gw.metrics_url, "tsva_tiles_total", outcome="ok") < 5 and time.monotonic() < deadline:
                time.sleep(0.2)
            gw.process.kill()  # the server dies mid-run
            stdout, stderr = run.communicate(timeout=60)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
    assert run.returncode == 1, stderr
    assert "stopped early" in stderr
    figures = json.loads(stdout)
    assert figures["complete"] is False and figures["aborted"]
    assert figures["ok"] >= 3 and figures["errors"].get("UNAVAILABLE", 0) >= 1
    saved = json.loads(out.read_text())  # partial results written
    assert saved["ok"] == figures["ok"] and saved["aborted"] == figures["aborted"]
