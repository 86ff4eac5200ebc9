"""TritonBackend against a real tritonserver process on loopback (no gateway in between).

The server is the tritonserver binary of nvidia-pytriton; it serves the test ONNX models through a
Python-backend model running ONNX Runtime (see triton_harness.py), with model_repository/tsva_cpu's
batch size, inputs/outputs and dynamic batching."""
from __future__ import annotations

import asyncio
import time

import numpy as np
import onnxruntime as ort
import pytest
from tsva.server.backends.base import BackendUnavailable
from tsva.server.backends.triton import BackendDeadlineExceeded, TritonBackend, TritonInferenceError

from tests.support.gateway import free_port
from tests.support.models import make_tiny_onnx
from tests.support.triton_harness import TritonServer, metric_value, wait_for_metric

pytestmark = pytest.mark.slow  # starts tritonserver processes


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("triton-models")
    return {"tsva": make_tiny_onnx(root / "tiny.onnx"),
            "tsva_faulty": make_tiny_onnx(root / "faulty.onnx", fail_on_white=True)}


@pytest.fixture(scope="module")
def triton(models):
    server = TritonServer(models)
    try:
        server.start()
        yield server
    finally:
        server.close()


def run(coro):
    return asyncio.run(coro)


def pairs(n, h=64, w=64, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, 3, h, w), dtype=np.float32) * 0.9,
            rng.random((n, 3, h, w), dtype=np.float32) * 0.9)


def reference(onnx_path, y1, y2):
    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(
        ["x"], {"y1": y1, "y2": y2})[0]


def wait_metric(server, name, model, at_least):
    return wait_for_metric(lambda: metric_value(server.metrics(), name, model), at_least)


async def started(urls, **kwargs):
    backend = TritonBackend(urls, **kwargs)
    await backend.start()
    return backend


def test_model_info_comes_from_triton(triton):
    async def scenario():
        backend = await started([triton.url])
        try:
            return backend.model_info(), await backend.ready()
        finally:
            await backend.close()

    info, ready = run(scenario())
    assert ready
    assert info.name == "tsva" and info.version == "1"
    assert info.max_batch_size == 16  # model_repository/tsva_cpu/config.pbtxt


def test_batch_matches_onnxruntime_and_is_split_by_max_batch(triton, models):
    y1, y2 = pairs(40)
    before_requests = metric_value(triton.metrics(), "nv_inference_request_success", "tsva")
    before_inferences = metric_value(triton.metrics(), "nv_inference_count", "tsva")

    async def scenario():
        backend = await started([triton.url])
        try:
            return await backend.infer(y1, y2)
        finally:
            await backend.close()

    x = run(scenario())
    np.testing.assert_allclose(x, reference(models["tsva"], y1, y2), atol=1e-6, rtol=0)
    # 40 patches with max_batch_size 16: three Triton requests (16 + 16 + 8) carried them.
    assert wait_metric(triton, "nv_inference_count", "tsva", before_inferences + 40) == before_inferences + 40
    assert wait_metric(triton, "nv_inference_request_success", "tsva", before_requests + 3) == before_requests + 3


def test_model_error_is_not_retried_and_keeps_endpoint_up(triton):
    y1, y2 = pairs(2)
    y1[1] = 1.0  # the faulty model fails on white Y1 (a real ONNX Runtime error)

    async def scenario():
        backend = await started([triton.url], model_name="tsva_faulty")
        try:
            with pytest.raises(TritonInferenceError, match=triton.url):
                await backend.infer(y1, y2)
            assert await backend.ready()
            ok = await backend.infer(*pairs(2))  # the endpoint still serves the next batch
            return ok, backend.endpoint_status()
        finally:
            await backend.close()

    ok, status = run(scenario())
    assert ok.shape == (2, 3, 64, 64)
    assert status[0]["up"] and status[0]["served"] == 1


def test_deadline_reaches_the_call(triton):
    y1, y2 = pairs(16, 512, 512)

    async def scenario():
        backend = await started([triton.url])
        try:
            with pytest.raises(BackendDeadlineExceeded):
                await backend.infer(y1, y2, timeout_s=0.005)
            return await backend.ready()
        finally:
            await backend.close()

    assert run(scenario())  # a missed deadline does not mark the endpoint down


def test_dead_endpoint_is_skipped(triton, models):
    dead = f"127.0.0.1:{free_port()}"
    y1, y2 = pairs(4, seed=3)

    async def scenario():
        backend = await started([dead, triton.url])
        try:
            results = await asyncio.gather(*(backend.infer(y1, y2) for _ in range(6)))
            return results, backend.endpoint_status()
        finally:
            await backend.close()

    results, status = run(scenario())
    expected = reference(models["tsva"], y1, y2)
    for x in results:
        np.testing.assert_allclose(x, expected, atol=1e-6, rtol=0)
    by_url = {s["url"]: s for s in status}
    assert not by_url[dead]["up"] and by_url[dead]["served"] == 0
    assert by_url[triton.url]["up"] and by_url[triton.url]["served"] == 6


def test_a_name_is_resolved_to_its_server(triton):
    async def scenario():
        backend = await started([f"localhost:{triton.grpc_port}"])
        try:
            await backend.infer(*pairs(1))
            return backend.endpoint_status()
        finally:
            await backend.close()

    (status,) = run(scenario())
    assert status["target"] == f"localhost:{triton.grpc_port}" and status["url"] == triton.url
    assert status["up"] and status["served"] == 1


def test_service_name_with_several_tritons(triton, models, tmp_path):
    """A Kubernetes headless Service name resolves to one address per ready Triton pod. Such DNS
    cannot be set up here, so a stand-in resolver answers for the name "triton-svc" with the
    addresses of two real Tritons; the second one's model takes at most 4 patches per request
    (e.g. a CPU node beside GPU ones). Batches are cut to fit it, concurrent batches go to both,
    and the endpoint list follows the name as pods leave and come back."""
    small = TritonServer(models["tsva"], max_batch_size=4, workdir=tmp_path)
    pods = [triton.url]
    y1, y2 = pairs(10, seed=7)
    expected = reference(models["tsva"], y1, y2)

    async def resolver(host, port):
        assert (host, port) == ("triton-svc", 8001)
        return list(pods)

    async def until(predicate, timeout_s=10.0):
        deadline = time.monotonic() + timeout_s
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.05)

    async def scenario():
        backend = await started("triton-svc:8001", resolver=resolver, resolve_interval_s=0.2,
                                probe_interval_s=0.1)
        try:
            by_url = lambda: {s["url"]: s for s in backend.endpoint_status()}  # noqa: E731
            assert list(by_url()) == [triton.url]
            pods.append(small.url)  # a pod joins the Service
            await until(lambda: by_url().get(small.url, {}).get("up"))
            results = await asyncio.gather(*(backend.infer(y1, y2) for _ in range(6)))
            joined = by_url()
            pods.remove(small.url)  # and leaves it
            await until(lambda: small.url not in by_url())
            served_before = by_url()[triton.url]["served"]
            results.append(await backend.infer(y1, y2))
            return results, joined, by_url()[triton.url]["served"] - served_before
        finally:
            await backend.close()

    try:
        small.start()
        results, joined, served_after_leave = run(scenario())
    finally:
        small.close()
    for x in results:
        np.testing.assert_allclose(x, expected, atol=1e-6, rtol=0)
    assert joined[small.url]["max_batch_size"] == 4 and joined[triton.url]["max_batch_size"] == 16
    assert all(s["target"] == "triton-svc:8001" for s in joined.values())
    # 6 batches of 10 patches, cut into 4 + 4 + 2: 18 requests, shared by the two endpoints.
    assert joined[small.url]["served"] + joined[triton.url]["served"] == 18
    assert joined[small.url]["served"] > 0 and joined[triton.url]["served"] > 0
    # After the pod left, the batch was cut for the remaining endpoint's 16 patches: one request.
    assert served_after_leave == 1


def test_start_fails_clearly_when_nothing_is_ready(triton):
    dead = f"127.0.0.1:{free_port()}"
    with pytest.raises(BackendUnavailable, match=dead):
        run(TritonBackend([dead], startup_timeout_s=0.3, probe_interval_s=0.1).start())
    with pytest.raises(BackendUnavailable, match="'nope'"):
        run(TritonBackend([triton.url], model_name="nope", startup_timeout_s=0.3,
                          probe_interval_s=0.1).start())


def test_triton_down_then_back(triton, models):
    """Runs last: stops and restarts the module's server (same ports, as a restarted node)."""
    y1, y2 = pairs(3, seed=5)

    async def until(predicate, timeout_s=15.0):
        deadline = time.monotonic() + timeout_s
        while not await predicate():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.1)

    async def scenario(backend):
        await backend.start()
        try:
            assert await backend.ready()
            triton.stop()
            await until(lambda: _not(backend.ready()))
            t0 = time.monotonic()
            with pytest.raises(BackendUnavailable, match="not ready on any Triton endpoint"):
                await backend.infer(y1, y2)
            assert time.monotonic() - t0 < 1.0  # answered at once, not after the deadline
            triton.start()
            await until(backend.ready)
            return await backend.infer(y1, y2)
        finally:
            await backend.close()

    x = run(scenario(TritonBackend([triton.url], probe_interval_s=0.2)))
    np.testing.assert_allclose(x, reference(models["tsva"], y1, y2), atol=1e-6, rtol=0)


async def _not(awaitable):
    return not await awaitable
