"""Shared memory between the gateway and a real tritonserver on loopback (`--triton-shared-memory`).

- through system shared memory the gateway returns exactly the tiles it returns over gRPC, for
  tiles of several sizes in one stream (regions reused and grown); Triton has the gateway's regions
  registered while it runs, and they are unregistered and unlinked when it stops;
- a Triton that does not share /dev/shm with the gateway (its own /dev/shm in a private mount
  namespace, as two containers of a pod without a shared memory volume): registration fails, the
  gateway says so, counts it in tsva_triton_shm_fallbacks_total and sends the same tiles over gRPC;
- a restarted Triton has forgotten the registrations: the gateway registers again and goes on;
- `--workers 2`, one worker SIGKILLed: its regions leave /dev/shm, and the restarted worker
  unregisters them from Triton (which would otherwise keep them mapped).

The model is the pointwise tiny model (x = 0.75 y1 + 0.25 y2, clipped), so a swapped or misplaced
tensor changes the tile. Tiles are compared to 1 LSB: ONNX Runtime's float result of a patch can
differ in the last bit with its place in the batch, which flips a rounding now and then.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tsva.common.images import decode_image
from tsva.v1 import tsva_pb2_grpc as pb_grpc

from tests.support.gateway import start_gateway
from tests.support.metrics import metric
from tests.support.models import make_tiny_onnx
from tests.support.tiles import defocused_pair, fuse_request
from tests.support.triton_harness import TritonServer

pytestmark = pytest.mark.slow  # tritonserver and gateway processes

FLAGS = dict(backend="triton", patch_size=64, patch_overlap=16, max_batch=16, health_interval_s=0.5)
# Sizes with different patch counts, so batches of several sizes go through the regions.
SIZES = [(128, 128), (320, 448), (96, 96), (256, 192)]


class PrivateShmTriton(TritonServer):
    """tritonserver with its own, empty /dev/shm (a private mount namespace): it cannot open the
    gateway's regions, as a Triton container that does not share the gateway's /dev/shm."""

    def command(self) -> list[str]:
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount -t tmpfs -o size=256m tmpfs /dev/shm && exec "$@"', "sh", *super().command()]


def private_mounts_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs tmpfs /dev/shm"], capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_tiny_onnx(tmp_path_factory.mktemp("shm") / "tiny.onnx")


@pytest.fixture(scope="module")
def triton(model):
    with TritonServer(model) as server:
        yield server


@pytest.fixture(scope="module")
def expected(triton, model):
    """The tiles as the gateway fuses them over gRPC (shared memory off)."""
    with start_gateway(model, triton_urls=triton.url, triton_shared_memory="off", **FLAGS) as gw:
        tiles = fuse_all(gw, "ref")
        assert metric(gw.metrics_url, "tsva_triton_batches_total", transport="system") == 0
        return tiles


def pairs():
    return [defocused_pair(h, w, offset=11 * k) for k, (h, w) in enumerate(SIZES)]


def fuse_all(gw, prefix: str) -> list[np.ndarray]:
    """Every size twice, in one FuseTiles stream, window of several tiles (batches in flight at once)."""
    tiles = pairs()
    requests = [fuse_request(f"{prefix}-{i}", tiles[i % len(tiles)]) for i in range(2 * len(tiles))]
    with gw.channel() as channel:
        replies = {r.tile_id: r for r in pb_grpc.VirtualAutofocusStub(channel).FuseTiles(iter(requests), timeout=120)}
    assert sorted(replies) == sorted(r.tile_id for r in requests)
    out = []
    for i in range(len(tiles)):
        for reply in (replies[f"{prefix}-{i}"], replies[f"{prefix}-{i + len(tiles)}"]):
            assert not reply.HasField("error"), reply.error
        a, b = (decode_image(replies[f"{prefix}-{j}"].fused) for j in (i, i + len(tiles)))
        assert same_tile(a, b)
        out.append(a)
    return out


def same_tile(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal to 1 LSB, and 99 % of the values exactly (flips of a rounding sit along rows where
    patches overlap; a swapped or misplaced tensor changes most pixels by many LSB)."""
    diff = np.abs(a.astype(np.int64) - b.astype(np.int64))
    return a.shape == b.shape and diff.max() <= 1 and np.count_nonzero(diff) <= diff.size // 100


def registered_regions(url: str) -> list[str]:
    client = grpcclient.InferenceServerClient(url)
    try:
        status = client.get_system_shared_memory_status(as_json=True)
    finally:
        client.close()
    return sorted(region["name"] for region in status.get("regions", {}).values())


def test_shared_memory_gives_the_same_tiles_as_grpc(triton, model, expected):
    before = registered_regions(triton.url)
    with start_gateway(model, triton_urls=triton.url, triton_shared_memory="system", **FLAGS) as gw:
        got = fuse_all(gw, "shm")
        regions = [name for name in registered_regions(triton.url) if name not in before]
        assert regions and all(name.startswith(f"tsva_{gw.process.pid}_") for name in regions), regions
        assert all(Path("/dev/shm", name).exists() for name in regions)
        assert metric(gw.metrics_url, "tsva_triton_batches_total", transport="system") > 0
        assert metric(gw.metrics_url, "tsva_triton_batches_total", transport="grpc") == 0
        assert metric(gw.metrics_url, "tsva_triton_shm_fallbacks_total", reason="register") == 0
        assert gw.stop() == 0
    assert all(same_tile(ours, theirs) for ours, theirs in zip(got, expected))
    # Closed cleanly: Triton no longer knows the regions and /dev/shm no longer holds them.
    assert registered_regions(triton.url) == before
    assert not [name for name in regions if Path("/dev/shm", name).exists()]


def test_auto_uses_shared_memory_on_loopback(triton, model, expected):
    with start_gateway(model, triton_urls=triton.url, **FLAGS) as gw:  # the default: auto
        got = fuse_all(gw, "auto")
        assert metric(gw.metrics_url, "tsva_triton_batches_total", transport="system") > 0
        assert metric(gw.metrics_url, "tsva_triton_batches_total", transport="grpc") == 0
    assert all(same_tile(a, b) for a, b in zip(got, expected))


@pytest.mark.skipif(not private_mounts_work(), reason="needs unshare with mount rights (root) for a private /dev/shm")
def test_registration_failure_falls_back_to_grpc(model, expected):
    with PrivateShmTriton(model) as triton, \
            start_gateway(model, triton_urls=triton.url, triton_shared_memory="system", **FLAGS) as gw:
        got = fuse_all(gw, "fallback")
        # Once, or again after the endpoint rejoined (a probe that timed out on a busy machine).
        assert metric(gw.metrics_url, "tsva_triton_shm_fallbacks_total", reason="register") >= 1
        assert metric(gw.metrics_url, "tsva_triton_batches_total", transport="system") == 0
        assert metric(gw.metrics_url, "tsva_triton_batches_total", transport="grpc") > 0
        assert metric(gw.metrics_url, "tsva_tiles_total", outcome="ok") == 2 * len(SIZES)
        logs = gw.logs()
        assert "shared memory to Triton" in logs and "sending tensors over gRPC" in logs, logs[-3000:]
        assert registered_regions(triton.url) == []
    assert all(same_tile(ours, theirs) for ours, theirs in zip(got, expected))


def test_restarted_triton_is_registered_again(model, expected, tmp_path):
    triton = TritonServer(model, workdir=tmp_path)
    try:
        triton.start()
        with start_gateway(model, triton_urls=triton.url, triton_shared_memory="system", **FLAGS) as gw:
            assert all(same_tile(a, b) for a, b in zip(fuse_all(gw, "first"), expected))
            triton.kill()
            triton.start()  # same port, no registrations
            deadline = time.monotonic() + 30
            with gw.channel() as channel:  # until the gateway's probe has found it again
                stub = pb_grpc.VirtualAutofocusStub(channel)
                while list(stub.FuseTiles(iter([fuse_request("probe", pairs()[2])]), timeout=30))[0].HasField("error"):
                    assert time.monotonic() < deadline, "the restarted Triton was not found again"
                    time.sleep(0.2)
            got = fuse_all(gw, "again")
            assert all(same_tile(a, b) for a, b in zip(got, expected))
            assert registered_regions(triton.url), "the gateway did not register its regions again"
            assert metric(gw.metrics_url, "tsva_triton_batches_total", transport="grpc") == 0
            assert metric(gw.metrics_url, "tsva_tiles_total", outcome="ok") == 4 * len(SIZES) + 1
    finally:
        triton.close()


def test_killed_workers_regions_are_unregistered(triton, model, expected):
    from tests.support.workers import fuse_on_new_connection, wait_for_workers

    pair = pairs()[1]
    with start_gateway(model, triton_urls=triton.url, triton_shared_memory="system", workers=2, **FLAGS) as gw:
        pids = wait_for_workers(gw, 2)
        for i in range(12):  # connections of their own: both workers get batches
            fuse_on_new_connection(gw.address, f"w{i}", pair)
        owners = {int(name.split("_")[1]) for name in registered_regions(triton.url)}
        assert owners == set(pids), (owners, pids)
        victim = pids[0]
        os.kill(victim, signal.SIGKILL)
        new = wait_for_workers(gw, 2, not_in=[victim])
        deadline = time.monotonic() + 30
        while victim in {int(name.split("_")[1]) for name in registered_regions(triton.url)}:
            assert time.monotonic() < deadline, f"regions of the killed worker still registered: {registered_regions(triton.url)}"
            fuse_on_new_connection(gw.address, "again", pair)
        assert not list(Path("/dev/shm").glob(f"tsva_{victim}_*"))
        got = decode_image(fuse_on_new_connection(gw.address, "last", pair).fused)
        assert same_tile(got, expected[1])
        assert set(new) >= {p for p in pids if p != victim}
    assert not [name for name in registered_regions(triton.url) if name.startswith("tsva_")]


def _cuda_python_present() -> bool:
    try:
        from cuda import cudart  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(_cuda_python_present(), reason="cuda-python is installed: CUDA regions could be created here")
def test_cuda_without_a_gpu_falls_back_to_grpc(triton, model, expected):
    """No GPU and no cuda-python on this machine: CUDA regions cannot be created, which the gateway
    says once (reason create) before it sends every batch over gRPC. The CUDA path itself needs a GPU
    and is not run by this suite."""
    with start_gateway(model, triton_urls=triton.url, triton_shared_memory="cuda", **FLAGS) as gw:
        got = fuse_all(gw, "cuda")
        assert metric(gw.metrics_url, "tsva_triton_shm_fallbacks_total", reason="create") == 1
        assert metric(gw.metrics_url, "tsva_triton_batches_total", transport="cuda") == 0
        assert metric(gw.metrics_url, "tsva_triton_batches_total", transport="grpc") > 0
        assert "CUDA shared memory unavailable" in gw.logs()
    assert all(same_tile(ours, theirs) for ours, theirs in zip(got, expected))
