"""The gateway process's life: configuration by flags and environment, start-up errors, backend
failure (UNAVAILABLE + health NOT_SERVING, then recovery), graceful shutdown on SIGTERM/SIGINT.

Backend failure uses conftest.make_tiny_onnx(fail_on_white=True): a real model whose ONNX Runtime
run fails on a white tile (fault injection in the model, no mock)."""
import signal
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from skimage import data
from tsva.common.images import encode_image
from tsva.v1 import tsva_pb2 as pb
from tsva.v1 import tsva_pb2_grpc as pb_grpc

from tests.support.gateway import free_port, health_status, start_gateway
from tests.support.metrics import metric
from tests.support.models import make_tiny_onnx, make_unet_onnx

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
TILE = data.astronaut()[:128, :128]


def pair(tile_id, a=TILE, b=None):
    b = (a * 0.5).astype(np.uint8) if b is None else b
    return pb.FuseRequest(tile_id=tile_id, shot_a=encode_image(a), shot_b=encode_image(b))


def test_environment_configures_the_gateway(tiny_model):
    env = {"TSVA_PATCH_SIZE": "96", "TSVA_PATCH_OVERLAP": "32", "TSVA_MAX_BATCH": "3",
           "TSVA_MAX_TILE_WIDTH": "300"}
    with start_gateway(tiny_model, env=env) as gw, gw.channel() as channel:
        info = pb_grpc.VirtualAutofocusStub(channel).GetInfo(pb.GetInfoRequest(), timeout=10)
    assert (info.patch_size, info.patch_overlap, info.limits.max_batch_size) == (96, 32, 3)
    assert info.limits.max_tile_width == 300


def test_flag_beats_environment(tiny_model):
    with start_gateway(tiny_model, env={"TSVA_PATCH_SIZE": "96"}, patch_size=128) as gw, gw.channel() as channel:
        assert pb_grpc.VirtualAutofocusStub(channel).GetInfo(pb.GetInfoRequest(), timeout=10).patch_size == 128


def run_server(*args, env=None, timeout=60):
    import os
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TSVA_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "tsva.server", "--host", "127.0.0.1", "--port", str(free_port()),
                           "--metrics-port", str(free_port()), *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env)


@pytest.mark.parametrize("args, env, message", [
    (["--model-path", "/nonexistent/model.onnx"], {}, "model not found: /nonexistent/model.onnx"),
    ([], {"TSVA_PATCH_SIZE": "100"}, "--patch-size: must be a positive multiple of 16"),
    (["--patch-overlap", "300"], {}, "--patch-overlap: must be >= 0"),
    ([], {"TSVA_MAX_BATCH": "many"}, "TSVA_MAX_BATCH: 'many' is not a valid int"),
    (["--backend", "nope"], {}, "invalid choice: 'nope'"),
    (["--tls-cert", "/nonexistent.pem"], {}, "--tls-cert"),
    ([], {"TSVA_PRECISION": "int8"}, ".int8.onnx beside it (tsva quantize"),
])
def test_startup_errors_are_clear(tiny_model, args, env, message):
    if "--model-path" not in args:
        args = ["--model-path", str(tiny_model), *args]
    result = run_server(*args, env=env)
    assert result.returncode == 2
    assert message in result.stderr


def test_port_in_use(tiny_model):
    with start_gateway(tiny_model) as gw:
        result = run_server("--model-path", str(tiny_model), "--port", str(gw.port))
    # SO_REUSEPORT is off, so a second gateway cannot silently share the port
    assert result.returncode == 2 and "--port: cannot bind" in result.stderr


def test_serve_help_lists_flags_and_env():
    result = subprocess.run([sys.executable, "-m", "tsva.common.cli", "serve", "--help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0
    for text in ("--port", "TSVA_PORT", "--metrics-port", "--model-path", "TSVA_MODEL_PATH", "--backend",
                 "--max-batch", "--max-delay-ms", "--queue-size", "--tls-cert", "--token-file", "--grace-s"):
        assert text in result.stdout


@pytest.mark.slow
def test_backend_failure_is_unavailable_and_not_serving(tmp_path):
    model = make_tiny_onnx(tmp_path / "fails_on_white.onnx", fail_on_white=True)
    white = np.full((128, 128, 3), 255, np.uint8)
    with start_gateway(model, health_interval_s=0.5, patch_size=64, patch_overlap=16) as gw, gw.channel() as channel:
        statuses = []
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)

        def follow():
            try:
                for reply in watch:
                    statuses.append(reply.status)
            except grpc.RpcError:
                pass

        follower = threading.Thread(target=follow)
        follower.start()
        try:
            stub = pb_grpc.VirtualAutofocusStub(channel)
            assert not stub.Fuse(pair("fine"), timeout=30).HasField("error")
            with pytest.raises(grpc.RpcError) as info:
                stub.Fuse(pair("white", white, white), timeout=30)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert info.value.details().startswith("tile 'white': embedded backend: ONNX Runtime failed")
            # In a stream, every tile still gets one answer and the stream is not ended; tiles whose
            # patches shared the failed batch fail with it (UNAVAILABLE), the others are fused.
            replies = list(stub.FuseTiles(iter([pair("s1"), pair("s-white", white, white), pair("s2")]), timeout=60))
            by_id = {r.tile_id: r for r in replies}
            assert sorted(by_id) == ["s-white", "s1", "s2"] and len(replies) == 3
            assert by_id["s-white"].error.status == "UNAVAILABLE"
            for r in replies:
                assert r.HasField("fused") != (r.error.status == "UNAVAILABLE")
            # Health went NOT_SERVING on the failure and back to SERVING once a probe batch ran.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and statuses[-1:] != [SERVING]:
                time.sleep(0.1)
            assert NOT_SERVING in statuses
            first_down = statuses.index(NOT_SERVING)
            assert statuses[0] == SERVING and SERVING in statuses[first_down:]
            assert not stub.Fuse(pair("after-recovery"), timeout=30).HasField("error")
            unavailable = 1 + sum(r.error.status == "UNAVAILABLE" for r in replies)
            assert metric(gw.metrics_url, "tsva_tiles_total", outcome="unavailable") == unavailable
            assert metric(gw.metrics_url, "tsva_backend_errors_total") >= 2
        finally:
            watch.cancel()
            follower.join(10)


@pytest.mark.slow
def test_sigterm_finishes_inflight_tiles_and_exits_zero(tmp_path):
    model = make_unet_onnx(tmp_path / "unet.onnx")
    big = np.tile(data.astronaut(), (2, 2, 1))[:768, :768]
    with start_gateway(model, grace_s=60, max_batch=4) as gw:
        channel = gw.channel()
        stub = pb_grpc.VirtualAutofocusStub(channel)
        results, errors = [], []

        def stream():
            try:
                results.extend(stub.FuseTiles(iter([pair(f"g{i}", big) for i in range(3)]), timeout=120))
            except grpc.RpcError as exc:
                errors.append(exc)

        worker = threading.Thread(target=stream)
        worker.start()
        deadline = time.monotonic() + 30
        while metric(gw.metrics_url, "tsva_inflight_tiles") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        gw.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while health_status(gw.address) == SERVING and time.monotonic() < deadline:
            time.sleep(0.05)
        # New calls are refused while the in-flight stream finishes. gRPC's core answers a call that
        # races the shutdown with UNAVAILABLE or, when it had already queued it, CANCELLED (seen in
        # a CI-like run); either way the call is refused.
        with pytest.raises(grpc.RpcError) as info:
            stub.Fuse(pair("too-late"), timeout=10)
        assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        worker.join(120)
        assert gw.process.wait(60) == 0
        channel.close()
    assert not errors
    assert sorted(r.tile_id for r in results) == ["g0", "g1", "g2"]
    assert all(not r.HasField("error") for r in results)
    assert "stopped" in gw.logs()


def test_sigint_exits_zero(tiny_model):
    with start_gateway(tiny_model) as gw:
        gw.process.send_signal(signal.SIGINT)
        assert gw.process.wait(30) == 0


def test_streams_beyond_the_limit_are_resource_exhausted(tiny_model):
    release = threading.Event()

    def held_open():
        yield pair("first")
        release.wait(30)  # keep the stream open without sending more

    with start_gateway(tiny_model, max_streams=1) as gw, gw.channel() as channel:
        stub = pb_grpc.VirtualAutofocusStub(channel)
        first = stub.FuseTiles(held_open(), timeout=60)
        try:
            assert next(first).tile_id == "first"  # the first stream is open and working
            with pytest.raises(grpc.RpcError) as info:
                list(stub.FuseTiles(iter([pair("second")]), timeout=30))
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "limit is 1" in info.value.details()
        finally:
            release.set()
            first.cancel()
