"""deploy/k8s/ validated offline against the Kubernetes OpenAPI schemas (kubernetes-validate, strict:
unknown fields fail) and checked for consistency with the code: ports, flags, environment
variables, probes, labels the Services/NetworkPolicy/HPA select, the Dockerfile's user."""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from tsva.server import config as gateway_config

from tests.support.gateway import start_gateway
from tests.support.k8s import DOCS, _container
from tests.support.models import make_tiny_onnx
from tests.support.paths import REPO_ROOT


def test_triton_through_a_headless_service():
    gateway = _container(DOCS[("Deployment", "tsva-gateway")], "gateway")
    config = gateway_config.parse(gateway["args"][1:])
    service = DOCS[("Service", "triton")]
    assert service["spec"]["clusterIP"] == "None"  # DNS returns every Triton pod
    service_ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    triton = DOCS[("Deployment", "triton")]
    container = _container(triton, "triton")
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for url in config.triton_url_list:
        host, port = url.rsplit(":", 1)
        assert host.split(".")[0] == "triton" and int(port) == service_ports["grpc"] == container_ports["grpc"]
    labels = triton["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    # The gateway asks for the model that Triton loads.
    assert f"--load-model={config.model_name}" in container["args"]
    assert (REPO_ROOT / "model_repository" / config.model_name / "config.pbtxt").exists()


def test_triton_requests_a_gpu_and_probes_live_ready_startup():
    triton = DOCS[("Deployment", "triton")]
    container = _container(triton, "triton")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600  # TensorRT engine builds take minutes
    repository = next(a.split("=", 1)[1] for a in container["args"] if a.startswith("--model-repository="))
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[repository]["readOnly"] is True
    # The init container copies the repository that the gateway image ships (see the Dockerfile).
    init = triton["spec"]["template"]["spec"]["initContainers"][0]
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    shipped = re.search(r"COPY model_repository/ (\S+)", dockerfile).group(1).rstrip("/")
    assert init["command"][-2].startswith(shipped) and init["command"][-1].rstrip("/") == repository
    annotations = triton["spec"]["template"]["metadata"]["annotations"]
    metrics_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "metrics")
    assert int(annotations["prometheus.io/port"]) == metrics_port


def test_probe_modes_on_a_real_gateway_whose_backend_failed(tmp_path):
    """live passes while the backend is down (no restart for that), ready fails (out of the Service)."""
    from tsva.client import Client
    from tsva.client.errors import TsvaError

    model = make_tiny_onnx(tmp_path / "fails-on-white.onnx", fail_on_white=True)
    with start_gateway(model, patch_size=64, patch_overlap=16, health_interval_s=60) as gw:
        probe = [sys.executable, "-m", "tsva.client.healthcheck", "--server", gw.address, "--mode"]
        assert subprocess.run(probe + ["ready"], capture_output=True).returncode == 0
        white = np.full((64, 64, 3), 255, np.uint8)  # makes the real ONNX Runtime session fail
        with Client(gw.address, timeout=30) as client, pytest.raises(TsvaError):
            client.fuse(white, white)
        live = subprocess.run(probe + ["live"], capture_output=True, text=True)
        ready = subprocess.run(probe + ["ready"], capture_output=True, text=True)
    assert live.returncode == 0 and "NOT_SERVING" in live.stdout
    assert ready.returncode == 1 and "NOT_SERVING" in ready.stderr
