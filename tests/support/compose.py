"""The repository's docker-compose.yml as the compose tests read it."""
from __future__ import annotations

import yaml

from tests.support.paths import REPO_ROOT

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


SERVICES = COMPOSE["services"]


def active(profile: str) -> dict[str, dict]:
    return {name: spec for name, spec in SERVICES.items() if not spec.get("profiles") or profile in spec["profiles"]}


def service_of_kind(profile: str, kind: str) -> tuple[str, dict]:
    """The Triton or gateway service of a profile (gateway: the one running `serve`)."""
    for name, spec in active(profile).items():
        command = spec.get("command") or []
        if kind == "triton" and command[:1] == ["tritonserver"]:
            return name, spec
        if kind == "gateway" and command[:1] == ["serve"]:
            return name, spec
    raise AssertionError(f"no {kind} service in profile {profile}")
