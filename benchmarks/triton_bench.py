#!/usr/bin/env python
"""The same load through gateway -> Triton and gateway -> embedded ONNX Runtime, on this machine.

Starts, for each backend in turn (never both at once, so they do not share the CPU):
  triton:   a real tritonserver (nvidia-pytriton's binary; the shipped ONNX file served by the
            CPU model of the repository, tests/support/triton_harness.py) and a gateway with
            `--backend triton --triton-urls ...`;
  embedded: a gateway with the default embedded backend and the same ONNX file;
then runs `tsva loadtest --json` against the gateway and reports tiles/s, fused MP/s, p50/p99.

    python benchmarks/triton_bench.py                      # 1224x1024 tiles, 4 streams, 30 s each
    python benchmarks/triton_bench.py --tile-size 448x448 --duration 10 --out bench.json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' process helpers: a real gateway, a real Triton

from tests.support.gateway import start_gateway  # noqa: E402
from tests.support.triton_harness import SHIPPED_ONNX, TritonServer  # noqa: E402

from support import run_loadtest  # noqa: E402  (benchmarks/support.py)


@contextlib.contextmanager
def gateway_for(backend: str, model: Path, threads: int, gateway_flags: dict):
    if backend == "embedded":
        with start_gateway(model, backend="embedded", intra_op_threads=threads, **gateway_flags) as gw:
            yield gw
        return
    server = TritonServer(model, intra_op_threads=threads)
    try:
        server.start()
        with start_gateway(model, backend="triton", triton_urls=server.url, **gateway_flags) as gw:
            yield gw
    finally:
        server.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(SHIPPED_ONNX), help="ONNX model (default: the shipped one)")
    parser.add_argument("--backends", default="triton,embedded")
    parser.add_argument("--tile-size", default="1224x1024")
    parser.add_argument("--concurrency", type=int, default=4, help="FuseTiles streams")
    parser.add_argument("--window", type=int, default=2, help="tiles in flight per stream")
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds per backend")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="ONNX Runtime threads of the process that runs the model (default: all cores)")
    parser.add_argument("--patch-size", type=int, default=224)
    parser.add_argument("--patch-overlap", type=int, default=64)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--out", help="write the results (both backends) as JSON")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args(argv)

    flags = dict(patch_size=args.patch_size, patch_overlap=args.patch_overlap, max_batch=args.max_batch)
    results = {"machine": f"{os.cpu_count()} cores", "model": args.model, "tile_size": args.tile_size,
               "concurrency": args.concurrency, "window": args.window, "duration_s": args.duration,
               "gateway": flags, "backends": {}}
    for backend in args.backends.split(","):
        with gateway_for(backend, Path(args.model), args.threads, flags) as gw:
            summary = run_loadtest(gw.address, concurrency=args.concurrency, window=args.window,
                                   duration=args.duration, warmup=args.warmup, tile_size=args.tile_size,
                                   gateway_pid=gw.process.pid)
        results["backends"][backend] = {k: summary.get(k) for k in (
            "throughput", "fused_mp_per_s", "p50", "p90", "p99", "ok", "error_count", "errors", "gateway")}
        print(f"{backend}: {summary['throughput']:.2f} tiles/s, p50 {summary['p50']} ms, "
              f"p99 {summary['p99']} ms, {summary['error_count']} errors", file=sys.stderr)

    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print("| backend | tiles/s | fused MP/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|")
        for backend, r in results["backends"].items():
            print(f"| {backend} | {r['throughput']:.2f} | {r['fused_mp_per_s']:.2f} | {r['p50']} | "
                  f"{r['p99']} | {r['error_count']} |")
    failed = any(r["ok"] == 0 or r["error_count"] for r in results["backends"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
