"""The gateway image under a real Docker engine (docker_engine.py): built offline from the local
base and the wheelhouse with `--network none`, run as its non-root user on the host's network.

- embedded backend: Docker's HEALTHCHECK turns healthy, a pair fuses through it with the SDK, its
  /metrics count the tile, and SIGTERM (`docker stop`) ends it with status 0 within the grace period;
- `serve --backend triton` in front of the real tritonserver of the Triton tests (triton_harness.py)
  on the host: healthy, GetInfo names the Triton backend, a pair fuses and Triton counts the patches.
Skipped, with the reason in the report, where no engine can run.
"""
from __future__ import annotations

import urllib.request

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage import data
from tsva.client import Client
from tsva.common.brenner import brenner
from tsva.server.patching import PatchGrid

from tests.support.docker_engine import Container, build_image, docker, image_config, require_engine
from tests.support.gateway import free_port
from tests.support.triton_harness import SHIPPED_ONNX, TritonServer, metric_value, wait_for_metric

pytestmark = pytest.mark.slow  # builds an image, starts containers and a tritonserver

GRACE_S = 20  # the gateway's --grace-s default
UID = 10001   # the image's user (Kubernetes' runAsUser)


@pytest.fixture(scope="module")
def image():
    require_engine()
    return build_image()


def pair(size: int = 256):
    """Two shots of skimage's IHC tissue image, mildly and strongly blurred (F - dD, F + dD)."""
    tissue = data.immunohistochemistry()[:size, :size].astype(np.float32)
    return [np.clip(gaussian_filter(tissue, sigma=(s, s, 0)), 0, 255).round().astype(np.uint8) for s in (2.5, 1.2)]


def gateway_env(port: int, metrics_port: int) -> dict[str, str]:
    return {"TSVA_HOST": "127.0.0.1", "TSVA_PORT": str(port), "TSVA_METRICS_HOST": "127.0.0.1",
            "TSVA_METRICS_PORT": str(metrics_port), "TSVA_HEALTHCHECK_SERVER": f"127.0.0.1:{port}"}


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return reply.read().decode()


def sample(text: str, name: str, **labels) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_image_serves_as_non_root_fuses_reports_and_stops_cleanly(image):
    config = image_config()
    assert config["User"] == f"{UID}:{UID}"
    assert config["Healthcheck"]["Test"] == ["CMD", "python", "-m", "tsva.client.healthcheck"]
    port, metrics_port = free_port(), free_port()
    with Container(env=gateway_env(port, metrics_port)) as container:
        healthy_s = container.wait_healthy()
        assert docker_exec_uid(container) == UID
        shot_a, shot_b = pair()
        with Client(f"127.0.0.1:{port}", timeout=120) as client:
            info = client.info()
            result = client.fuse(shot_a, shot_b, defocus_a_um=-1.5, defocus_b_um=1.5, tile_id="t1")
        assert info.backend == "embedded" and info.model_name == "tsva"
        assert info.model_metadata.get("precision") == "int8"  # the shipped int8 form, on the CPU
        assert result.image.shape == shot_a.shape and result.image.dtype == np.uint8
        assert result.y1_shot == ("B" if brenner(shot_b) > brenner(shot_a) else "A")
        text = metrics(metrics_port)
        assert sample(text, "tsva_tiles_total", outcome="ok") == 1
        assert sample(text, "tsva_fused_pixels_total") == shot_a.shape[0] * shot_a.shape[1]
        assert sample(text, "tsva_backend_up") == 1
        status, stop_s = container.stop(grace_s=GRACE_S + 10)
        logs = container.logs()
    assert status == 0, logs[-3000:]
    assert stop_s < GRACE_S, f"took {stop_s:.1f}s"
    assert "shutting down" in logs and "stopped" in logs
    print(f"container: healthy after {healthy_s:.1f}s, stopped in {stop_s:.1f}s, image {image}")


def docker_exec_uid(container: Container) -> int:
    return int(docker("exec", container.id, "python", "-c", "import os; print(os.getuid())").stdout)


def test_image_in_front_of_a_real_tritonserver(image):
    with TritonServer(SHIPPED_ONNX) as triton:
        port, metrics_port = free_port(), free_port()
        before = metric_value(triton.metrics(), "nv_inference_count", "tsva")
        with Container("serve", "--backend", "triton", "--triton-urls", triton.url, "--model-name", "tsva",
                       "--patch-size", "64", "--patch-overlap", "16",
                       env=gateway_env(port, metrics_port)) as container:
            container.wait_healthy()
            shot_a, shot_b = pair(128)
            with Client(f"127.0.0.1:{port}", timeout=120) as client:
                info = client.info()
                result = client.fuse(shot_a, shot_b, tile_id="via-triton")
            assert info.backend == "triton"
            assert result.image.shape == shot_a.shape
            # Every patch of the tile went through Triton (the gateway's own grid of 64-px patches).
            patches = PatchGrid(128, 128, 64, 16).count
            assert wait_for_metric(lambda: metric_value(triton.metrics(), "nv_inference_count", "tsva"),
                                   before + patches) == before + patches
            assert sample(metrics(metrics_port), "tsva_tiles_total", outcome="ok") == 1
            status, _ = container.stop(grace_s=GRACE_S + 10)
            assert status == 0, container.logs()[-3000:]
