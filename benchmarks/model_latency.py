"""Latency of the shipped model on CPU through ONNX Runtime: one patch pair at a time.

    python benchmarks/model_latency.py [--model PATH] [--size 224] [--threads 1] [--repeat 50] [--json]

Prints median and p90 milliseconds per call (batch 1 and batch 8, per pair)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "model_repository" / "tsva" / "1" / "model.onnx"


def measure(session, batch: int, size: int, repeat: int) -> dict:
    rng = np.random.default_rng(0)
    feeds = {name: rng.random((batch, 3, size, size), dtype=np.float32) for name in ("y1", "y2")}
    for _ in range(3):
        session.run(["x"], feeds)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        session.run(["x"], feeds)
        times.append((time.perf_counter() - start) * 1000)
    return {"batch": batch, "size": size, "median_ms": float(np.median(times)),
            "p90_ms": float(np.percentile(times, 90)), "median_ms_per_pair": float(np.median(times)) / batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    results = [measure(session, b, args.size, args.repeat if b == 1 else max(5, args.repeat // 8)) for b in (1, 8)]
    if args.json:
        print(json.dumps({"model": args.model, "threads": args.threads, "results": results}))
    else:
        for r in results:
            print(f"batch {r['batch']} {r['size']}x{r['size']}: median {r['median_ms']:.1f} ms, p90 {r['p90_ms']:.1f} ms "
                  f"({r['median_ms_per_pair']:.1f} ms per pair, {args.threads} thread(s))")


if __name__ == "__main__":
    main()
