"""The Triton benchmarks run (tiny settings; figures are not checked here, they go to the README).

benchmarks/gpu_batching.py is meant for a GPU; here it runs with ONNX Runtime's CPU provider,
which exercises the same batching, timing and reporting code."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest

from tests.support.models import make_tiny_onnx

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run_script(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARKS / name), *args],
                          capture_output=True, text=True, timeout=timeout)


def test_gpu_batching_runs_on_cpu_with_a_tiny_setting(tmp_path):
    model = make_tiny_onnx(tmp_path / "tiny.onnx")
    done = run_script("gpu_batching.py", "--providers", "cpu", "--model", str(model), "--batch-sizes", "1,4",
                      "--patch", "224", "--iterations", "2", "--instances", "2", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["providers"] == ["CPUExecutionProvider"]
    assert [row["batch"] for row in result["rows"]] == [1, 4]
    for row in result["rows"]:
        assert row["patches_per_s"] > 0 and row["tile_mp_per_s"] > 0
        # patch MP/s and tile MP/s describe the same work: 48 patches of 224 px per 1224x1024 tile.
        assert row["tile_mp_per_s"] == pytest.approx(row["patch_mp_per_s"] * (1224 * 1024) / (48 * 224 * 224))


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="a GPU is present")
def test_gpu_batching_says_when_there_is_no_gpu(tmp_path):
    done = run_script("gpu_batching.py", "--providers", "cuda", "--model",
                      str(make_tiny_onnx(tmp_path / "tiny.onnx")), "--batch-sizes", "1")
    assert done.returncode == 2 and "cuda provider unavailable here" in done.stderr


@pytest.mark.slow
def test_triton_bench_runs_both_backends():
    done = run_script("triton_bench.py", "--tile-size", "96x96", "--patch-size", "64", "--patch-overlap", "16",
                      "--concurrency", "1", "--window", "2", "--duration", "1", "--warmup", "0.5", "--json",
                      timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert set(result["backends"]) == {"triton", "embedded"}
    for figures in result["backends"].values():
        assert figures["ok"] > 0 and figures["error_count"] == 0
        assert figures["throughput"] > 0 and figures["p50"] <= figures["p99"]
