"""The CPU patch plan: the shipped network through ONNX Runtime on CPU, one 1224x1024 tile as
224-px patches with 64 px overlap (48 patches, batches of 16, the gateway's CPU default) against the
same tile whole (padded to 1232x1024, one batch of 1), interleaved in one process.

Prints the median seconds per tile and fused MP/s of each plan, the pixels the network computes
per tile pixel, and the process's peak RSS after each plan (VmHWM: the whole tile's activations
are what costs memory). Usage:
    python benchmarks/cpu_plan.py [--repeats 3] [--threads 0] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from tsva.server.config import CPU_PATCH_SIZE, DEFAULT_MODEL_PATH
from tsva.common.contract import FLOAT32_CONTRACT
from tsva.server.patching import PatchGrid, pad_to_canvas

HEIGHT, WIDTH, OVERLAP, BATCH = 1024, 1224, 64, 16


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def patch_batches(tile: np.ndarray):
    grid = PatchGrid(HEIGHT, WIDTH, CPU_PATCH_SIZE, OVERLAP)
    canvas = pad_to_canvas(tile, grid)
    items = np.empty((grid.count, *FLOAT32_CONTRACT.item_shape(CPU_PATCH_SIZE, CPU_PATCH_SIZE)), np.float32)
    p = CPU_PATCH_SIZE
    for k, (y, x) in enumerate(grid.origins):
        FLOAT32_CONTRACT.write_item(canvas[y:y + p, x:x + p], items[k])
    return [items[i:i + BATCH] for i in range(0, grid.count, BATCH)], grid.count * p * p


def whole_batch(tile: np.ndarray):
    h, w = FLOAT32_CONTRACT.canvas_size(HEIGHT, WIDTH)
    item = np.empty((1, *FLOAT32_CONTRACT.item_shape(h, w)), np.float32)
    FLOAT32_CONTRACT.write_padded_item(tile, item[0])
    return [item], h * w


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: all cores)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    options = ort.SessionOptions()
    if args.threads:
        options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(str(DEFAULT_MODEL_PATH), options, providers=["CPUExecutionProvider"])
    tile = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    plans = {"patch_224": patch_batches(tile), "whole_tile": whole_batch(tile)}
    seconds = {name: [] for name in plans}
    rss = {}
    load = Path("/proc/loadavg").read_text().split()[:3]
    for repeat in range(args.repeats + 1):  # the first round warms up
        for name, (batches, _) in plans.items():
            started = time.perf_counter()
            for batch in batches:
                session.run(["x"], {"y1": batch, "y2": batch})
            if repeat:
                seconds[name].append(time.perf_counter() - started)
            rss[name] = peak_rss_mb()
    result = {"load_average": " ".join(load), "tile": f"{WIDTH}x{HEIGHT}", "plans": {}}
    for name, (_, computed) in plans.items():
        median = statistics.median(seconds[name])
        result["plans"][name] = {"seconds_per_tile": round(median, 3),
                                 "fused_mp_per_s": round(HEIGHT * WIDTH / 1e6 / median, 3),
                                 "computed_per_tile_pixel": round(computed / (HEIGHT * WIDTH), 3),
                                 "peak_rss_mb_after": round(rss[name], 1)}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for name, r in result["plans"].items():
            print(f"{name:10s} {r['seconds_per_tile']:6.3f} s/tile  {r['fused_mp_per_s']:5.3f} MP/s  computes "
                  f"{r['computed_per_tile_pixel']}x the tile's pixels  peak RSS {r['peak_rss_mb_after']} MB")
        print(f"load average at start: {result['load_average']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
