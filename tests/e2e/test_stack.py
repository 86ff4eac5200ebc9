"""`tsva stack`: what it would start, in what order, and what it waits for. The plan comes from the
repository's real compose file. The waiting logic runs against a real Docker engine where one runs
(containers of the locally made base image labelled as compose labels them, with health checks
that pass, fail or never pass, and one that exits); where none can run, against `FakeEngine`, a
stand-in for the docker package's containers API that replays scripted container states (the one
mock here, used only then)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from tsva.server import stack

from tests.support.paths import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"


def _tsva(*args: str, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    # An engine address where none listens, so the result is the same on hosts that have one.
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/tsva-test/docker.sock"}
    return subprocess.run([sys.executable, "-m", "tsva.common.cli", "stack", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd, env=env)


@pytest.mark.parametrize("profile, triton, gateway", [("gpu", "triton", "gateway"),
                                                      ("cpu", "triton-cpu", "gateway-cpu")])
def test_plan_of_the_repository_stack(profile, triton, gateway):
    services = stack.plan(stack.load_compose(COMPOSE_FILE), {profile})
    names = [s.name for s in services]
    assert sorted(names) == sorted([triton, gateway, "prometheus", "grafana"])
    assert names.index(triton) < names.index(gateway) and names.index("prometheus") < names.index("grafana")
    assert all(s.waits_for == "healthy" for s in services)
    by_name = {s.name: s for s in services}
    assert by_name[gateway].depends_on == {triton: "service_healthy"}
    assert by_name[triton].wait_s >= 600  # start_period covers the TensorRT engine build


class FakeContainer:
    def __init__(self, name: str, states: list[tuple[str, str | None]], exit_code: int = 0):
        self.name, self.labels = name, {stack.SERVICE_LABEL: name}
        self._states, self._exit_code = list(states), exit_code
        self.attrs: dict = {}
        self.reload()

    @property
    def status(self) -> str:
        return self.attrs["State"]["Status"]

    def reload(self) -> None:
        status, health = self._states.pop(0) if len(self._states) > 1 else self._states[0]
        state = {"Status": status, "ExitCode": self._exit_code}
        if health:
            state["Health"] = {"Status": health, "Log": [{"Output": f"{self.name} probe said {health}"}]}
        self.attrs = {"State": state}

    def logs(self, tail: int) -> bytes:
        return f"last words of {self.name}".encode()


class FakeEngine:
    """Stand-in for docker.DockerClient: `containers.list(all, filters)` by compose labels."""

    def __init__(self, containers: list[FakeContainer]):
        self.by_service = {c.name: c for c in containers}
        self.containers = self
        self.asked: list[str] = []

    def list(self, all: bool, filters: dict) -> list[FakeContainer]:
        labels = dict(item.split("=", 1) for item in filters["label"])
        assert labels[stack.PROJECT_LABEL] == "tsva"
        service = labels[stack.SERVICE_LABEL]
        self.asked.append(service)
        return [self.by_service[service]] if service in self.by_service else []


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _wait(engine, services):
    clock = FakeClock()
    lines: list[str] = []
    stack.wait_healthy(engine, "tsva", services, poll_s=1.0, clock=clock, sleep=clock.sleep, report=lines.append)
    return lines


def _no_engine():
    from tests.support.docker_engine import engine_problem

    if engine_problem() is None:
        pytest.skip("a Docker engine runs here: the real-engine tests below cover the waits")


def test_waits_for_each_service_in_order():
    _no_engine()
    services = [stack.ServicePlan("triton", healthcheck=True, wait_s=30),
                stack.ServicePlan("gateway", {"triton": "service_healthy"}, healthcheck=True, wait_s=30)]
    engine = FakeEngine([
        FakeContainer("triton", [("running", "starting")] * 3 + [("running", "healthy")]),
        FakeContainer("gateway", [("created", None), ("running", "starting"), ("running", "healthy")]),
    ])
    assert _wait(engine, services) == ["  triton: healthy", "  gateway: healthy"]
    first_gateway = engine.asked.index("gateway")
    assert set(engine.asked[:first_gateway]) == {"triton"}  # gateway only after triton was healthy


@pytest.mark.parametrize("container, expected", [
    (FakeContainer("triton", [("running", "starting"), ("running", "unhealthy")]), "probe said unhealthy"),
    (FakeContainer("triton", [("exited", None)], exit_code=3), "exit code 3"),
    (FakeContainer("triton", [("running", "starting")]), "not healthy within 5 s"),
])
def test_a_failing_service_is_named_with_its_logs(container, expected):
    _no_engine()
    with pytest.raises(stack.StackError) as err:
        _wait(FakeEngine([container]), [stack.ServicePlan("triton", healthcheck=True, wait_s=5)])
    assert "'triton'" in str(err.value) and expected in str(err.value)
    assert "last words of triton" in str(err.value)


def _labelled(project: str, service: str, script: str, health: list[str], image: str) -> str:
    from tests.support.docker_engine import docker

    return docker("run", "-d", "--network", "none", "--label", f"{stack.PROJECT_LABEL}={project}",
                  "--label", f"{stack.SERVICE_LABEL}={service}", *health, image, "sh", "-c", script).stdout.strip()


@pytest.fixture
def real_engine():
    from tests.support.docker_engine import base_image, docker, engine_problem

    if engine_problem():
        pytest.skip(f"no Docker engine ({engine_problem()}): the FakeEngine tests above cover the waits")
    docker_package = pytest.importorskip("docker")
    image, project, started = base_image(), f"tsva-test-{os.getpid()}", []

    def run(service, script, *health):
        started.append(_labelled(project, service, script, list(health), image))

    yield docker_package.from_env(timeout=10), project, run
    for container_id in started:
        docker("rm", "-f", container_id, check=False)

HEALTH = ["--health-interval=1s", "--health-timeout=2s"]


@pytest.mark.slow
def test_waits_for_each_service_in_order_on_a_real_engine(real_engine):
    client, project, run = real_engine
    # Probes failing before the file exists must not count (Docker's default of 3 retries at 1 s
    # raced the 3 s sleep on a busy machine): a start period, as a slow-starting Triton has.
    run("triton", "sleep 3; touch /tmp/ready; exec sleep 300", *HEALTH, "--health-cmd=test -f /tmp/ready",
        "--health-start-period=30s")
    run("gateway", "exec sleep 300", *HEALTH, "--health-cmd=true")
    services = [stack.ServicePlan("triton", healthcheck=True, wait_s=60),
                stack.ServicePlan("gateway", {"triton": "service_healthy"}, healthcheck=True, wait_s=60)]
    lines: list[str] = []
    stack.wait_healthy(client, project, services, poll_s=0.5, report=lines.append)
    assert lines == ["  triton: healthy", "  gateway: healthy"]


@pytest.mark.slow
@pytest.mark.parametrize("script, health, expected", [
    ("exec sleep 300", ["--health-cmd=echo probe said no; false", "--health-retries=1"], "probe said no"),
    ("echo last words of triton; exit 3", [], "exit code 3"),
    ("exec sleep 300", ["--health-cmd=false", "--health-start-period=60s"], "not healthy within 5 s"),
])
def test_a_failing_service_is_named_with_its_logs_on_a_real_engine(real_engine, script, health, expected):
    client, project, run = real_engine
    run("triton", f"echo last words of triton; {script}" if "exit" not in script else script, *HEALTH, *health)
    with pytest.raises(stack.StackError) as err:
        stack.wait_healthy(client, project, [stack.ServicePlan("triton", healthcheck=True, wait_s=5)],
                           poll_s=0.5, report=lambda line: None)
    assert "'triton'" in str(err.value) and expected in str(err.value)
    assert "last words of triton" in str(err.value)


def test_cli_dry_run_and_no_engine(tmp_path):
    # The checkout's compose file by default, from any folder (docs/cli.md, "Where files are found").
    done = _tsva("up", "--dry-run", "--profile", "cpu", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"run: docker compose -f {COMPOSE_FILE} --profile cpu up -d" in lines
    waits = [line.split()[1].rstrip(":") for line in lines if line.strip().startswith("wait ")]
    assert waits.index("triton-cpu") < waits.index("gateway-cpu")
    assert "(after triton-cpu healthy)" in done.stdout
    down = _tsva("down", "--dry-run", "--volumes")
    assert "--profile gpu down --volumes" in down.stdout
    missing = _tsva("up", "--file", "no-such-compose.yml")
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    # No Docker engine at DOCKER_HOST: a clear error, no traceback.
    status = _tsva("status")
    assert status.returncode == 1 and "no Docker engine reachable" in status.stderr
    assert "Traceback" not in status.stderr
