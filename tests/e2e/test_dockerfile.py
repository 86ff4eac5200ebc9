"""The gateway's Dockerfile and .dockerignore, checked against the code: parsed and compared with the
gateway's ports, env names, model path, the install script and the offline wheelhouse. The image
itself is built and run under a real engine in test_container.py; where no engine can run, the
image's install step is replayed here instead, in a temporary folder (the build context that
.dockerignore lets through, the same `scripts/install.sh image` command) into a fresh virtual
environment, from which a gateway is started and probed with the image's HEALTHCHECK command."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.dockerfile import IGNORE, _install_command, dockerignore_excludes
from tests.support.gateway import free_port
from tests.support.models import make_tiny_onnx
from tests.support.paths import REPO_ROOT


def _build_context(tmp: Path) -> Path:
    """The files `docker build .` would send (what .dockerignore lets through), in a fresh folder."""
    context = tmp / "context"
    reincluded = [p[1:].rstrip("/") for p in IGNORE if p.startswith("!")]
    for folder, dirs, files in os.walk(REPO_ROOT):
        base = Path(folder).relative_to(REPO_ROOT).as_posix()
        base = "" if base == "." else base + "/"
        # Skip folders that are excluded and hold nothing re-included (.venv, .git, ...).
        dirs[:] = [d for d in dirs if not dockerignore_excludes(IGNORE, base + d)
                   or any(r.startswith(base + d + "/") for r in reincluded)]
        for name in files:
            relative = base + name
            if dockerignore_excludes(IGNORE, relative):
                continue
            target = context / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / relative, target, follow_symlinks=False)
    return context


@pytest.mark.slow
def test_image_install_replayed_serves_and_passes_its_healthcheck(tmp_path):
    """The stand-in for the real image where no engine runs (test_container.py builds the image)."""
    from tests.support.docker_engine import engine_problem

    if engine_problem() is None:
        pytest.skip("a Docker engine runs here: test_container.py builds and runs the image itself")
    context = _build_context(tmp_path)
    assert not (context / "export").exists() and not (context / "tests").exists()
    venv = tmp_path / "venv"
    # The image's Python is 3.11 like this one; install.sh keeps an existing venv.
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
    command = _install_command()
    done = subprocess.run([command[0], command[1], str(venv)], cwd=context, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    python = venv / "bin" / "python"
    assert subprocess.run([python, "-c", "import torch"], capture_output=True).returncode != 0  # no torch
    assert subprocess.run([venv / "bin" / "tsva", "serve", "--help"], capture_output=True).returncode == 0
    # Not editable: the installed code does not come from the build context.
    where = subprocess.run([python, "-c", "import tsva.server, tsva.client; print(tsva.server.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert str(venv) in where.stdout, where.stdout + where.stderr
    model = make_tiny_onnx(tmp_path / "model.onnx")
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TSVA_")}
    env.update(TSVA_MODEL_PATH=str(model), TSVA_PORT=str(port), TSVA_METRICS_PORT=str(metrics_port),
               TSVA_HOST="127.0.0.1", TSVA_METRICS_HOST="127.0.0.1", TSVA_HEALTHCHECK_SERVER=f"127.0.0.1:{port}")
    server = subprocess.Popen([venv / "bin" / "tsva", "serve"], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        probe = [python, "-m", "tsva.client.healthcheck", "--timeout", "2"]  # the HEALTHCHECK, env-configured
        deadline = time.monotonic() + 60
        while True:
            result = subprocess.run(probe, env=env, capture_output=True, text=True)
            if result.returncode == 0 or time.monotonic() > deadline or server.poll() is not None:
                break
            time.sleep(0.3)
        assert result.returncode == 0, result.stderr
        assert "SERVING" in result.stdout
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert server.returncode == 0  # graceful shutdown on SIGTERM, as `docker stop` sends
