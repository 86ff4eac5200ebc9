"""Gateway speed and memory, the three figures of issue 2 (results go into README "Performance").

1. overhead:  fused megapixels/s end to end (FuseTiles over gRPC on loopback to a gateway process)
              against the same backend (EmbeddedBackend, same model, same patches, same batch size)
              called directly in this process; target >= 85 %.
2. latency:   one 1224x1024 tile alone through Fuse, against the backend's own time for that
              tile's patches; target <= 1.2x.
3. memory:    32 concurrent streams each pushing 16 tiles of 1224x1024 as fast as they can; the
              gateway's peak RSS (VmHWM) must stay under 2 GB and every tile must be answered.

Runs are interleaved (direct, gateway, direct, ...) and medians reported, because this machine's
cores are shared. Usage:
    python benchmarks/gateway_bench.py [--model PATH] [--tiles 4] [--repeats 3] [--streams 32]
        [--stream-tiles 16] [--memory-model tiny|PATH] [--json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.gateway import channel_options, start_gateway  # noqa: E402
from tests.support.models import make_tiny_onnx  # noqa: E402
from tsva.common.images import encode_image  # noqa: E402
from tsva.server.backends.embedded import EmbeddedBackend  # noqa: E402
from tsva.server.config import DEFAULT_MODEL_PATH  # noqa: E402
from tsva.server.patching import PatchGrid, extract_patch, pad_to_canvas  # noqa: E402
from tsva.v1 import tsva_pb2 as pb  # noqa: E402
from tsva.v1 import tsva_pb2_grpc as pb_grpc  # noqa: E402

HEIGHT, WIDTH = 1024, 1224
PATCH, OVERLAP, BATCH = 224, 64, 16


def make_tile(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured 1224x1024 RGB pair (skimage's astronaut, shifted per seed; shot b dimmer)."""
    from skimage import data

    base = np.tile(data.astronaut(), (3, 3, 1))
    y, x = (seed * 37) % 400, (seed * 53) % 300
    a = np.ascontiguousarray(base[y:y + HEIGHT, x:x + WIDTH])
    return a, (a * 0.85).astype(np.uint8)


def request(i: int, tile) -> pb.FuseRequest:
    a, b = tile
    return pb.FuseRequest(tile_id=f"t{i}", shot_a=encode_image(a), shot_b=encode_image(b))


def direct_seconds(backend: EmbeddedBackend, tiles) -> float:
    """Backend time for the tiles' patches, in batches of BATCH, cut exactly as the gateway cuts."""
    grid = PatchGrid(HEIGHT, WIDTH, PATCH, OVERLAP)
    batches = []
    for a, b in tiles:
        ca, cb = pad_to_canvas(a, grid), pad_to_canvas(b, grid)
        y1 = np.empty((grid.count, 3, PATCH, PATCH), np.float32)
        y2 = np.empty_like(y1)
        for k, origin in enumerate(grid.origins):
            extract_patch(ca, origin, PATCH, 1 / 255, y1[k])
            extract_patch(cb, origin, PATCH, 1 / 255, y2[k])
        batches += [(y1[i:i + BATCH], y2[i:i + BATCH]) for i in range(0, grid.count, BATCH)]

    async def run():
        started = time.perf_counter()
        for y1, y2 in batches:
            await backend.infer(y1, y2)
        return time.perf_counter() - started

    return asyncio.run(run())


def stream_seconds(address: str, requests) -> float:
    with grpc.insecure_channel(address, options=channel_options()) as channel:
        stub = pb_grpc.VirtualAutofocusStub(channel)
        started = time.perf_counter()
        replies = list(stub.FuseTiles(iter(requests), timeout=3600))
        elapsed = time.perf_counter() - started
    errors = [r.error.message for r in replies if r.HasField("error")]
    assert len(replies) == len(requests) and not errors, errors[:3]
    return elapsed


def unary_seconds(address: str, req) -> float:
    with grpc.insecure_channel(address, options=channel_options()) as channel:
        stub = pb_grpc.VirtualAutofocusStub(channel)
        stub.GetInfo(pb.GetInfoRequest(), timeout=10)  # connection up before timing
        started = time.perf_counter()
        stub.Fuse(req, timeout=600)
        return time.perf_counter() - started


def rss_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


async def flood(address: str, streams: int, tiles_per_stream: int, tile) -> dict:
    """`streams` FuseTiles streams at once, each sending its tiles as fast as flow control allows."""
    a_img, b_img = encode_image(tile[0]), encode_image(tile[1])
    answered, errors = 0, 0

    async def one(s: int):
        nonlocal answered, errors
        def requests():
            for i in range(tiles_per_stream):
                yield pb.FuseRequest(tile_id=f"s{s}-t{i}", shot_a=a_img, shot_b=b_img)
        async for reply in stub.FuseTiles(requests(), timeout=3600):
            answered += 1
            errors += reply.HasField("error")

    async with grpc.aio.insecure_channel(address, options=channel_options()) as channel:
        stub = pb_grpc.VirtualAutofocusStub(channel)
        started = time.perf_counter()
        await asyncio.gather(*(one(s) for s in range(streams)))
        elapsed = time.perf_counter() - started
    return {"answered": answered, "errors": errors, "seconds": elapsed}


def speed(args, log) -> dict:
    """Figures 1 and 2, interleaved runs, medians."""
    results = {}
    tiles = [make_tile(i) for i in range(args.tiles)]
    requests = [request(i, t) for i, t in enumerate(tiles)]
    megapixels = args.tiles * WIDTH * HEIGHT / 1e6
    backend = EmbeddedBackend(args.model, max_batch_size=BATCH)
    asyncio.run(backend.start())
    direct_seconds(backend, tiles[:1])  # warm-up
    with start_gateway(args.model, patch_size=PATCH, patch_overlap=OVERLAP, max_batch=BATCH) as gw:
        unary_seconds(gw.address, requests[0])  # warm-up
        direct, through, single, single_direct = [], [], [], []
        for r in range(args.repeats):
            direct.append(direct_seconds(backend, tiles))
            through.append(stream_seconds(gw.address, requests))
            single_direct.append(direct_seconds(backend, tiles[:1]))
            single.append(unary_seconds(gw.address, requests[0]))
            log(f"repeat {r}: direct {direct[-1]:.2f}s gateway {through[-1]:.2f}s for {args.tiles} tiles; "
                f"one tile: backend {single_direct[-1]:.2f}s gateway {single[-1]:.2f}s")
        model_peak_rss = rss_kib(gw.process.pid)["VmHWM"] / 1024
    asyncio.run(backend.close())
    d, t = statistics.median(direct), statistics.median(through)
    results["overhead"] = {"direct_mpx_s": megapixels / d, "gateway_mpx_s": megapixels / t,
                           "ratio": d / t, "runs_direct_s": direct, "runs_gateway_s": through,
                           "gateway_peak_rss_mib": model_peak_rss}
    sd, s = statistics.median(single_direct), statistics.median(single)
    results["single_tile"] = {"backend_s": sd, "gateway_s": s, "ratio": s / sd,
                              "runs_backend_s": single_direct, "runs_gateway_s": single}

    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL_PATH), help="ONNX model for figures 1 and 2")
    parser.add_argument("--tiles", type=int, default=4, help="tiles per overhead run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--stream-tiles", type=int, default=16)
    parser.add_argument("--memory-model", default="tiny",
                        help="model for figure 3: 'tiny' (pointwise, so the gateway itself is the bottleneck "
                             "and 512 tiles finish in minutes on 2 cores) or a path")
    parser.add_argument("--memory-only", action="store_true", help="figure 3 only")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    results: dict = {"model": args.model, "tile": f"{WIDTH}x{HEIGHT} RGB uint8 RAW", "patch": PATCH,
                     "overlap": OVERLAP, "max_batch": BATCH}
    log = (lambda *a: print(*a, file=sys.stderr, flush=True))

    if not args.memory_only:
        results.update(speed(args, log))

    with tempfile.TemporaryDirectory() as tmp:
        memory_model = make_tiny_onnx(Path(tmp) / "tiny.onnx") if args.memory_model == "tiny" else args.memory_model
        with start_gateway(memory_model, patch_size=PATCH, patch_overlap=OVERLAP, max_batch=BATCH) as gw:
            idle = rss_kib(gw.process.pid)
            flood_result = asyncio.run(flood(gw.address, args.streams, args.stream_tiles, make_tile(0)))
            peak = rss_kib(gw.process.pid)
    results["memory"] = {"model": args.memory_model, "streams": args.streams, "tiles_per_stream": args.stream_tiles,
                         "idle_rss_mib": idle["VmRSS"] / 1024, "peak_rss_mib": peak["VmHWM"] / 1024,
                         **flood_result}

    if args.json:
        print(json.dumps(results, indent=2))
        return 0 if passed(results, args) else 1
    m = results["memory"]
    if "overhead" in results:
        o, st = results["overhead"], results["single_tile"]
        print(f"overhead: gateway {o['gateway_mpx_s']:.3f} MP/s vs backend direct {o['direct_mpx_s']:.3f} MP/s "
              f"= {100 * o['ratio']:.1f} % (target >= 85 %); gateway peak RSS {o['gateway_peak_rss_mib']:.0f} MiB")
        print(f"single tile: gateway {st['gateway_s']:.3f} s vs backend {st['backend_s']:.3f} s = "
              f"{st['ratio']:.3f}x (target <= 1.2x)")
    print(f"memory: {m['streams']} streams x {m['tiles_per_stream']} tiles: {m['answered']} answered, "
          f"{m['errors']} errors in {m['seconds']:.1f} s; gateway peak RSS {m['peak_rss_mib']:.0f} MiB "
          f"(idle {m['idle_rss_mib']:.0f} MiB; target < 2048 MiB)")
    return 0 if passed(results, args) else 1


def passed(results: dict, args) -> bool:
    m = results["memory"]
    ok = m["peak_rss_mib"] < 2048 and m["answered"] == args.streams * args.stream_tiles and m["errors"] == 0
    if "overhead" in results:
        ok = ok and results["overhead"]["ratio"] >= 0.85 and results["single_tile"]["ratio"] <= 1.2
    return ok


if __name__ == "__main__":
    sys.exit(main())
