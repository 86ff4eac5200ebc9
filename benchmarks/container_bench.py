"""The gateway image's figures under a real Docker engine (docs/performance.md, "Container image").

1. build:    `docker build --network none --no-cache` from the local base and a warm wheelhouse
             (the wheels already downloaded; no layer cache, so every step runs);
2. size:     the image's size as the engine reports it;
3. start-up: `docker run` to Docker's HEALTHCHECK reporting healthy, with the image's own probe
             settings (first probe after its 15 s interval) and with a 1 s interval (how soon the
             gateway itself is ready);
4. first tile: the first 1224x1024 RGB uint8 pair fused through the fresh container with the SDK
             (round trip as the client sees it), then the median of the next few.

Needs an engine (.ci/run starts one), the base image (scripts/base_image.sh) and the wheelhouse
(scripts/wheelhouse.sh). Prints one JSON object, with the machine's CPU, cores, memory and load.
    python benchmarks/container_bench.py [--base tsva-base:bookworm] [--tiles 3] [--no-build]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.docker_engine import Container, docker  # noqa: E402  (the tests' engine helpers)

IMAGE = "tsva-gateway:bench"


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    memory_kib = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory_kib / 2**20, 1),
            "loadavg": open("/proc/loadavg").read().split()[:3]}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pair(height: int = 1024, width: int = 1224, seed: int = 0):
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
    tile = Image.fromarray(small).resize((width, height), Image.BICUBIC)
    return [np.asarray(tile.filter(ImageFilter.GaussianBlur(s))) for s in (1.5, 2.5)]


def start(health_interval_s: float | None) -> tuple[Container, int, float]:
    """A fresh container (None: the image's own probe interval) and its seconds to healthy."""
    port, metrics_port = free_port(), free_port()
    env = {"TSVA_HOST": "127.0.0.1", "TSVA_PORT": str(port), "TSVA_METRICS_HOST": "127.0.0.1",
           "TSVA_METRICS_PORT": str(metrics_port), "TSVA_HEALTHCHECK_SERVER": f"127.0.0.1:{port}"}
    container = Container(env=env, image=IMAGE, name_prefix="tsva-bench", health_interval_s=health_interval_s)
    return container, port, container.wait_healthy(timeout_s=180)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="tsva-base:bookworm")
    parser.add_argument("--tiles", type=int, default=3, help="tiles after the first one")
    parser.add_argument("--no-build", action="store_true", help="measure the image already tagged")
    args = parser.parse_args()
    from tsva.client import Client

    out = {"machine_before": machine()}
    if not args.no_build:
        subprocess.run([ROOT / "scripts" / "wheelhouse.sh"], check=True, capture_output=True)
        t0 = time.monotonic()
        docker("build", "--network", "none", "--no-cache", "--build-arg", f"PYTHON_IMAGE={args.base}",
               "-t", IMAGE, str(ROOT), timeout=1800)
        out["build_s"] = round(time.monotonic() - t0, 1)
    else:
        docker("tag", "tsva-gateway:test", IMAGE)
    out["image_mb"] = round(int(docker("image", "inspect", IMAGE, "--format", "{{.Size}}").stdout) / 1e6, 1)

    container, _, healthy = start(None)
    out["healthy_s_image_probe"] = round(healthy, 1)
    container.close()
    container, port, healthy = start(1.0)
    out["healthy_s_1s_probe"] = round(healthy, 1)
    shot_a, shot_b = pair()
    try:
        with Client(f"127.0.0.1:{port}", timeout=300) as client:
            times = []
            for i in range(1 + args.tiles):
                t0 = time.monotonic()
                client.fuse(shot_a, shot_b, tile_id=f"t{i}")
                times.append(time.monotonic() - t0)
        out["first_tile_round_trip_s"] = round(times[0], 2)
        out["next_tiles_median_s"] = round(statistics.median(times[1:]), 2) if times[1:] else None
    finally:
        container.close()
    out["machine_after"] = machine()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
