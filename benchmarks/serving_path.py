"""The gateway's serving path with a model that costs nothing: gateway CPU per fused megapixel and
bytes per fused pixel between gateway and backend, for the float32 patch path (before) against the
pixel-typed whole-tile path (after), in one run.

An identity ONNX model (output = input y1) is made in both contracts (float32 NCHW; uint8 NHWC),
each is served by `tsva serve` on loopback (embedded backend, --max-batch 48) and loaded with

    tsva loadtest --concurrency 4 --window 2 --encoding raw --gateway-pid PID   (1224x1024 RGB uint8)

- gateway CPU ms per fused MP = gateway CPU seconds / fused megapixels answered (loadtest samples
  the process's CPU from /proc during the measured level), target <= 10 on the pixel-typed path;
- bytes per fused pixel = model tensor bytes the gateway sent to and received from the backend
  (tsva_backend_tensor_bytes_total, both directions) / fused pixels (tsva_fused_pixels_total),
  target <= 9.

`--model shipped` serves the shipped network instead (its pixel-typed form for the uint8 paths):
that is how the CPU plan (224-px patches vs whole tiles) was chosen.

`--baseline REV` also serves every path with the gateway of commit REV (its common/, server/ and
clients/ sources on PYTHONPATH, the same loader), just before the current code: before and after
in one run.

The machine's load average is printed beside the figures: on shared cores compare the paths
within one run. Usage:
    python benchmarks/serving_path.py [--duration 15] [--warmup 3] [--json] [--baseline REV]
        [--paths float32-patch,float32-tile,uint8-tile,uint8-patch] [--model identity|shipped]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.gateway import free_port, start_gateway  # noqa: E402

from support import run_loadtest  # noqa: E402  (benchmarks/support.py)

PATHS = {
    # name: (model I/O, --patch-size)
    "float32-patch": ("float32", "224"),
    "float32-tile": ("float32", "tile"),
    "uint8-tile": ("uint8", "tile"),
    "uint8-patch": ("uint8", "224"),
    # Not the gateway: grpc_floor_server.py, which only parses requests and echoes shot_a (no
    # Brenner, no backend): what grpcio and protobuf alone cost per fused megapixel here.
    "grpc-floor": (None, None),
}
DEFAULT_PATHS = "float32-patch,uint8-tile"
TARGET_MS_PER_MP, TARGET_BYTES_PER_PIXEL = 10.0, 9.0


def identity_model(path: Path, io: str) -> Path:
    """x = y1 in the float32 NCHW contract or the uint8 NHWC one (which takes any tile size:
    io.size_multiple 1, like a pixel-typed export that pads inside its graph)."""
    import onnx
    from onnx import TensorProto, helper

    elem = {"float32": TensorProto.FLOAT, "uint8": TensorProto.UINT8}[io]
    shape = ["batch", 3, "height", "width"] if io == "float32" else ["batch", "height", "width", 3]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["y1"], ["x"])], f"identity_{io}",
        [helper.make_tensor_value_info(n, elem, shape) for n in ("y1", "y2")],
        [helper.make_tensor_value_info("x", elem, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in {"model_name": f"identity_{io}", "model_version": "1",
                       **({"io.size_multiple": "1"} if io != "float32" else {})}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def scrape(metrics_url: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    values = {"bytes": 0.0, "pixels": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "tsva_backend_tensor_bytes_total":
                values["bytes"] += sample.value
            elif sample.name == "tsva_fused_pixels_total":
                values["pixels"] += sample.value
    return values


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def baseline_sources(rev: str, folder: Path) -> str:
    """PYTHONPATH serving the gateway of commit `rev`: its three source trees, unpacked in `folder`."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "common", "server", "clients"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return os.pathsep.join(str(folder / part) for part in ("server", "common", "clients"))


def load(address: str, pid: int, args) -> dict:
    """The benchmark's load (4 streams, window 2, RAW 1224x1024) on `address`, CPU of process `pid`."""
    return run_loadtest(address, concurrency=4, window=2, duration=args.duration, warmup=args.warmup,
                        encoding="raw", gateway_pid=pid, timeout=args.duration + args.warmup + 120)


def row(name: str, patch_size: str, report: dict, load_before: str, bytes_per_pixel: float | None) -> dict:
    """One path's figures from its loadtest report."""
    gateway = report.get("gateway") or {}
    cpu_percent, mp_per_s = gateway.get("cpu_percent"), report["fused_mp_per_s"]
    return {
        "path": name, "patch_size": patch_size, "model_io": PATHS[name][0] or "-",
        "tiles_per_s": report["throughput"], "fused_mp_per_s": mp_per_s,
        "gateway_cpu_percent": cpu_percent,
        "gateway_cpu_ms_per_mp": round(10.0 * cpu_percent / mp_per_s, 2) if cpu_percent and mp_per_s else None,
        "bytes_per_fused_pixel": bytes_per_pixel,
        "p50_ms": report["p50"], "errors": report["error_count"], "ok": report["ok"],
        "rss_mb_peak": gateway.get("rss_mb_peak"), "loadavg_before": load_before, "loadavg_after": loadavg(),
    }


def measure_floor(args) -> dict:
    """grpc_floor_server.py under the same load: the gRPC + protobuf share of the gateway's CPU."""
    port = free_port()
    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("grpc_floor_server.py")), str(port)],
                              stdout=subprocess.PIPE, text=True)
    try:
        pid = int(server.stdout.readline().split()[1])
        load_before = loadavg()
        report = load(f"127.0.0.1:{port}", pid, args)
    finally:
        server.terminate()
        server.wait(10)
    return row("grpc-floor", "-", report, load_before, None)


def measure(name: str, model: Path, patch_size: str, args, pythonpath: str | None = None) -> dict:
    env = {"PYTHONPATH": pythonpath} if pythonpath else None
    with start_gateway(model, patch_size=patch_size, patch_overlap=64, max_batch=48, env=env) as gw:
        before = scrape(gw.metrics_url)
        load_before = loadavg()
        report = load(gw.address, gw.process.pid, args)
        after = scrape(gw.metrics_url)
    pixels = after["pixels"] - before["pixels"]
    return row(name, patch_size, report, load_before,
               round((after["bytes"] - before["bytes"]) / pixels, 2) if pixels else None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per path")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--paths", default=DEFAULT_PATHS, help=f"comma-separated, of {', '.join(PATHS)}")
    parser.add_argument("--model", choices=("identity", "shipped"), default="identity",
                        help="identity: output = y1 (the gateway's own cost); shipped: the shipped network")
    parser.add_argument("--baseline", metavar="REV", help="also serve each path with the gateway of this commit, first")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = [n.strip() for n in args.paths.split(",") if n.strip()]
    unknown = [n for n in names if n not in PATHS]
    if unknown:
        parser.error(f"--paths: unknown {', '.join(unknown)}")
    results = []
    with tempfile.TemporaryDirectory(prefix="tsva-serving-path-") as tmp:
        if args.model == "identity":
            models = {io: identity_model(Path(tmp) / f"identity_{io}.onnx", io) for io in ("float32", "uint8")}
        else:
            from tsva.export.pixel_io import write_pixel_model
            from tsva.server.config import DEFAULT_MODEL_PATH

            models = {"float32": Path(DEFAULT_MODEL_PATH),
                      "uint8": write_pixel_model(DEFAULT_MODEL_PATH, Path(tmp) / "shipped_uint8.onnx", "uint8")}
        versions = [("", None)]
        if args.baseline:
            old = Path(tmp) / "baseline"
            old.mkdir()
            versions.insert(0, (f"{args.baseline} ", baseline_sources(args.baseline, old)))
        for name in names:
            io, patch = PATHS[name]
            if name == "grpc-floor":
                results.append({"code": "current", **measure_floor(args)})
                r = results[-1]
                if not args.json:
                    print(f"{name:14s} (parse + echo only): {r['fused_mp_per_s']:6.2f} MP/s, CPU "
                          f"{r['gateway_cpu_percent']} % = {r['gateway_cpu_ms_per_mp']} ms/MP", flush=True)
                continue
            for label, pythonpath in versions:
                results.append({"code": label.strip() or "current",
                                **measure(name, models[io], patch, args, pythonpath)})
                if args.json:
                    continue
                r = results[-1]
                print(f"{label}{name:14s} patch {patch:>4s}: {r['fused_mp_per_s']:6.2f} MP/s, gateway CPU "
                      f"{r['gateway_cpu_percent']} % = {r['gateway_cpu_ms_per_mp']} ms/MP, "
                      f"{r['bytes_per_fused_pixel']} bytes/fused px to+from the backend, p50 {r['p50_ms']} ms, "
                      f"{r['errors']} errors (load {r['loadavg_before']} -> {r['loadavg_after']})", flush=True)
    summary = {"model": args.model, "paths": results, "targets": {"gateway_cpu_ms_per_mp": TARGET_MS_PER_MP,
                                             "bytes_per_fused_pixel": TARGET_BYTES_PER_PIXEL}}
    by = {r["path"]: r for r in results if r["code"] == "current"}
    if "float32-patch" in by and "uint8-tile" in by:
        before, after = by["float32-patch"], by["uint8-tile"]
        summary["cpu_ratio"] = (round(before["gateway_cpu_ms_per_mp"] / after["gateway_cpu_ms_per_mp"], 2)
                                if before["gateway_cpu_ms_per_mp"] and after["gateway_cpu_ms_per_mp"] else None)
        if not args.json:
            print(f"pixel-typed whole tiles vs float32 patches: gateway CPU {before['gateway_cpu_ms_per_mp']} -> "
                  f"{after['gateway_cpu_ms_per_mp']} ms/MP (target <= {TARGET_MS_PER_MP:g}), "
                  f"{before['bytes_per_fused_pixel']} -> {after['bytes_per_fused_pixel']} bytes/fused px "
                  f"(target <= {TARGET_BYTES_PER_PIXEL:g})")
    if args.baseline:
        for name in (n for n in names if n != "grpc-floor"):
            old, new = (next(r for r in results if r["path"] == name and r["code"] == code)
                        for code in (args.baseline, "current"))
            summary.setdefault("against_baseline", {})[name] = {
                "gateway_cpu_ms_per_mp": [old["gateway_cpu_ms_per_mp"], new["gateway_cpu_ms_per_mp"]],
                "fused_mp_per_s": [old["fused_mp_per_s"], new["fused_mp_per_s"]]}
            if not args.json:
                print(f"{name}: {args.baseline} -> current: gateway CPU {old['gateway_cpu_ms_per_mp']} -> "
                      f"{new['gateway_cpu_ms_per_mp']} ms/MP, {old['fused_mp_per_s']} -> {new['fused_mp_per_s']} MP/s")
    if args.json:
        print(json.dumps(summary, indent=1))
    return 0 if all(r["errors"] == 0 and r["ok"] > 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
