"""The repository's Kubernetes manifests as the k8s tests read them."""
from __future__ import annotations

import yaml

from tests.support.paths import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"


def _documents() -> dict[tuple[str, str], dict]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            docs[(doc["kind"], doc["metadata"]["name"])] = doc
    return docs


DOCS = _documents()


def _container(deployment: dict, name: str) -> dict:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)
