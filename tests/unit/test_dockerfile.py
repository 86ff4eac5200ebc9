"""The gateway's Dockerfile and .dockerignore, checked against the code: parsed and compared with the
gateway's ports, env names, model path, the install script and the offline wheelhouse. The image
itself is built and run under a real engine in test_container.py; where no engine can run, the
image's install step is replayed here instead, in a temporary folder (the build context that
.dockerignore lets through, the same `scripts/install.sh image` command) into a fresh virtual
environment, from which a gateway is started and probed with the image's HEALTHCHECK command."""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import fields
from pathlib import Path

from tsva.client import healthcheck
from tsva.common import model_repository
from tsva.server import config as gateway_config

from tests.support.dockerfile import (
    DOCKERFILE,
    IGNORE,
    STAGES,
    _install_command,
    _install_run,
    _instructions,
    dockerignore_excludes,
)
from tests.support.paths import REPO_ROOT

FINAL = dict((i, a) for i, a in STAGES[-1] if i not in ("ENV", "COPY", "RUN", "LABEL"))


def _env(stage) -> dict[str, str]:
    env = {}
    for arguments in _instructions(stage, "ENV"):
        for item in shlex.split(arguments):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def test_multi_stage_slim_non_root():
    assert len(STAGES) >= 2
    default_base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", DOCKERFILE, re.M).group(1)
    assert "slim" in default_base and default_base.startswith("python:3.11")
    user = FINAL["USER"].split(":")[0]
    assert user.isdigit() and int(user) != 0
    assert json.loads(FINAL["ENTRYPOINT"]) == ["tsva"] and json.loads(FINAL["CMD"]) == ["serve"]


def test_ports_env_and_model_agree_with_the_gateway():
    defaults = gateway_config.Config()
    assert {int(p) for p in FINAL["EXPOSE"].split()} == {defaults.port, defaults.metrics_port}
    env = _env(STAGES[-1])
    known = {f.metadata["option"].env for f in fields(gateway_config.Config)}
    known |= {healthcheck.ENV_PREFIX + a.dest.upper() for a in healthcheck.build_parser()._actions}
    tsva_env = {k for k in env if k.startswith("TSVA_")}
    assert tsva_env <= known, tsva_env - known
    # TSVA_MODEL_REPOSITORY is the copied model repository; the model the gateway serves from it
    # by default is the file the repository ships.
    source, destination = next(a.split() for a in _instructions(STAGES[-1], "COPY") if a.startswith("model_repository"))
    relative = Path(env["TSVA_MODEL_REPOSITORY"]).relative_to(destination.rstrip("/"))
    served = model_repository.latest_model(REPO_ROOT / source / relative)
    assert served.is_file()
    assert served.resolve() == Path(gateway_config.DEFAULT_MODEL_PATH).resolve()


def test_healthcheck_uses_grpc_health():
    healthcheck_line = FINAL["HEALTHCHECK"]
    command = json.loads(healthcheck_line.split("CMD", 1)[1])
    assert command == ["python", "-m", "tsva.client.healthcheck"]
    assert _env(STAGES[-1])["TSVA_HEALTHCHECK_SERVER"].endswith(f":{gateway_config.Config().port}")


def test_install_step_is_the_ci_script_without_torch():
    command = _install_command()
    assert command[0] == "scripts/install.sh"
    profile, venv = command[1], command[2]
    script = (REPO_ROOT / "scripts/install.sh").read_text()
    line = next(l for l in script.splitlines() if l.strip().startswith(f"{profile})"))
    assert "clients" in line and "server" in line and "export" not in line and "test.txt" not in line
    # The runtime stage takes the environment from the same path (venv scripts hard-code it).
    assert any(a.startswith("--from=") and f" {venv} {venv}" in f" {a.split(' ', 1)[1]}"
               for a in _instructions(STAGES[-1], "COPY"))
    assert _env(STAGES[-1])["PATH"].startswith(f"{venv}/bin:")


def test_offline_build_installs_from_the_wheelhouse_alone():
    """With wheels in requirements/wheelhouse/ (scripts/wheelhouse.sh), pip gets --no-index and that
    folder, so `docker build --network none` needs no registry; the base is a build argument."""
    run = _install_run()
    assert "requirements/wheelhouse/*.whl" in run
    assert "PIP_NO_INDEX=1" in run and "PIP_FIND_LINKS=/src/requirements/wheelhouse" in run
    assert any(a.startswith("requirements/") for a in _instructions(STAGES[0], "COPY"))
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS build$", DOCKERFILE, re.M)
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS runtime$", DOCKERFILE, re.M)
    # The wheels stay in the build stage: the runtime copies only the venv and the model repository.
    assert not any("wheelhouse" in a or a.startswith("requirements") for a in _instructions(STAGES[-1], "COPY"))
    wheelhouse = (REPO_ROOT / "scripts/wheelhouse.sh").read_text()
    assert "requirements/wheelhouse" in wheelhouse and "setuptools" in wheelhouse and "wheel" in wheelhouse


def test_dockerignore_lets_through_only_what_is_copied():
    copied = [a.split()[0] for stage in STAGES for a in _instructions(stage, "COPY") if not a.startswith("--from")]
    for source in copied:
        assert not dockerignore_excludes(IGNORE, source.rstrip("/")), source
    for kept_out in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "export/pyproject.toml",
                     "clients/build/lib/x.py", "server/tsva_server.egg-info/PKG-INFO", "runs/log.txt",
                     "clients/tsva/client/__pycache__/cli.cpython-311.pyc"):
        assert dockerignore_excludes(IGNORE, kept_out), kept_out
