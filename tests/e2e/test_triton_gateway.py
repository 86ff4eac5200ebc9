"""`tsva serve --backend triton` end to end: a real gateway process in front of real tritonserver
processes on loopback, serving the shipped model (model_repository/tsva/1/model.onnx) through the
CPU model of the repository (see triton_harness.py).

- a 1224x1024 pair fuses the same through Triton as through the embedded backend, and Triton's
  own metrics count the patches;
- two Tritons, one SIGKILLed while 8 streams push 20 tiles each: every tile is answered exactly
  once and correctly; the killed one, restarted, takes work again;
- all Tritons down: NOT_SERVING and UNAVAILABLE answers; recovery without a gateway restart.
"""
from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from tsva.common.images import decode_image
from tsva.server.patching import PatchGrid
from tsva.v1 import tsva_pb2 as pb
from tsva.v1 import tsva_pb2_grpc as pb_grpc

from tests.support.gateway import start_gateway, wait_for_health
from tests.support.metrics import metric
from tests.support.tiles import defocused_pair, fuse_request
from tests.support.triton_harness import SHIPPED_ONNX, TritonServer, metric_value, wait_for_metric

pytestmark = pytest.mark.slow  # tritonserver and gateway processes

SMALL_PATCH = dict(patch_size=64, patch_overlap=16)  # keeps CPU inference of the real model short
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING


def triton_inferences(servers, model="tsva") -> float:
    return sum(metric_value(s.metrics(), "nv_inference_count", model) for s in servers)


@pytest.fixture(scope="module")
def tritons():
    a, b = TritonServer(SHIPPED_ONNX), TritonServer(SHIPPED_ONNX)
    try:
        a.start(wait=False), b.start(wait=False)  # start both at once, then wait for both
        a.wait_ready(), b.wait_ready()
        yield a, b
    finally:
        a.close()
        b.close()


@pytest.fixture(scope="module")
def triton_gateway(tritons):
    a, b = tritons
    with start_gateway(backend="triton", triton_urls=f"{a.url},{b.url}", max_batch=16,
                       health_interval_s=0.5, **SMALL_PATCH) as gateway:
        yield gateway


def test_same_tile_as_embedded_backend(tritons):
    """Same ONNX file, same gateway settings (224-px patches, 64 px overlap: the plan of the shipped
    Triton config's TensorRT profile, named for the embedded gateway too): only the backend differs. Compared: the fused 16-bit RAW tiles. A float difference d becomes at most
    ceil(d * 65535) + 1 LSB after rounding, so 'max abs diff <= 1e-4' means <= 7 LSB here."""
    pair = defocused_pair(1024, 1224, dtype=np.uint16)
    request = fuse_request("big", pair)
    grid = PatchGrid(1024, 1224, 224, 64)
    before = triton_inferences(tritons)
    a, b = tritons
    plan = dict(patch_size=224, patch_overlap=64)
    # The embedded reference runs the float file that Triton serves, not its int8 form.
    with start_gateway(SHIPPED_ONNX, backend="embedded", precision="float32", **plan) as embedded, \
            start_gateway(backend="triton", triton_urls=f"{a.url},{b.url}", **plan) as via_triton:
        with embedded.channel() as ch1, via_triton.channel() as ch2:
            reference = pb_grpc.VirtualAutofocusStub(ch1).Fuse(request, timeout=120)
            stub = pb_grpc.VirtualAutofocusStub(ch2)
            fused = stub.Fuse(request, timeout=120)
            info = stub.GetInfo(pb.GetInfoRequest(), timeout=10)
    assert info.backend == "triton" and info.model_name == "tsva"
    ours, theirs = decode_image(fused.fused), decode_image(reference.fused)
    assert ours.shape == theirs.shape == (1024, 1224, 3) and ours.dtype == np.uint16
    diff = np.abs(ours.astype(np.int64) - theirs.astype(np.int64)).max()
    assert diff <= 7, f"max abs difference {diff} LSB of 16 bits ({diff / 65535:.2e})"
    assert fused.y1_shot == reference.y1_shot
    # Triton's own metrics port counts every patch of the tile (48 at 224/64 on 1224x1024).
    assert grid.count == 48
    assert wait_for_metric(lambda: triton_inferences(tritons), before + grid.count) == before + grid.count


def test_failover_when_one_triton_is_killed(tritons, triton_gateway):
    a, b = tritons
    tiles = [defocused_pair(128, 128, offset=37 * k) for k in range(8)]
    streams, per_stream = 8, 20
    with triton_gateway.channel() as channel:
        stub = pb_grpc.VirtualAutofocusStub(channel)
        # The right answer of each distinct tile, while both Tritons are up.
        expected = [decode_image(stub.Fuse(fuse_request(f"ref-{k}", t), timeout=60).fused)
                    for k, t in enumerate(tiles)]
        replies: dict[int, list[pb.FuseResponse]] = {s: [] for s in range(streams)}
        errors: list[BaseException] = []
        answered = threading.Semaphore(0)

        def push(s: int) -> None:
            requests = (fuse_request(f"s{s}-t{i}", tiles[(s + i) % len(tiles)]) for i in range(per_stream))
            try:
                for reply in stub.FuseTiles(requests, timeout=180):
                    replies[s].append(reply)
                    answered.release()
            except BaseException as exc:  # reported below: a broken stream fails the test
                errors.append(exc)

        a_before = metric_value(a.metrics(), "nv_inference_request_success", "tsva")
        threads = [threading.Thread(target=push, args=(s,)) for s in range(streams)]
        for t in threads:
            t.start()
        for _ in range(streams * per_stream // 4):  # a quarter of the tiles answered
            assert answered.acquire(timeout=120), "no progress before the kill"
        a_served = metric_value(a.metrics(), "nv_inference_request_success", "tsva") - a_before
        a.kill()  # SIGKILL, server and Python stubs together
        answered_at_kill = sum(len(r) for r in replies.values())
        b_before = metric_value(b.metrics(), "nv_inference_count", "tsva")
        for t in threads:
            t.join(180)
        assert not errors, errors
        assert a_served > 0, "the killed Triton had not been given any work"
        assert answered_at_kill < streams * per_stream, "the kill came after the last tile"

        for s, got in replies.items():
            ids = [r.tile_id for r in got]
            assert sorted(ids) == sorted(f"s{s}-t{i}" for i in range(per_stream)), f"stream {s}: {ids}"
            for reply in got:
                assert not reply.HasField("error"), reply.error
                i = int(reply.tile_id.split("-t")[1])
                diff = np.abs(decode_image(reply.fused).astype(int) - expected[(s + i) % len(tiles)]).max()
                assert diff <= 1, f"{reply.tile_id} differs by {diff}"
        # Everything after the kill was served by the survivor.
        assert metric_value(b.metrics(), "nv_inference_count", "tsva") > b_before

        # The restarted Triton (same address) is found again and takes work.
        a.start()
        a_base = metric_value(a.metrics(), "nv_inference_request_success", "tsva")  # its warm-up
        deadline = time.monotonic() + 30
        while metric_value(a.metrics(), "nv_inference_request_success", "tsva") == a_base:
            assert time.monotonic() < deadline, "the restarted Triton got no work"
            got = list(stub.FuseTiles((fuse_request(f"again-{i}", tiles[i % 8]) for i in range(8)), timeout=60))
            assert sorted(r.tile_id for r in got) == [f"again-{i}" for i in range(8)]
            for r in got:
                assert not r.HasField("error") and np.abs(
                    decode_image(r.fused).astype(int) - expected[int(r.tile_id.split("-")[1]) % 8]).max() <= 1


def test_all_tritons_down_then_back(tritons, triton_gateway):
    a, b = tritons
    pair = defocused_pair(96, 96)
    for server in (a, b):
        if server.process is None or server.process.poll() is not None:
            server.start()
    wait_for_health(triton_gateway.address, SERVING, timeout=30)
    a.kill(), b.kill()
    wait_for_health(triton_gateway.address, NOT_SERVING, timeout=15)
    assert metric(triton_gateway.metrics_url, "tsva_backend_up") == 0.0
    with triton_gateway.channel() as channel:
        stub = pb_grpc.VirtualAutofocusStub(channel)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as failure:
            stub.Fuse(fuse_request("down-unary", pair), timeout=60)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < 10, "UNAVAILABLE must come at once, not after the deadline"
        replies = list(stub.FuseTiles((fuse_request(f"down-{i}", pair) for i in range(3)), timeout=60))
        assert sorted(r.tile_id for r in replies) == ["down-0", "down-1", "down-2"]
        for reply in replies:
            assert reply.error.status == "UNAVAILABLE" and "down-" in reply.error.message

        b.start()  # one Triton back is enough; the gateway is not restarted
        wait_for_health(triton_gateway.address, SERVING, timeout=30)
        assert metric(triton_gateway.metrics_url, "tsva_backend_up") == 1.0
        fused = stub.Fuse(fuse_request("back", pair), timeout=60)
        assert decode_image(fused.fused).shape == (96, 96, 3)
