#!/usr/bin/env python
"""The embedded CPU default against the same network's float32 model, through real gateway
processes, in one run.

One gateway per variant (embedded backend on CPU, `tsva serve --model-path M --precision P
--patch-size S --patch-overlap O`), all started before the first measure; then rounds of

    tsva loadtest --concurrency 2 --window 2 --encoding raw --tile-size 1224x1024 --duration D

against each gateway in turn (float32, int8, ..., float32, int8, ...: interleaved, so a busy
neighbour on the shared cores slows every variant alike), medians of the fused MP/s reported with
the ratio to the first variant. Only one gateway is loaded at a time; the others sit idle.

A variant is MODEL:PLAN. MODEL: `fp32` (the shipped model.onnx, --precision float32), `int8` (its
int8 form model.int8.onnx, --precision int8), `default` (--precision auto: what `tsva serve` runs),
or a path to an ONNX file (served as it is). PLAN: PATCH/OVERLAP, `tile` or `auto/64`.

Quality is not measured here (it needs simulated pairs with a ground truth): run `tsva evaluate`
on both files with the same pairs (docs/performance.md, "int8 quantisation for CPUs"). Usage:

    python benchmarks/cpu_default.py      # float32 224/64 patches vs the default, 3 rounds of 30 s
    python benchmarks/cpu_default.py --variants fp32:224/64,fp32:auto/64,default:auto/64 --rounds 3 --duration 40 --warmup 10

(`--count N`: N measured tiles per loadtest instead of a duration, for a busy machine where one
tile outlasts a short window.)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' process helper: a real gateway on loopback

from tests.support.gateway import start_gateway  # noqa: E402

from support import run_loadtest  # noqa: E402  (benchmarks/support.py)

SHIPPED = REPO / "model_repository" / "tsva" / "1" / "model.onnx"
# MODEL -> (file given to --model-path, --precision); any other MODEL is a path served as it is.
MODELS = {"fp32": (SHIPPED, "float32"), "int8": (SHIPPED, "int8"), "default": (SHIPPED, "auto")}


def parse_variants(text: str) -> list[tuple[str, Path, str, str, str]]:
    """'fp32:224/64,int8:tile' -> [(name, model file, precision, patch size, overlap), ...]; a model
    is fp32, int8, default or a path."""
    variants = []
    for item in text.split(","):
        model, _, plan = item.strip().partition(":")
        size, _, overlap = (plan or "224/64").partition("/")
        path, precision = MODELS.get(model, (Path(model), "float32"))
        variants.append((f"{model}:{size}/{overlap or '64'}", path, precision, size, overlap or "64"))
    return variants


def headline(report: dict) -> dict:
    """The measured level of a one-level `tsva loadtest --json` report."""
    gateway = report.get("gateway") or {}
    return {**{k: report.get(k) for k in ("throughput", "fused_mp_per_s", "p50", "p99", "error_count", "ok")},
            "gateway_cpu_percent": gateway.get("cpu_percent"), "gateway_rss_mb_peak": gateway.get("rss_mb_peak")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="fp32:224/64,default:auto/64",
                        help="MODEL:PATCH/OVERLAP, comma-separated; MODEL is fp32, int8, default or an ONNX path; "
                             "the first is the reference of the ratios (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default %(default)s)")
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds per loadtest")
    parser.add_argument("--count", type=int, default=0, help="measured tiles per loadtest instead of --duration")
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds of load before measuring")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--tile-size", default="1224x1024")
    parser.add_argument("--max-batch", type=int, default=16, help="gateway --max-batch (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args(argv)

    variants = parse_variants(args.variants)
    names = [name for name, *_ in variants]
    result = {"machine": f"{os.cpu_count()} cores", "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
              "tile_size": args.tile_size, "concurrency": args.concurrency, "window": args.window,
              "duration_s": None if args.count else args.duration, "count": args.count or None, "rounds": args.rounds, "variants": {}}
    runs: dict[str, list[dict]] = {name: [] for name in names}
    with contextlib.ExitStack() as stack:
        gateways = {}
        for name, path, precision, size, overlap in variants:
            if not path.is_file():
                raise SystemExit(f"{name}: {path} not found")
            gateways[name] = stack.enter_context(start_gateway(
                path, precision=precision, patch_size=size, patch_overlap=overlap, max_batch=args.max_batch,
                timeout=120))
        for round_ in range(args.rounds):
            for name, gateway in gateways.items():
                # A count of tiles rather than a duration on a busy machine, where one tile can
                # outlast a short window.
                report = run_loadtest(gateway.address, concurrency=args.concurrency, window=args.window,
                                      duration=args.duration, count=args.count, warmup=args.warmup,
                                      tile_size=args.tile_size, encoding="raw",
                                      gateway_pid=gateway.process.pid, timeout=3600)
                runs[name].append(headline(report))
                r = runs[name][-1]  # progress on stderr (a long run under load shows where it is)
                print(f"round {round_ + 1} {name:16s} {r['fused_mp_per_s']:.3f} MP/s  "
                      f"{r['throughput']:.3f} tiles/s  load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
    reference = statistics.median(r["fused_mp_per_s"] for r in runs[names[0]])
    for name, path, precision, size, overlap in variants:
        mp = statistics.median(r["fused_mp_per_s"] for r in runs[name])
        result["variants"][name] = {
            "model": str(path), "precision": precision, "patch_size": size, "patch_overlap": overlap,
            "fused_mp_per_s_median": round(mp, 3), "ratio_to_first": round(mp / reference, 3) if reference else None,
            "fused_mp_per_s_runs": [r["fused_mp_per_s"] for r in runs[name]],
            "p50_ms_runs": [r["p50"] for r in runs[name]],
            "gateway_cpu_percent_runs": [r["gateway_cpu_percent"] for r in runs[name]],
            "gateway_rss_mb_peak": max((r["gateway_rss_mb_peak"] or 0) for r in runs[name]), "errors": sum(r["error_count"] or 0 for r in runs[name])}
    result["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for name, r in result["variants"].items():
            print(f"{name:16s} {r['fused_mp_per_s_median']:.3f} MP/s (runs {r['fused_mp_per_s_runs']})  "
                  f"x{r['ratio_to_first']} of {names[0]}  errors {r['errors']}")
        print(f"load average before {' '.join(result['loadavg_before'])}, after {' '.join(result['loadavg_after'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
