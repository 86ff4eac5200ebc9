#!/usr/bin/env python
"""`tsva serve --workers 1` vs `--workers 2` (or any list), same load, in one run.

The model is an identity ONNX model (x = y1, made here) on the embedded backend, so inference
costs nothing and what is measured is the gateway's own work (decode, Brenner, patching,
stitching, encode), the part that one Python process cannot spread over cores. For each worker
count in turn it starts `tsva serve --workers N` and runs

    tsva loadtest --concurrency 4 --window 2 --encoding raw --tile-size 1224x1024

(RGB uint8 RAW tiles; each stream has its own connection, so the kernel spreads them over the
workers), then reports tiles/s, fused MP/s, p50/p99 and the CPU of the gateway's processes
(supervisor and workers), and the ratio to the first count. The figure is load-sensitive: it
prints the load average before and after; compare runs on an idle machine.

    python benchmarks/workers_bench.py                     # --workers 1,2, 20 s each
    python benchmarks/workers_bench.py --workers 1,2 --duration 30 --json
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
sys.path.insert(0, str(REPO))  # the tests' process helpers: a real gateway

from tests.support.gateway import start_gateway  # noqa: E402
from tests.support.identity_model import make_identity_onnx  # noqa: E402

from support import run_loadtest, tree_cpu_s  # noqa: E402  (benchmarks/support.py)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="worker counts, in order")
    parser.add_argument("--tile-size", default="1224x1024")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per worker count")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--patch-size", default="224", help="gateway --patch-size")
    parser.add_argument("--max-batch", type=int, default=48)
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args(argv)

    counts = [int(n) for n in args.workers.split(",")]
    results = {"machine": f"{os.cpu_count()} cores", "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
               "tile_size": args.tile_size, "concurrency": args.concurrency, "window": args.window,
               "duration_s": args.duration, "patch_size": args.patch_size, "max_batch": args.max_batch,
               "workers": {}}
    with tempfile.TemporaryDirectory(prefix="tsva-workers-bench-") as tmp:
        model = make_identity_onnx(Path(tmp) / "identity.onnx")
        for n in counts:
            with start_gateway(model, workers=n,
                               patch_size=args.patch_size, max_batch=args.max_batch) as gw:
                time.sleep(2 if n > 1 else 0)  # the other workers finish loading (health saw one)
                cpu0, t0 = tree_cpu_s(gw.process.pid), time.monotonic()
                summary = run_loadtest(gw.address, concurrency=args.concurrency, window=args.window,
                                       duration=args.duration, warmup=args.warmup,
                                       tile_size=args.tile_size, encoding="raw")
                cpu = (tree_cpu_s(gw.process.pid) - cpu0) / (time.monotonic() - t0)
            row = {k: summary.get(k) for k in ("throughput", "fused_mp_per_s", "p50", "p99", "ok", "error_count")}
            row["gateway_cpu_percent"] = round(100 * cpu, 1)  # over warm-up and measurement
            results["workers"][str(n)] = row
            print(f"--workers {n}: {row['throughput']:.2f} tiles/s, {row['fused_mp_per_s']:.1f} MP/s, "
                  f"gateway CPU {row['gateway_cpu_percent']} %, {row['error_count']} errors", file=sys.stderr)
    results["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    rows = results["workers"]
    base = rows[str(counts[0])]["throughput"]
    for n in counts[1:]:
        if base:
            results[f"ratio_{n}_over_{counts[0]}"] = round(rows[str(n)]["throughput"] / base, 2)

    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(f"load average before {' '.join(results['loadavg_before'])}, after {' '.join(results['loadavg_after'])}")
        print("| workers | tiles/s | fused MP/s | p50 ms | p99 ms | gateway CPU % | errors |\n"
              "|---|---|---|---|---|---|---|")
        for n, r in rows.items():
            print(f"| {n} | {r['throughput']:.2f} | {r['fused_mp_per_s']:.1f} | {r['p50']} | {r['p99']} | "
                  f"{r['gateway_cpu_percent']} | {r['error_count']} |")
        for key, value in results.items():
            if key.startswith("ratio_"):
                print(f"{key.replace('_', ' ')}: {value}x tiles/s")
    failed = any(r["ok"] == 0 or r["error_count"] for r in rows.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
