"""A real Docker engine for the container tests: is one reachable, the gateway image built offline,
containers run on the host's network and stopped by id.

The image is built as a user without a registry would (docs/deployment.md): a bookworm base made
locally by scripts/base_image.sh (or TSVA_TEST_BASE_IMAGE, e.g. python:3.11-slim-bookworm where
one is at hand), the wheels fetched by scripts/wheelhouse.sh, and `docker build --network none`.
Containers run with `--network host`: they serve on the host's loopback, and the engine (started
by .ci/run with `--bridge=none --iptables=false`) routes no container traffic anywhere else.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from tests.support.paths import REPO_ROOT

IMAGE = "tsva-gateway:test"
BASE_IMAGE = os.environ.get("TSVA_TEST_BASE_IMAGE", "tsva-base:bookworm")


def docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({done.returncode}): {done.stderr[-3000:]}")
    return done


@functools.lru_cache(maxsize=None)
def engine_problem() -> str | None:
    """Why no engine can run containers here, or None when one can."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    try:
        done = docker("info", "--format", "{{json .ServerVersion}}", timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer `docker info` within 20 s"
    if done.returncode != 0:
        return f"no Docker engine reachable (`docker info`: {done.stderr.strip()[-300:]}); .ci/run starts one"
    return None


def require_engine() -> None:
    """Skip, with the reason in the test report (pytest -ra), where no engine can run."""
    problem = engine_problem()
    if problem:
        print(f"container tests skipped: {problem}", file=sys.stderr)
        pytest.skip(f"container tests need a Docker engine: {problem}")


def base_image(timings: dict | None = None) -> str:
    """BASE_IMAGE, made by scripts/base_image.sh when the engine lacks it."""
    require_engine()
    if docker("image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        start = time.monotonic()
        made = subprocess.run([REPO_ROOT / "scripts" / "base_image.sh", BASE_IMAGE], capture_output=True,
                              text=True, timeout=900)
        if made.returncode == 2:  # no debootstrap here: a prerequisite, not a failure of the image
            pytest.skip(f"cannot make the local base image: {made.stderr.strip()[-300:]}")
        assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-3000:]
        if timings is not None:
            timings["base_image_s"] = time.monotonic() - start
    return BASE_IMAGE


@functools.lru_cache(maxsize=None)
def build_image() -> dict:
    """Builds IMAGE offline (local base, wheelhouse, --network none); returns timings and size."""
    timings: dict = {}
    base_image(timings)
    start = time.monotonic()
    wheels = subprocess.run([REPO_ROOT / "scripts" / "wheelhouse.sh"], capture_output=True, text=True,
                            timeout=900, env={**os.environ, "PYTHON": sys.executable})
    assert wheels.returncode == 0, wheels.stderr[-3000:]
    timings["wheelhouse_s"] = time.monotonic() - start
    start = time.monotonic()
    docker("build", "--network", "none", "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}", "-t", IMAGE,
           str(REPO_ROOT), timeout=1200)
    timings["build_s"] = time.monotonic() - start
    # Earlier builds of this image (both stages) left untagged: bounded disk use on a CI machine.
    try:  # a courtesy: removing gigabytes takes long on a busy disk, and the build succeeded
        docker("image", "prune", "-f", "--filter", "label=org.opencontainers.image.title=tsva-gateway",
               check=False, timeout=300)
    except subprocess.TimeoutExpired:
        pass
    timings["size_mb"] = int(docker("image", "inspect", IMAGE, "--format", "{{.Size}}").stdout) / 1e6
    print(f"image {IMAGE}: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()), file=sys.stderr)
    return timings


def image_config(image: str = IMAGE) -> dict:
    return json.loads(docker("image", "inspect", image, "--format", "{{json .Config}}").stdout)


class Container:
    """One container of IMAGE on the host's network, removed by id on close."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, name_prefix: str = "tsva-test",
                 health_interval_s: float | None = 1.0, image: str = IMAGE):
        self.name = f"{name_prefix}-{uuid.uuid4().hex[:8]}"
        options = ["--network", "host", "--name", self.name, "--read-only", "--tmpfs", "/tmp",
                   "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
        if health_interval_s is not None:
            # The image's own HEALTHCHECK command, probed more often so a test need not wait 15 s.
            options.append(f"--health-interval={health_interval_s}s")
        for key, value in (env or {}).items():
            options += ["-e", f"{key}={value}"]
        self.started = time.monotonic()
        self.id = docker("run", "-d", *options, image, *args).stdout.strip()

    def state(self) -> dict:
        return json.loads(docker("inspect", self.id, "--format", "{{json .State}}").stdout)

    def logs(self) -> str:
        done = docker("logs", self.id, check=False)
        return done.stdout + done.stderr

    def wait_healthy(self, timeout_s: float = 120.0) -> float:
        """Seconds from `docker run` until Docker reports the HEALTHCHECK healthy."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.state()
            if state.get("Health", {}).get("Status") == "healthy":
                return time.monotonic() - self.started
            if state["Status"] == "exited":
                raise RuntimeError(f"container exited with {state['ExitCode']}:\n{self.logs()[-4000:]}")
            time.sleep(0.25)
        raise TimeoutError(f"not healthy within {timeout_s}s: {self.state().get('Health')}\n{self.logs()[-4000:]}")

    def stop(self, grace_s: float) -> tuple[int, float]:
        """`docker stop` (SIGTERM, SIGKILL after grace_s): exit status and seconds taken."""
        start = time.monotonic()
        docker("stop", "-t", str(int(grace_s)), self.id, timeout=grace_s + 30)
        return self.state()["ExitCode"], time.monotonic() - start

    def close(self) -> None:
        docker("rm", "-f", self.id, check=False)

    def __enter__(self) -> "Container":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
