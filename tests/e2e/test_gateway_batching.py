"""Micro-batcher behaviour seen from outside, over real gRPC to a gateway process: batches span
streams, the bounded queue holds (backpressure) instead of growing, and cancelled or expired work
leaves the queue (tsva_queue_depth back to 0 on the metrics endpoint) and is never run.

A random-weight U-Net (conftest.make_unet_onnx) makes the backend slow enough on this CPU for work
to queue up."""
import threading
import time

import grpc
import numpy as np
import pytest
from skimage import data
from tsva.common.images import encode_image
from tsva.v1 import tsva_pb2 as pb
from tsva.v1 import tsva_pb2_grpc as pb_grpc

from tests.support.gateway import start_gateway
from tests.support.metrics import metric, read_metrics
from tests.support.models import make_unet_onnx

pytestmark = pytest.mark.slow
TEXTURE = np.tile(data.astronaut(), (2, 2, 1))  # 1024x1024 RGB


def tile_request(tile_id: str, size: int = 1024) -> pb.FuseRequest:
    a = TEXTURE[:size, :size]
    return pb.FuseRequest(tile_id=tile_id, shot_a=encode_image(a), shot_b=encode_image((a * 0.8).astype(np.uint8)))


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module")
def slow_gateway(tmp_path_factory):
    model = make_unet_onnx(tmp_path_factory.mktemp("unet") / "unet.onnx")
    # The CPU patch plan (224-px patches, 64-px overlap; `auto` sends whole tiles): these tests are
    # about patches of many tiles sharing a bounded queue.
    with start_gateway(model, max_batch=4, queue_size=64, stream_window=4, max_inflight_tiles=4,
                       max_delay_ms=2, patch_size=224, patch_overlap=64) as gw:
        yield gw


def batches_run(url: str) -> float:
    return metric(url, "tsva_backend_batch_size_count")


def batches_when_idle(url: str, quiet_s: float = 1.0, timeout: float = 30.0) -> float:
    """The batch count once no batch has finished for `quiet_s`."""
    deadline = time.monotonic() + timeout
    count = batches_run(url)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = batches_run(url)
        if now == count:
            return count
        count = now
    raise AssertionError(f"the backend was still running batches after {timeout}s")


def test_cancelled_stream_frees_its_queue(slow_gateway):
    url = slow_gateway.metrics_url
    with slow_gateway.channel() as channel:
        stub = pb_grpc.VirtualAutofocusStub(channel)
        call = stub.FuseTiles(iter([tile_request(f"c{i}") for i in range(4)]), timeout=120)
        wait_for(lambda: metric(url, "tsva_queue_depth") > 0, 30, "patches to queue up")
        call.cancel()
        wait_for(lambda: metric(url, "tsva_queue_depth") == 0 and metric(url, "tsva_inflight_tiles") == 0,
                 10, "queue depth and in-flight tiles back to 0")
        at_cancel = batches_run(url)
        settled = batches_when_idle(url)
        # Only the batches already cut for the backend (at most 2) ran after the cancel, far short
        # of the ~36 batches all 4 tiles (4 x 36 patches) need.
        assert settled <= at_cancel + 2 and settled < 36
        assert metric(url, "tsva_tiles_total", outcome="cancelled") >= 1
        assert metric(url, "tsva_inflight_streams") == 0
        # and the gateway still serves
        reply = stub.Fuse(tile_request("after", 256), timeout=60)
        assert reply.fused.width == 256


def test_deadline_frees_queued_work(slow_gateway):
    url = slow_gateway.metrics_url
    with slow_gateway.channel() as channel:
        stub = pb_grpc.VirtualAutofocusStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Fuse(tile_request("late"), timeout=0.3)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        wait_for(lambda: metric(url, "tsva_queue_depth") == 0 and metric(url, "tsva_inflight_tiles") == 0,
                 10, "queue depth back to 0 after the deadline")
        wait_for(lambda: metric(url, "tsva_tiles_total", outcome="deadline_exceeded")
                 + metric(url, "tsva_tiles_total", outcome="cancelled") >= 1, 5, "the expired tile counted")


def test_stream_is_read_only_as_work_finishes(slow_gateway):
    """A client with 20 large tiles (6 MB each) pushes as fast as gRPC lets it: the gateway takes
    at most --stream-window tiles into work and stops reading, so flow control stalls the client
    long before it has handed over everything."""
    url = slow_gateway.metrics_url
    sent = [0]

    def requests():
        for i in range(20):
            sent[0] += 1
            yield tile_request(f"big{i}")

    with slow_gateway.channel() as channel:
        call = pb_grpc.VirtualAutofocusStub(channel).FuseTiles(requests(), timeout=120)
        first = next(call)  # the first tile took a while (36 patches): the client pushed all it could
        taken = sent[0]
        depth = metric(url, "tsva_queue_depth")
        call.cancel()
    assert not first.HasField("error")
    print("tiles handed over by the first answer:", taken, "queue depth:", depth)
    assert taken < 20
    assert depth <= 64
    wait_for(lambda: metric(url, "tsva_queue_depth") == 0, 10, "queue depth back to 0")


def test_two_streams_share_batches_and_every_tile_is_answered(slow_gateway):
    """Two streams at once through a queue of 64 patches: the queue never holds more, patches of
    both streams share batches, and every tile gets its answer."""
    url = slow_gateway.metrics_url
    peak = [0.0]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], metric(url, "tsva_queue_depth"))
            time.sleep(0.02)

    answers = {}
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with slow_gateway.channel() as channel:
            stub = pb_grpc.VirtualAutofocusStub(channel)

            def run(name):
                answers[name] = list(stub.FuseTiles(iter([tile_request(f"{name}{i}", 512) for i in range(6)]),
                                                    timeout=240))

            threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
            for t in threads:
                t.start()
            for t in threads:
                t.join(240)
    finally:
        stop.set()
        watcher.join()
    for name in ("a", "b"):
        assert sorted(r.tile_id for r in answers[name]) == sorted(f"{name}{i}" for i in range(6))
        assert all(not r.HasField("error") for r in answers[name])
    assert 0 < peak[0] <= 64
    samples = read_metrics(url)
    assert samples[("tsva_backend_batch_size_sum", ())] > samples[("tsva_backend_batch_size_count", ())]
