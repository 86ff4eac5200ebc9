"""`tsva scan` figures: the client's memory and writing cost, and a simulated scan of the CMU-1 region.

  memory   replayed pairs (one pair of 1224x1024 PNG shots for every tile) through a gateway with a
           pointwise ONNX model (the client's cost is what is measured): peak RSS of the `tsva scan`
           process for a slide of ROWS x COLS tiles and one of 10x its area; the writer's CPU per MP.
  cmu      `tsva serve` with the shipped model + `tsva scan --simulate` of the CMU-1 region: tiles,
           wall time, MP/s, PSNR fused vs sharper shot, focus QC error.
  writer   the writer alone, in process: a grid of ROWS x COLS tiles of 1224x1024 (64-px overlap) cut
           from the CMU-1 region at 0.25 um/px (H&E; `--content noise`: random pixels, the worst case
           for compression) placed on a canvas, the pyramid built and both TIFFs written, with each
           compression and thread count: CPU-s per MP (process_time: all threads) and MP/s (wall).
           `--baseline REV` runs the writer of that commit (its canvas.py and writers.py, taken with
           `git show`) on the same tiles first, as the before (its run.py wrote the two files in two
           threads, each encoding its own tiles: listed as threads 2).

    .venv/bin/python benchmarks/scan_slide.py memory --json runs/scan_memory.json
    .venv/bin/python benchmarks/scan_slide.py cmu --json runs/scan_cmu.json
    .venv/bin/python benchmarks/scan_slide.py writer --baseline 1fdc504 --rounds 5 --json runs/scan_writer.json
Prints one JSON object (with the load average beside the figures).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CMU = ROOT.parent / "shared" / "data" / "he" / "cmu1_small_region_0.5um.png"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pointwise_model(path: Path) -> Path:
    """x = 0.75 y1 + 0.25 y2 in the model contract (float32 NCHW), with the shipped optics metadata."""
    import onnx
    from onnx import TensorProto, helper

    io = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 3, "H", "W"])  # noqa: E731
    w1 = helper.make_tensor("w1", TensorProto.FLOAT, [], [0.75])
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, [], [0.25])
    graph = helper.make_graph([helper.make_node("Mul", ["y1", "w1"], ["a"]), helper.make_node("Mul", ["y2", "w2"], ["b"]),
                               helper.make_node("Add", ["a", "b"], ["x"])], "pointwise", [io("y1"), io("y2")],
                              [io("x")], [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in {"model_name": "pointwise", "optics.numerical_aperture": "0.75", "optics.refractive_index": "1",
                       "optics.pixel_size_um": "0.25", "optics.wavelengths_um": "0.61,0.53,0.47",
                       "optics.defocus_um": "0.5,1,1.5,2,2.5,3", "optics.focus_sigma_um": "1",
                       "sample.thickness_um": "4", "sample.layers": "5"}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


@contextlib.contextmanager
def gateway(model: Path | None, *flags: str):
    from tsva.client.sdk import Client

    port = _port()
    args = [sys.executable, "-m", "tsva.server", "--host", "127.0.0.1", "--port", str(port), "--metrics-host",
            "127.0.0.1", "--metrics-port", str(_port()), *flags]
    if model is not None:
        args += ["--model-path", str(model)]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with Client(f"127.0.0.1:{port}") as client:
            client.wait_until_serving(timeout=120)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(60)


def run_scan(args: list[str]) -> tuple[dict, float]:
    """Runs `tsva scan ... --json`; (its summary, its peak RSS in MiB, from wait4's rusage)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen([sys.executable, "-m", "tsva.common.cli", "scan", *args, "--json", "--no-progress"],
                                   stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError(f"tsva scan failed ({process.returncode}): {stderr[-2000:]}")
    return json.loads(stdout.strip().splitlines()[-1]), usage.ru_maxrss / 1024


def replay_manifest(folder: Path, rows: int, cols: int, overlap: int = 64) -> Path:
    from PIL import Image
    from scipy import ndimage

    rng = np.random.default_rng(0)
    base = ndimage.gaussian_filter(rng.random((1024, 1224, 3)), (2, 2, 0))
    base = (255 * (base - base.min()) / np.ptp(base)).astype(np.uint8)
    Image.fromarray(ndimage.gaussian_filter(base, (1.5, 1.5, 0))).save(folder / "a.png")
    Image.fromarray(ndimage.gaussian_filter(base, (0.7, 0.7, 0))).save(folder / "b.png")
    lines = ["tile_id,x,y,shot_a,shot_b,defocus_a_um,defocus_b_um"]
    for r in range(rows):
        for c in range(cols):
            lines.append(f"r{r}c{c},{c * (1224 - overlap)},{r * (1024 - overlap)},a.png,b.png,-1,1")
    path = folder / f"manifest_{rows}x{cols}.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def memory(args) -> dict:
    out: dict = {"loadavg": open("/proc/loadavg").read().split()[:3]}
    with tempfile.TemporaryDirectory(prefix="tsva-scan-bench-") as tmp:
        tmp = Path(tmp)
        model = pointwise_model(tmp / "pointwise.onnx")
        with gateway(model, "--patch-size", "tile") as address:
            for label, rows in (("1x", args.rows), ("10x", 10 * args.rows)):
                manifest = replay_manifest(tmp, rows, args.cols)
                summary, peak = run_scan([str(manifest), "-o", str(tmp / label), "--server", address,
                                          "--window", str(args.window)])
                out[label] = {"tiles": summary["tiles"], "megapixels": round(summary["width"] * summary["height"] / 1e6, 1),
                              "peak_rss_mib": round(peak, 1), "wall_s": summary["wall_s"], "mp_per_s": summary["mp_per_s"],
                              "writer_cpu_s_per_mp": summary["writer_cpu_s_per_mp"],
                              "place_cpu_s_per_mp": summary["place_cpu_s_per_mp"]}
    out["rss_growth_mib"] = round(out["10x"]["peak_rss_mib"] - out["1x"]["peak_rss_mib"], 1)
    per_mp = out["10x"]["writer_cpu_s_per_mp"] + out["10x"]["place_cpu_s_per_mp"]
    out["writer_mp_per_cpu_s"] = round(1 / max(per_mp, 1e-9), 1)
    out["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
    return out


def cmu(args) -> dict:
    out: dict = {"loadavg": open("/proc/loadavg").read().split()[:3]}
    with tempfile.TemporaryDirectory(prefix="tsva-scan-cmu-") as tmp:
        with gateway(None) as address:  # the shipped model, embedded backend: `tsva serve` defaults
            scan_args = ["--simulate", str(args.image), "-o", str(args.out), "--server", address, "--dd", str(args.dd)]
            if args.max_tiles:
                scan_args += ["--max-tiles", str(args.max_tiles)]
            summary, peak = run_scan(scan_args)
    out.update(summary)
    out["peak_rss_mib"] = round(peak, 1)
    out["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
    return out


def _loadavg() -> list[str]:
    return open("/proc/loadavg").read().split()[:3]


def _baseline(rev: str, folder: Path):
    """The scan package's canvas.py and writers.py of commit `rev`, importable as one package."""
    import importlib

    package = folder / f"scan_{rev}"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("canvas", "writers"):
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:clients/tsva/client/scan/{name}.py"],
                                check=True, capture_output=True, text=True).stdout
        (package / f"{name}.py").write_text(source)
    sys.path.insert(0, str(folder))
    return importlib.import_module(f"{package.name}.canvas"), importlib.import_module(f"{package.name}.writers")


def _specimen_tiles(rows: int, cols: int, content: str):
    """(tiles, width, height): 1224x1024 crops of the CMU-1 region at 0.25 um/px on a 64-px-overlap grid."""
    from PIL import Image
    from tsva.client.scan.manifest import Tile

    w, h, overlap = 1224, 1024, 64
    width, height = cols * (w - overlap) + overlap, rows * (h - overlap) + overlap
    if content == "noise":
        specimen = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    else:
        image = Image.open(CMU).convert("RGB")
        image = np.asarray(image.resize((2 * image.width, 2 * image.height), Image.BILINEAR))  # 0.5 -> 0.25 um/px
        reps = (-(-height // image.shape[0]), -(-width // image.shape[1]), 1)
        specimen = np.tile(image, reps)[:height, :width]  # repeated where the grid is larger than the region
    tiles = [(Tile(r * cols + c + 1, f"r{r}c{c}", c * (w - overlap), r * (h - overlap), w, h),
              specimen[r * (h - overlap): r * (h - overlap) + h, c * (w - overlap): c * (w - overlap) + w])
             for r in range(rows) for c in range(cols)]
    return tiles, width, height


def _measure(function) -> tuple[float, float, float]:
    """(CPU seconds of all threads, wall seconds, CPU seconds of the calling thread: the serial part)."""
    cpu, wall, own = time.process_time(), time.perf_counter(), time.thread_time()
    function()
    return time.process_time() - cpu, time.perf_counter() - wall, time.thread_time() - own


def _writer_run(writers_module, canvas, stem: Path, compression: str, quality: int, threads: int):
    """What `tsva scan` does after the last tile, with one version's writer: the pyramid and both
    TIFFs; None where that version has no such compression. Three versions of the API are known:
    today's (write_slides builds the pyramid beside level 0's encoding), 1fdc504's (the pyramid built
    first, then write_slides with a codec), cda735e's (each file written by its own thread, each
    encoding its own tiles)."""
    ome, generic, smallest = stem.with_suffix(".ome.tif"), stem.with_suffix(".tif"), 2 * writers_module.TILE
    if not hasattr(writers_module, "codec_for"):  # cda735e
        if compression not in ("deflate", "jpeg", "none"):
            return None

        def write():
            canvas.build_pyramid(smallest)
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                jobs = [pool.submit(writers_module.write_ome_tiff, ome, canvas, 0.25, name="bench",
                                    description="bench", compression=compression, quality=quality),
                        pool.submit(writers_module.write_generic_tiff, generic, canvas, 0.25,
                                    description="bench", compression=compression, quality=quality)]
                for job in jobs:
                    job.result()
        return write if threads == 2 else None  # its two threads were fixed
    codec = writers_module.codec_for(compression, quality)
    if not hasattr(writers_module, "pyramid_beside"):  # 1fdc504
        def write():
            canvas.build_pyramid(smallest, threads)
            writers_module.write_slides(ome, generic, canvas, 0.25, name="bench", description="bench", codec=codec,
                                        threads=threads)
        return write
    return lambda: writers_module.write_slides(ome, generic, canvas, 0.25, name="bench", description="bench",
                                               codec=codec, threads=threads, build_pyramid_to=smallest)


def writer(args) -> dict:
    from tsva.client.scan import canvas as canvas_now
    from tsva.client.scan import writers as writers_now
    from tsva.client.scan.layout import Layout

    tiles, width, height = _specimen_tiles(args.rows, args.cols, args.content)
    mp, placed_mp = width * height / 1e6, sum(t.width * t.height for t, _ in tiles) / 1e6
    layout = Layout([t for t, _ in tiles])
    masks = [layout.owned(i) for i in range(len(tiles))]
    out: dict = {"content": args.content, "slide": f"{width}x{height}", "megapixels": round(mp, 2),
                 "cpus": writers_now.cpus(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="tsva-writer-bench-") as tmp:
        tmp = Path(tmp)
        versions = [("after", canvas_now, writers_now)]
        if args.baseline:
            versions.insert(0, ("before", *_baseline(args.baseline, tmp)))
        canvases = {}
        for label, canvas_module, _ in versions:
            canvas = canvases[label] = canvas_module.Canvas(tmp / f"work_{label}", width, height, 3, create=True)
            load = _loadavg()
            place_cpu, _, _ = _measure(lambda: [canvas.put(t.x, t.y, image, mask)
                                                for (t, image), mask in zip(tiles, masks)])
            out[label] = {"place_cpu_s_per_mp": round(place_cpu / placed_mp, 4), "loadavg": load}
        # Before and after alternate, each configuration `rounds` times: the medians are reported, so
        # a burst of load elsewhere moves one sample, not one side.
        for threads in args.threads:
            for compression in args.compressions:
                for label, _, writers_module in versions:
                    write = _writer_run(writers_module, canvases[label], tmp / label, compression, args.quality,
                                        threads)
                    if write is None:
                        continue
                    load, samples = _loadavg(), []
                    for _ in range(args.rounds):
                        samples.append(_measure(write))
                    cpu, wall, own = (float(np.median(column)) for column in zip(*samples))
                    ome = (tmp / label).with_suffix(".ome.tif")
                    out["runs"].append({
                        "code": label, "compression": compression, "threads": threads,
                        "writer_cpu_s_per_mp": round(cpu / mp, 4), "main_thread_cpu_s_per_mp": round(own / mp, 4),
                        "mp_per_cpu_s": round(mp / cpu, 1), "wall_mp_per_s": round(mp / wall, 1),
                        "wall_mp_per_s_each": [round(mp / w, 1) for _, w, _ in samples],
                        "file_mb": round(ome.stat().st_size / 1e6, 1), "loadavg": load})
                    print(json.dumps(out["runs"][-1]), file=sys.stderr)
        for canvas in canvases.values():
            canvas.remove()
    out["loadavg_after"] = _loadavg()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    m = sub.add_parser("memory")
    m.add_argument("--rows", type=int, default=2)
    m.add_argument("--cols", type=int, default=4)
    m.add_argument("--window", type=int, default=8)
    c = sub.add_parser("cmu")
    c.add_argument("--image", type=Path, default=CMU)
    c.add_argument("--out", type=Path, default=ROOT / "runs" / "scan_cmu")
    c.add_argument("--dd", type=float, default=1.0)
    c.add_argument("--max-tiles", type=int)
    w = sub.add_parser("writer")
    w.add_argument("--rows", type=int, default=12)
    w.add_argument("--cols", type=int, default=8)
    w.add_argument("--content", choices=("he", "noise"), default="he")
    w.add_argument("--compressions", nargs="+", default=["deflate", "zstd", "jpeg", "none"])
    w.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    w.add_argument("--quality", type=int, default=90)
    w.add_argument("--rounds", type=int, default=3, help="runs of each configuration (medians reported)")
    w.add_argument("--baseline", metavar="REV", help="also run the writer of this commit, first")
    for p in (m, c, w):
        p.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = {"memory": memory, "cmu": cmu, "writer": writer}[args.what](args)
    print(json.dumps(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
