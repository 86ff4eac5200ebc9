"""docker-compose.yml, Prometheus and Grafana provisioning checked against the code: ports, flags,
model names, service names in scrape targets, mounted paths, dashboard metrics. The files are
parsed, the gateway's flags are read from the real `tsva serve --help` and parsed by the gateway's
own config parser, and the dashboard's metric names are looked up on a real gateway's /metrics
endpoint. Where a Docker engine and a compose implementation run, the gateway and Prometheus
services are brought up for real and a scrape is checked (the last test; what it replaces and why
is in its docstring)."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from tsva.server import config as gateway_config

from tests.support.compose import SERVICES, active, service_of_kind
from tests.support.metrics import read_metrics
from tests.support.paths import REPO_ROOT

PROMETHEUS = yaml.safe_load((REPO_ROOT / "deploy/prometheus/prometheus.yml").read_text())

DEFAULTS = gateway_config.Config()

PROFILES = ("gpu", "cpu")


def names_on_network(profile: str) -> dict[str, str]:
    """DNS name -> service, as the compose network resolves them in a profile (names and aliases)."""
    names = {}
    for name, spec in active(profile).items():
        names[name] = name
        for network in (spec.get("networks") or {}).values():
            for alias in (network or {}).get("aliases", []):
                names[alias] = name
    return names


def flag_value(command: list[str], flag: str, default: str | None = None) -> str | None:
    for i, arg in enumerate(command):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag:
            return command[i + 1]
    return default


@pytest.fixture(scope="module")
def serve_help_flags() -> set[str]:
    done = subprocess.run([sys.executable, "-m", "tsva.common.cli", "serve", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(re.findall(r"(--[a-z][a-z0-9-]+)", done.stdout))


@pytest.mark.parametrize("profile", PROFILES)
def test_gateway_command_uses_real_flags_and_reaches_triton(profile, serve_help_flags):
    gateway_name, gateway = service_of_kind(profile, "gateway")
    triton_name, triton = service_of_kind(profile, "triton")
    flags = [arg for arg in gateway["command"][1:] if arg.startswith("--")]
    assert flags and set(flags) <= serve_help_flags, set(flags) - serve_help_flags
    config = gateway_config.parse(gateway["command"][1:])  # the gateway's own parser accepts it
    assert config.backend == "triton"
    network = names_on_network(profile)
    triton_grpc_port = flag_value(triton["command"], "--grpc-port", "8001")
    for url in config.triton_url_list:
        host, port = url.rsplit(":", 1)
        assert network.get(host) == triton_name and port == triton_grpc_port, url
    # The model the gateway asks for is the one Triton loads, and it exists in the repository.
    loaded = flag_value(triton["command"], "--load-model")
    assert config.model_name == loaded
    model_config = REPO_ROOT / "model_repository" / loaded / "config.pbtxt"
    assert f'name: "{loaded}"' in model_config.read_text()
    assert gateway["depends_on"][triton_name]["condition"] == "service_healthy"
    published = {port.rsplit(":", 2)[-1] for port in gateway["ports"]}
    assert published == {str(DEFAULTS.port), str(DEFAULTS.metrics_port)}
    assert gateway["healthcheck"]["test"][1:4] == ["python", "-m", "tsva.client.healthcheck"]
    assert importlib.util.find_spec("tsva.client.healthcheck") is not None


@pytest.mark.parametrize("profile", PROFILES)
def test_triton_mounts_the_repository_read_only(profile):
    name, triton = service_of_kind(profile, "triton")
    assert triton["image"].split(":-", 1)[-1].startswith("nvcr.io/nvidia/tritonserver:")
    repository = flag_value(triton["command"], "--model-repository")
    mounts = [volume.split(":") for volume in triton["volumes"]]
    assert ["./model_repository", repository, "ro"] in mounts
    assert triton.get("shm_size")
    devices = triton.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    assert any("gpu" in device.get("capabilities", []) for device in devices) == (profile == "gpu"), name
    probe = " ".join(triton["healthcheck"]["test"])
    assert "/dev/tcp/127.0.0.1/8000" in probe and "GET /v2/health/ready" in probe


@pytest.mark.parametrize("status, healthy", [(200, True), (400, False)])
def test_triton_probe_command_reads_the_http_status(status, healthy):
    """The compose probe (bash, no curl) run against a real HTTP server on a free port."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status if self.path == "/v2/health/ready" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        test = SERVICES["triton"]["healthcheck"]["test"]
        command = [arg.replace("/8000 ", f"/{server.server_address[1]} ") for arg in test[1:]]
        done = subprocess.run(command, capture_output=True, timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert (done.returncode == 0) is healthy, done.stderr


@pytest.mark.parametrize("profile", PROFILES)
def test_prometheus_scrapes_the_gateway_and_triton(profile):
    network = names_on_network(profile)
    targets = {job["job_name"]: target for job in PROMETHEUS["scrape_configs"]
               for group in job["static_configs"] for target in group["targets"]}
    gateway_name, _ = service_of_kind(profile, "gateway")
    triton_name, triton = service_of_kind(profile, "triton")
    host, port = targets["tsva-gateway"].rsplit(":", 1)
    assert network[host] == gateway_name and int(port) == DEFAULTS.metrics_port
    host, port = targets["triton"].rsplit(":", 1)
    assert network[host] == triton_name and port == flag_value(triton["command"], "--metrics-port", "8002")


def test_dashboard_metrics_exist_on_a_real_gateway(gateway):
    dashboard = json.loads((REPO_ROOT / "deploy/grafana/dashboards/tsva.json").read_text())
    wanted = {name for panel in dashboard["panels"] for target in panel["targets"]
              for name in re.findall(r"\b(tsva_[a-z_]+)", target["expr"])}
    exported = {name for name, _ in read_metrics(gateway.metrics_url)}
    assert wanted and wanted <= exported, sorted(wanted - exported)


def compose_command() -> list[str] | None:
    """`docker compose` (the CLI plugin) or Debian's/PyPI's `docker-compose`, whichever runs here."""
    import shutil

    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def prometheus_image(tmp_path: Path, base: str) -> str:
    """Prometheus in an image built here: Debian's prometheus binary (it links only libc) on the
    locally made bookworm base, since prom/prometheus cannot be pulled without a registry."""
    import shutil

    from tests.support.docker_engine import docker

    binary = os.environ.get("TSVA_TEST_PROMETHEUS") or shutil.which("prometheus")
    if binary is None:
        pytest.skip("no prometheus binary to put in an image (Debian's prometheus package; .ci/run unpacks it)")
    context = tmp_path / "prometheus-image"
    context.mkdir()
    shutil.copy2(binary, context / "prometheus")
    (context / "Dockerfile").write_text(
        f"FROM {base}\nCOPY prometheus /usr/local/bin/prometheus\nUSER 65534:65534\nWORKDIR /tmp\n"
        "ENTRYPOINT [\"prometheus\"]\n")
    docker("build", "--network", "none", "-t", "tsva-prometheus:test", str(context), timeout=300)
    return "tsva-prometheus:test"


@pytest.mark.slow
def test_compose_brings_up_the_gateway_with_prometheus_scraping_it(tmp_path):
    """The repository's gateway and Prometheus services under a real compose implementation, with
    what cannot run here replaced: no Triton image (the gateway serves with its embedded backend),
    no registry (the gateway image is built offline, Prometheus's from Debian's binary), no
    container network (the engine runs without a bridge: services use the host's network, so
    ports are free loopback ports and the scrape target is 127.0.0.1). The rest of each service
    (read-only root, dropped capabilities, health checks, the Prometheus config's scrape job) is
    the file's own. `tsva stack`'s waits then run against the real containers."""
    from tests.support.docker_engine import IMAGE, base_image, build_image, require_engine

    require_engine()
    command = compose_command()
    if command is None:
        pytest.skip("no compose implementation here (docker compose plugin or docker-compose)")
    docker_package = pytest.importorskip("docker")
    from tsva.server import stack

    from tests.support.gateway import free_port

    build_image()
    prometheus = prometheus_image(tmp_path, base_image())
    port, metrics_port, prometheus_port = free_port(), free_port(), free_port()
    gateway = {k: v for k, v in SERVICES["gateway-cpu"].items()
               if k not in ("profiles", "command", "depends_on", "networks", "ports", "build", "ipc")}
    gateway.update(image=IMAGE, network_mode="host", command=["serve"], environment={
        **gateway.get("environment", {}), "TSVA_HOST": "127.0.0.1", "TSVA_PORT": str(port),
        "TSVA_METRICS_HOST": "127.0.0.1", "TSVA_METRICS_PORT": str(metrics_port)})
    gateway["healthcheck"] = {**gateway["healthcheck"], "interval": "1s",
                              "test": ["CMD", "python", "-m", "tsva.client.healthcheck", "--server", f"127.0.0.1:{port}"]}
    scrape = {**PROMETHEUS, "scrape_configs": [
        {**job, "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}
        for job in PROMETHEUS["scrape_configs"] if job["job_name"] == "tsva-gateway"]}
    scrape["global"] = {**scrape["global"], "scrape_interval": "1s"}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(scrape))
    config_path = next(v.split(":")[1] for v in SERVICES["prometheus"]["volumes"] if v.endswith("prometheus.yml:ro"))
    prom = {k: v for k, v in SERVICES["prometheus"].items() if k not in ("ports", "volumes", "image")}
    prom.update(image=prometheus, network_mode="host", volumes=[f"{tmp_path / 'prometheus.yml'}:{config_path}:ro"],
                command=[*prom["command"], f"--web.listen-address=127.0.0.1:{prometheus_port}",
                         "--storage.tsdb.path=/tmp/prometheus"])
    prom["healthcheck"] = {**prom["healthcheck"], "interval": "1s", "test": [
        "CMD", "python3", "-c", "import urllib.request as u; "
        f"u.urlopen('http://127.0.0.1:{prometheus_port}/-/ready', timeout=3)"]}
    prom["depends_on"] = {"gateway": {"condition": "service_healthy"}}
    compose_file = tmp_path / "docker-compose.yml"
    compose_file.write_text(yaml.safe_dump({"services": {"gateway": gateway, "prometheus": prom}}))
    project = f"tsva-test-{os.getpid()}"
    up = [*command, "-p", project, "-f", str(compose_file)]
    try:
        done = subprocess.run([*up, "up", "-d"], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        plan = stack.plan(stack.load_compose(compose_file))
        assert [s.name for s in plan] == ["gateway", "prometheus"]
        stack.wait_healthy(docker_package.from_env(timeout=10), project, plan, poll_s=0.5, report=lambda _: None)
        api = f"http://127.0.0.1:{prometheus_port}/api/v1"
        deadline, up_value = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{api}/query?query=up%7Bjob%3D%22tsva-gateway%22%7D", timeout=5) as r:
                result = json.loads(r.read())["data"]["result"]
            if result and result[0]["value"][1] == "1":
                up_value = 1
                break
            time.sleep(1)
        assert up_value == 1, "Prometheus never scraped the gateway successfully"
        with urllib.request.urlopen(f"{api}/query?query=tsva_backend_up", timeout=5) as r:
            series = json.loads(r.read())["data"]["result"]
        assert [s["value"][1] for s in series] == ["1"]
    finally:
        subprocess.run([*up, "down", "-v", "-t", "30"], capture_output=True, text=True, timeout=120)
