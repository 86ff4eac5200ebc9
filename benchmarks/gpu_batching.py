#!/usr/bin/env python
"""Triton-style batching of the TSVA model on one GPU: fused megapixels per second by batch size.

Runs the shipped ONNX model with ONNX Runtime's TensorRT (FP16, the same optimisation profile as
model_repository/tsva/config.pbtxt) or CUDA execution provider, the way Triton's ONNX Runtime
backend with `instance_group { count: N, kind: KIND_GPU }` does: N instances (threads) each
running whole batches, host arrays in and out (so copies to and from the GPU are counted).

    python benchmarks/gpu_batching.py                                   # TensorRT FP16, batches 8..128
    python benchmarks/gpu_batching.py --providers cuda --batch-sizes 8,32,128
    python benchmarks/gpu_batching.py --providers cpu --batch-sizes 1,2 --patch 32 --iterations 2  # smoke run

Needs onnxruntime-gpu (and TensorRT for --providers tensorrt) on a GPU machine; the official
Triton container has neither Python package, so run it in an environment with
`pip install onnxruntime-gpu` (and `tensorrt` for the TensorRT provider).

Figures: patch MP/s = patch pixels through the network per second; tile MP/s = the same turned
into slide pixels with the gateway's default patching (224 px patches, 64 px overlap: a 1224x1024
tile needs 48 patches, 2.41 MP of patches for 1.25 MP of tile); the fastest scanners produce
about 100 MP/s.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHIPPED_ONNX = REPO / "model_repository" / "tsva" / "1" / "model.onnx"
SCANNER_MP_PER_S = 100.0
TILE_W, TILE_H, TILE_PATCHES_224 = 1224, 1024, 48  # gateway defaults: 224-px patches, 64 px overlap


def providers_for(name: str, patch: int, max_batch: int, cache_dir: str, fp16: bool):
    if name == "cpu":
        return ["CPUExecutionProvider"]
    if name == "cuda":
        return [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}), "CPUExecutionProvider"]
    if name == "tensorrt":
        def shapes(batch):
            return f"y1:{batch}x3x{patch}x{patch},y2:{batch}x3x{patch}x{patch}"
        trt = {
            "trt_fp16_enable": fp16,
            "trt_max_workspace_size": 4 << 30,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": cache_dir,
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": cache_dir,
            "trt_profile_min_shapes": shapes(1),
            "trt_profile_opt_shapes": shapes(min(32, max_batch)),
            "trt_profile_max_shapes": shapes(max_batch),
        }
        return [("TensorrtExecutionProvider", trt), "CUDAExecutionProvider", "CPUExecutionProvider"]
    raise SystemExit(f"--providers: unknown {name!r} (tensorrt, cuda or cpu)")


def measure(session, batch: int, patch: int, iterations: int, instances: int) -> dict:
    """`instances` threads each run `iterations` batches; returns throughput and latency."""
    rng = np.random.default_rng(batch)
    y1 = rng.random((batch, 3, patch, patch), dtype=np.float32)
    y2 = np.clip(y1 + rng.normal(0, 0.02, y1.shape).astype(np.float32), 0, 1)
    session.run(["x"], {"y1": y1, "y2": y2})  # engine build / warm-up for this shape
    latencies: list[float] = []
    lock = threading.Lock()

    def worker():
        for _ in range(iterations):
            t0 = time.perf_counter()
            session.run(["x"], {"y1": y1, "y2": y2})
            with lock:
                latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(instances)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    patches = batch * iterations * instances
    patch_mp_s = patches * patch * patch / wall / 1e6
    # Slide pixels per second with the gateway's patching of 1224x1024 tiles at 224/64.
    tile_mp_s = patches / TILE_PATCHES_224 * TILE_W * TILE_H / wall / 1e6 if patch == 224 else None
    return {
        "batch": batch, "patches_per_s": patches / wall, "patch_mp_per_s": patch_mp_s,
        "tile_mp_per_s": tile_mp_s,
        "batch_ms_p50": statistics.median(latencies) * 1e3,
        "batch_ms_max": max(latencies) * 1e3,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(SHIPPED_ONNX), help="ONNX model (default: the shipped one)")
    parser.add_argument("--providers", default="tensorrt", choices=("tensorrt", "cuda", "cpu"))
    parser.add_argument("--fp32", action="store_true", help="TensorRT in FP32 instead of FP16")
    parser.add_argument("--batch-sizes", default="8,16,32,64,128")
    parser.add_argument("--patch", type=int, default=224, help="patch side (default 224, the gateway's)")
    parser.add_argument("--iterations", type=int, default=20, help="batches per instance and batch size")
    parser.add_argument("--instances", type=int, default=2, help="concurrent instances (Triton instance_group count)")
    parser.add_argument("--cache-dir", default="/tmp/tsva-trt-bench", help="TensorRT engine cache")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args(argv)

    import onnxruntime as ort

    batches = [int(b) for b in args.batch_sizes.split(",")]
    providers = providers_for(args.providers, args.patch, max(batches), args.cache_dir, not args.fp32)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t0 = time.perf_counter()
    session = ort.InferenceSession(args.model, options, providers=providers)
    active = session.get_providers()
    if args.providers != "cpu" and active[0] == "CPUExecutionProvider":
        print(f"gpu_batching: {args.providers} provider unavailable here (available: "
              f"{ort.get_available_providers()}); use --providers cpu for a smoke run", file=sys.stderr)
        return 2
    rows = [measure(session, b, args.patch, args.iterations, args.instances) for b in batches]
    result = {
        "model": args.model, "providers": active, "precision": "fp32" if args.fp32 or args.providers != "tensorrt" else "fp16",
        "patch": args.patch, "instances": args.instances, "iterations": args.iterations,
        "session_setup_s": time.perf_counter() - t0, "device": _device_name(), "rows": rows,
        "scanner_mp_per_s": SCANNER_MP_PER_S,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    print(f"{'batch':>6} {'patches/s':>10} {'patch MP/s':>11} {'tile MP/s':>10} {'batch p50 ms':>13}  vs 100 MP/s",
          file=sys.stderr if args.json else sys.stdout)
    for r in rows:
        tile = f"{r['tile_mp_per_s']:10.1f}" if r["tile_mp_per_s"] is not None else f"{'-':>10}"
        share = f"{r['tile_mp_per_s'] / SCANNER_MP_PER_S:6.0%}" if r["tile_mp_per_s"] is not None else ""
        print(f"{r['batch']:>6} {r['patches_per_s']:10.1f} {r['patch_mp_per_s']:11.1f} {tile} "
              f"{r['batch_ms_p50']:13.1f}  {share}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _device_name() -> str:
    try:
        import subprocess

        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "no GPU"
    except (OSError, subprocess.SubprocessError):
        return "no GPU"


if __name__ == "__main__":
    sys.exit(main())
