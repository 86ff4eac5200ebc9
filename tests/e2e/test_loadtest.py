"""`tsva loadtest` against a real gateway process on loopback (tiny model, small tiles, short runs),
plus the pieces that need no server: simulated tiles, percentiles, the knee, the loopback guard."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from tsva.client.loadtest import target

from tests.support.gateway import free_port, start_gateway
from tests.support.metrics import metric

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _loadtest(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tsva.common.cli", "loadtest", *args], capture_output=True,
                          text=True, timeout=timeout)


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
            [sys.executable, "-m", "tsva.common.cli", "loadtest", "--server", gw.address, "--concurrency", "2",
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
