"""The docker compose stack on a host with a Docker engine: the plan of what starts, in what order
and what it waits for (read from the compose file), and the waits themselves (`tsva stack`, in
tsva.server.verbs.stack, drives them).

`docker compose` (the CLI plugin) creates the containers; the `docker` Python package watches
their health through the engine's API, service by service in dependency order, and on failure shows
the failing health check and the container's last log lines. Needs the optional extra
`pip install 'tsva-server[stack]'` (docker, PyYAML), which the gateway image does not carry.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tsva.common.errors import Failed
from tsva.common.model_repository import source_tree

DEFAULT_FILE = "docker-compose.yml"
# The rule of every verb (docs/cli.md, "Where files are found"): files the project ships come from
# the checkout `tsva` was installed from (its PEP 610 install record, as for the model repository),
# in any current folder; without a checkout (an install from a wheel), from the current folder.


def default_compose_file() -> Path:
    tree = source_tree()
    checkout_file = tree / DEFAULT_FILE if tree is not None else None
    return checkout_file if checkout_file is not None and checkout_file.is_file() else Path(DEFAULT_FILE)


PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class StackError(Failed, RuntimeError):
    """A compose file the plan cannot follow, a missing engine/plugin, a service that fails (exit 1)."""


def parse_duration(value, default: float) -> float:
    """Compose durations ('1m30s', '10s', '500ms') in seconds."""
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise StackError(f"healthcheck: cannot read the duration {value!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


@dataclass
class ServicePlan:
    name: str
    depends_on: dict[str, str] = field(default_factory=dict)  # service -> condition
    healthcheck: bool = False
    wait_s: float = 60.0  # how long to wait for it to become healthy once started

    @property
    def waits_for(self) -> str:
        return "healthy" if self.healthcheck else "running"


def load_compose(path: str | Path) -> dict:
    try:
        import yaml
    except ModuleNotFoundError:
        raise StackError("tsva stack needs PyYAML and docker: pip install 'tsva-server[stack]'") from None
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise StackError(f"--file: cannot read {str(path)!r}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise StackError(f"--file: {str(path)!r} is not valid YAML: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("services"), dict):
        raise StackError(f"--file: {str(path)!r} has no services: section")
    return document


def _depends_on(spec) -> dict[str, str]:
    if spec is None:
        return {}
    if isinstance(spec, list):
        return {name: "service_started" for name in spec}
    return {name: (options or {}).get("condition", "service_started") for name, options in spec.items()}


def plan(compose: dict, profiles: set[str] | frozenset[str] = frozenset()) -> list[ServicePlan]:
    """The services `docker compose --profile ... up` starts, in start order (dependencies first,
    otherwise file order), each with what it waits for and for how long."""
    services = compose["services"]
    active = [name for name, spec in services.items()
              if not (spec or {}).get("profiles") or set(spec["profiles"]) & set(profiles)]
    if not active:
        raise StackError(f"no service is active with profiles {sorted(profiles) or '(none)'}")
    plans: dict[str, ServicePlan] = {}
    for name in active:
        spec = services[name] or {}
        deps = _depends_on(spec.get("depends_on"))
        for dep, condition in deps.items():
            if dep not in active:
                where = "is not in the file" if dep not in services else \
                    f"is only in profiles {services[dep].get('profiles')}"
                raise StackError(f"service {name!r} depends on {dep!r}, which {where}")
            if condition == "service_healthy" and not (services[dep] or {}).get("healthcheck"):
                raise StackError(f"service {name!r} waits for {dep!r} to be healthy, but {dep!r} has no healthcheck")
        check = spec.get("healthcheck") or {}
        has_check = bool(check) and not check.get("disable", False)
        wait = 60.0
        if has_check:
            interval = parse_duration(check.get("interval"), 30.0)
            wait = (parse_duration(check.get("start_period"), 0.0)
                    + interval * (int(check.get("retries", 3)) + 1) + parse_duration(check.get("timeout"), 30.0))
        plans[name] = ServicePlan(name, deps, has_check, wait)
    ordered: list[ServicePlan] = []
    placed: set[str] = set()
    while len(ordered) < len(active):
        ready = [n for n in active if n not in placed and set(plans[n].depends_on) <= placed]
        if not ready:
            cycle = sorted(n for n in active if n not in placed)
            raise StackError(f"depends_on has a cycle among {cycle}")
        ordered.append(plans[ready[0]])
        placed.add(ready[0])
    return ordered


def compose_command(file: Path, profiles: list[str], *verb: str) -> list[str]:
    command = ["docker", "compose", "-f", str(file)]
    for profile in profiles:
        command += ["--profile", profile]
    return command + list(verb)


# ---- the engine side ------------------------------------------------------------------------

def engine_client():
    """A docker.DockerClient for the engine in the environment (DOCKER_HOST or the local socket)."""
    try:
        import docker
        from docker.errors import DockerException
    except ModuleNotFoundError:
        raise StackError("tsva stack needs docker and PyYAML: pip install 'tsva-server[stack]'") from None
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except DockerException as exc:
        raise StackError(f"no Docker engine reachable (DOCKER_HOST or /var/run/docker.sock): {exc}") from None
    return client


def container_state(container) -> tuple[str, str | None]:
    """(status, health): status as the engine says (running, exited, ...); health None without a check."""
    state = container.attrs.get("State", {})
    health = (state.get("Health") or {}).get("Status")
    return state.get("Status", container.status), health


def wait_healthy(client, project: str, services: list[ServicePlan], *, poll_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 report: Callable[[str], None] = print) -> None:
    """Waits, in start order, for every service's containers to be healthy (or running, without a
    health check). Raises StackError naming the service, its last health-check output and log lines
    when one exits, turns unhealthy, or takes longer than its health check allows."""
    for service in services:
        deadline = clock() + service.wait_s
        while True:
            containers = client.containers.list(
                all=True, filters={"label": [f"{PROJECT_LABEL}={project}", f"{SERVICE_LABEL}={service.name}"]})
            for container in containers:
                container.reload()
            states = [container_state(c) for c in containers]
            if containers and all(s == "running" and (h == "healthy" or (h is None and not service.healthcheck))
                                  for s, h in states):
                report(f"  {service.name}: {service.waits_for}")
                break
            bad = [(c, s, h) for c, (s, h) in zip(containers, states) if s in ("exited", "dead") or h == "unhealthy"]
            if bad:
                raise StackError(_failure(service.name, *bad[0]))
            if clock() > deadline:
                detail = ", ".join(f"{s}/{h or 'no health'}" for s, h in states) or "no container"
                raise StackError(f"service {service.name!r} not {service.waits_for} within {service.wait_s:.0f} s "
                                 f"({detail})" + (_logs(containers[0]) if containers else ""))
            sleep(poll_s)


def _failure(name: str, container, status: str, health: str | None) -> str:
    state = container.attrs.get("State", {})
    message = f"service {name!r} is {health if health == 'unhealthy' else status}"
    if status in ("exited", "dead"):
        message += f" (exit code {state.get('ExitCode')})"
    checks = (state.get("Health") or {}).get("Log") or []
    if checks:
        message += f"; last health check: {str(checks[-1].get('Output', '')).strip()[-500:]}"
    return message + _logs(container)


def _logs(container, lines: int = 20) -> str:
    try:
        text = container.logs(tail=lines).decode("utf-8", errors="replace").rstrip()
    except Exception:  # logs are a courtesy; the state above is the error
        return ""
    return f"\n--- last {lines} log lines of {container.name} ---\n{text}" if text else ""


def status_rows(client, project: str) -> list[tuple[str, str, str, str]]:
    rows = []
    for container in client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project}"}):
        status, health = container_state(container)
        ports = container.attrs.get("NetworkSettings", {}).get("Ports") or {}
        published = ", ".join(f"{(b[0].get('HostIp') or '')}:{b[0].get('HostPort')}->{p}"
                              for p, b in sorted(ports.items()) if b)
        rows.append((container.labels.get(SERVICE_LABEL, container.name), status, health or "-", published))
    return sorted(rows)
