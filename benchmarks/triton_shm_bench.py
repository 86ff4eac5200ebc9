#!/usr/bin/env python
"""Gateway -> real tritonserver, tensors inside gRPC vs through system shared memory, in one run.

The model is an identity ONNX model (x = y1, made here), served by the tests' real tritonserver
(nvidia-pytriton's binary, a Python-backend model running the ONNX file, tests/support/triton_harness.py),
so inference costs nothing and the figure is the transport's. For each transport in turn (one
Triton, a fresh gateway each) it runs

    tsva loadtest --concurrency 4 --window 2 --encoding raw --tile-size 1224x1024 --gateway-pid PID

(RGB uint8 RAW tiles) and reports tiles/s, fused MP/s, gateway CPU and the Triton server's CPU
(its process group: server and Python stub), then the ratio shm / grpc. Serving paths (`--paths`):
float32-patch (the float32 NCHW contract in 224-px patches: today's path) and uint8-tile (the
pixel-typed uint8 NHWC contract, whole tiles); every ratio is against float32-patch over gRPC.

    python benchmarks/triton_shm_bench.py                    # 20 s per transport
    python benchmarks/triton_shm_bench.py --duration 10 --json
    python benchmarks/triton_shm_bench.py --paths float32-patch,uint8-tile
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' process helpers: a real gateway, a real Triton

from tests.support.gateway import start_gateway  # noqa: E402
from tests.support.identity_model import make_identity_onnx  # noqa: E402
from tests.support.triton_harness import TritonServer  # noqa: E402

from support import group_cpu_s, run_loadtest  # noqa: E402  (benchmarks/support.py)


PATHS = {"float32-patch": ("float32", "224"), "uint8-tile": ("uint8", "tile")}  # (model io, --patch-size)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transports", default="off,system", help="--triton-shared-memory values, in order")
    parser.add_argument("--tile-size", default="1224x1024")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per transport")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--paths", default="float32-patch", help="serving paths: float32-patch, uint8-tile")
    parser.add_argument("--max-batch", type=int, default=48)
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args(argv)

    results = {"machine": f"{os.cpu_count()} cores", "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
               "tile_size": args.tile_size, "concurrency": args.concurrency, "window": args.window,
               "duration_s": args.duration, "max_batch": args.max_batch, "transports": {}}
    with tempfile.TemporaryDirectory(prefix="tsva-shm-bench-") as tmp:
      for path in args.paths.split(","):
        io, patch_size = PATHS[path]
        model = make_identity_onnx(Path(tmp) / f"identity_{io}.onnx", io)
        with TritonServer(model, max_batch_size=args.max_batch) as triton:
            for transport in args.transports.split(","):
                with start_gateway(model, backend="triton", triton_urls=triton.url, triton_shared_memory=transport,
                                   patch_size=patch_size, max_batch=args.max_batch) as gw:
                    cpu0, t0 = group_cpu_s(triton.process.pid), time.monotonic()
                    summary = run_loadtest(gw.address, concurrency=args.concurrency, window=args.window,
                                           duration=args.duration, warmup=args.warmup,
                                           tile_size=args.tile_size, encoding="raw",
                                           gateway_pid=gw.process.pid)
                    triton_cpu = (group_cpu_s(triton.process.pid) - cpu0) / (time.monotonic() - t0)
                    batches = {t: _metric(gw.metrics_url, "tsva_triton_batches_total", transport=t)
                               for t in ("grpc", "system")}
                row = {k: summary.get(k) for k in ("throughput", "fused_mp_per_s", "p50", "p99", "ok",
                                                   "error_count", "gateway")}
                row.update(triton_cpu_percent=round(100 * triton_cpu, 1), batches_by_transport=batches)
                results["transports"][f"{path} {transport}"] = row
                print(f"{path} {transport}: {row['throughput']:.2f} tiles/s, {row['fused_mp_per_s']:.1f} MP/s, "
                      f"p50 {row['p50']} ms, {row['error_count']} errors, batches {batches}", file=sys.stderr)
    results["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    rows = results["transports"]
    base = (rows.get("float32-patch off") or {}).get("throughput")
    if base:
        results["ratios_over_float32_patch_grpc"] = {
            key: round(r["throughput"] / base, 2) for key, r in rows.items() if key != "float32-patch off"}

    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(f"load average before {' '.join(results['loadavg_before'])}, after {' '.join(results['loadavg_after'])}")
        print("| path, transport | tiles/s | fused MP/s | p50 ms | p99 ms | gateway CPU % | Triton CPU % | errors |\n"
              "|---|---|---|---|---|---|---|---|")
        for key, r in rows.items():
            gateway_cpu = (r.get("gateway") or {}).get("cpu_percent")
            print(f"| {key.replace(' off', ' grpc')} | {r['throughput']:.2f} | "
                  f"{r['fused_mp_per_s']:.1f} | {r['p50']} | {r['p99']} | {gateway_cpu} | "
                  f"{r['triton_cpu_percent']} | {r['error_count']} |")
        for key, ratio in (results.get("ratios_over_float32_patch_grpc") or {}).items():
            print(f"{key.replace(' off', ' grpc')} / float32-patch grpc: {ratio}x tiles/s")
    failed = any(r["ok"] == 0 or r["error_count"] for r in rows.values())
    return 1 if failed else 0


def _metric(url: str, name: str, **labels) -> float:
    from tests.support.metrics import metric

    return metric(url, name, **labels)


if __name__ == "__main__":
    sys.exit(main())
