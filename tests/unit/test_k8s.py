"""deploy/k8s/ validated offline against the Kubernetes OpenAPI schemas (kubernetes-validate, strict:
unknown fields fail) and checked for consistency with the code: ports, flags, environment
variables, probes, labels the Services/NetworkPolicy/HPA select, the Dockerfile's user."""
from __future__ import annotations

import copy
import re
from dataclasses import fields
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from tsva.client import healthcheck
from tsva.server import config as gateway_config

from tests.support.k8s import DOCS, K8S, _container
from tests.support.paths import REPO_ROOT

KUBERNETES_VERSION = "1.30.0"  # the oldest version still supported upstream when this was written

DEFAULTS = gateway_config.Config()


def _gateway_env_names() -> set[str]:
    return {f.metadata["option"].env for f in fields(gateway_config.Config)}


@pytest.mark.parametrize("key", sorted(DOCS), ids=lambda key: f"{key[0]}/{key[1]}")
def test_manifest_matches_the_kubernetes_schema(key):
    kubernetes_validate.validate(DOCS[key], KUBERNETES_VERSION, strict=True)


def test_the_validation_can_fail():
    broken = copy.deepcopy(DOCS[("Deployment", "tsva-gateway")])
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}  # a typo'd field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest():
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    on_disk = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk
    assert {doc["metadata"].get("namespace", "tsva") for doc in DOCS.values()} == {"tsva"}


def test_gateway_deployment_agrees_with_the_gateway():
    deployment = DOCS[("Deployment", "tsva-gateway")]
    container = _container(deployment, "gateway")
    assert container["args"][0] == "serve"
    config = gateway_config.parse(container["args"][1:])  # the gateway's own parser accepts the flags
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": DEFAULTS.port, "metrics": DEFAULTS.metrics_port}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and int(annotations["prometheus.io/port"]) == DEFAULTS.metrics_port
    # Every environment variable is one the gateway or the health probe reads.
    probe_env = {a.dest for a in healthcheck.build_parser()._actions if a.dest != "help"}
    probe_env = {healthcheck.ENV_PREFIX + name.upper() for name in probe_env}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert set(env) <= _gateway_env_names() | probe_env, set(env) - _gateway_env_names() - probe_env
    # TLS/token files live where the secrets are mounted.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    for name in ("TSVA_TLS_CERT", "TSVA_TLS_KEY", "TSVA_TOKEN_FILE", "TSVA_HEALTHCHECK_TLS_CA"):
        folder = str(Path(env[name]).parent)
        assert folder in mounts and "secret" in volumes[mounts[folder]], name
    assert config.backend == "triton"


def test_gateway_probes_live_ready_startup():
    container = _container(DOCS[("Deployment", "tsva-gateway")], "gateway")
    for probe, mode in (("livenessProbe", "live"), ("readinessProbe", "ready"), ("startupProbe", "live")):
        command = container[probe]["exec"]["command"]
        assert command[:3] == ["python", "-m", "tsva.client.healthcheck"], probe
        assert healthcheck.build_parser().parse_args(command[3:]).mode == mode, probe


def test_gateway_is_autoscaled_on_cpu():
    hpa = DOCS[("HorizontalPodAutoscaler", "tsva-gateway")]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "tsva-gateway"}
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    container = _container(DOCS[("Deployment", "tsva-gateway")], "gateway")
    assert container["resources"]["requests"]["cpu"]  # utilisation is relative to the request


def test_only_the_gateway_reaches_triton():
    policy = DOCS[("NetworkPolicy", "triton-only-from-gateway")]["spec"]
    triton_labels = DOCS[("Deployment", "triton")]["spec"]["template"]["metadata"]["labels"]
    gateway_labels = DOCS[("Deployment", "tsva-gateway")]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= triton_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    inference_rule = next(rule for rule in policy["ingress"] if any(p["port"] == 8001 for p in rule["ports"]))
    assert inference_rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "tsva-gateway"}}}]
    assert inference_rule["from"][0]["podSelector"]["matchLabels"].items() <= gateway_labels.items()
    for rule in policy["ingress"]:
        if rule is not inference_rule:
            assert {p["port"] for p in rule["ports"]} == {8002}  # others: metrics only


def test_pods_run_as_the_images_non_root_user():
    user = re.search(r"^USER (\d+)", (REPO_ROOT / "Dockerfile").read_text(), re.M).group(1)
    pod = DOCS[("Deployment", "tsva-gateway")]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and str(pod["securityContext"]["runAsUser"]) == user
    container = _container(DOCS[("Deployment", "tsva-gateway")], "gateway")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
