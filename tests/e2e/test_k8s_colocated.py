"""deploy/k8s-colocated: the gateway beside Triton in one pod, built with the real `kubectl kustomize`
(offline) and validated against the Kubernetes OpenAPI schemas (strict), then checked against the
gateway's own flag parser: Triton on loopback, the same memory-backed /dev/shm in both containers,
workers, the model name, and the base's Service/HPA reaching the new pod."""
from __future__ import annotations

import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml
from tsva.server import config as gateway_config
from tsva.server.backends.triton_shm import is_loopback

from tests.support.paths import REPO_ROOT

OVERLAY = REPO_ROOT / "deploy" / "k8s-colocated"
KUBERNETES_VERSION = "1.30.0"

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl (kustomize) to build the overlay")


@pytest.fixture(scope="module")
def docs() -> dict[tuple[str, str], dict]:
    built = subprocess.run(["kubectl", "kustomize", str(OVERLAY)], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(built.stdout)}


def containers(docs) -> dict[str, dict]:
    pod = docs[("Deployment", "tsva-colocated")]["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod["containers"]}


def test_every_document_matches_the_schema(docs):
    for key, doc in docs.items():
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    # The two Deployments of the base are replaced by the one pod.
    assert ("Deployment", "tsva-gateway") not in docs and ("Deployment", "triton") not in docs


def test_gateway_reaches_triton_on_loopback_through_shared_memory(docs):
    c = containers(docs)
    config = gateway_config.parse(c["gateway"]["args"][1:])
    assert config.backend == "triton" and config.workers >= 2
    triton_grpc = {p["name"]: p["containerPort"] for p in c["triton"]["ports"]}["grpc"]
    assert [url.rsplit(":", 1) for url in config.triton_url_list] == [["localhost", str(triton_grpc)]]
    assert all(is_loopback(url) for url in config.triton_url_list)
    assert config.triton_shared_memory in ("auto", "system")
    assert f"--load-model={config.model_name}" in c["triton"]["args"]
    # One memory-backed volume at /dev/shm in both containers: the regions the gateway creates are
    # the ones Triton opens.
    volumes = {v["name"]: v for v in docs[("Deployment", "tsva-colocated")]["spec"]["template"]["spec"]["volumes"]}
    shm = {name: next(m["name"] for m in c[name]["volumeMounts"] if m["mountPath"] == "/dev/shm")
           for name in ("gateway", "triton")}
    assert shm["gateway"] == shm["triton"] and volumes[shm["gateway"]]["emptyDir"]["medium"] == "Memory"


def test_service_and_autoscaler_reach_the_pod(docs):
    deployment = docs[("Deployment", "tsva-colocated")]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert docs[("Service", "tsva-gateway")]["spec"]["selector"].items() <= labels.items()
    assert docs[("HorizontalPodAutoscaler", "tsva-gateway")]["spec"]["scaleTargetRef"]["name"] == "tsva-colocated"
    gateway = containers(docs)["gateway"]
    assert gateway["securityContext"]["runAsNonRoot"] and gateway["securityContext"]["readOnlyRootFilesystem"]
    assert any(m["mountPath"] == "/tmp" for m in gateway["volumeMounts"])  # the workers' metrics files
