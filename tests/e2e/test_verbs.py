"""`tsva` in partial installs, as real processes: the gateway-only install (tsva-common, -client,
-server) and the training-only one (tsva-common, -export). Each is a throwaway virtual environment
whose site-packages holds every entry of the test environment's but the left-out distributions'
(their metadata and editable-install hooks): the interpreter sees what a real install without them
has, in a fraction of a second, without building anything."""
from __future__ import annotations

import re
import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest

MISSING = "tsva {verb}: this verb needs the {dist} package, which is not installed " \
          "(scripts/install.sh dev installs everything)\n"


def partial_install(root: Path, left_out: tuple[str, ...]) -> Path:
    """A venv whose site-packages links every entry of ours except the `left_out` distributions'."""
    venv.EnvBuilder(with_pip=False).create(root)
    ours = Path(sysconfig.get_paths()["purelib"])
    theirs = Path(sysconfig.get_paths(vars={"base": str(root), "platbase": str(root)})["purelib"])
    pattern = re.compile(r"^_*(editable_*\.?)?(%s)[-_.]" % "|".join(name.replace("-", "_") for name in left_out))
    for entry in ours.iterdir():
        if not pattern.match(entry.name):
            (theirs / entry.name).symlink_to(entry)
    return root / "bin" / "python"


def tsva(python: Path, *args, cwd: Path):
    done = subprocess.run([str(python), "-m", "tsva.common.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)
    return done.returncode, done.stdout, done.stderr


def listed(help_text: str) -> list[str]:
    return [line.split()[0] for line in help_text.splitlines() if line.startswith("    ")]


@pytest.fixture(scope="module")
def gateway_install(tmp_path_factory):
    return partial_install(tmp_path_factory.mktemp("gateway-install"), ("tsva-export",))


@pytest.fixture(scope="module")
def training_install(tmp_path_factory):
    return partial_install(tmp_path_factory.mktemp("training-install"), ("tsva-client", "tsva-server"))


def test_the_partial_installs_really_lack_the_package(gateway_install, training_install, tmp_path):
    for python, present, absent in ((gateway_install, "tsva.server", "tsva.export"),
                                    (training_install, "tsva.export", "tsva.server")):
        probe = subprocess.run([str(python), "-c", f"import {present}; import {absent}"], capture_output=True,
                               text=True, cwd=tmp_path, timeout=60)
        assert probe.returncode == 1 and f"No module named '{absent}'" in probe.stderr, probe.stderr


def test_gateway_install_names_the_training_package(gateway_install, tmp_path):
    code, out, err = tsva(gateway_install, "train", "-o", "sim", "--pairs", "2", cwd=tmp_path)
    assert (code, out, err) == (2, "", MISSING.format(verb="train", dist="tsva-export"))
    code, out, err = tsva(gateway_install, "--help", cwd=tmp_path)
    assert code == 0 and listed(out) == ["serve", "fuse", "focus", "info", "scan", "loadtest", "stack"], out
    code, out, err = tsva(gateway_install, "serve", "--help", cwd=tmp_path)
    assert code == 0 and "--model-path" in out, err


def test_training_install_has_tsva_and_names_the_gateway_package(training_install, tmp_path):
    code, out, err = tsva(training_install, "--help", cwd=tmp_path)
    assert code == 0 and listed(out) == ["simulate", "train", "evaluate", "export", "quantize"], out
    code, out, err = tsva(training_install, "serve", "--port", "1", cwd=tmp_path)
    assert (code, out, err) == (2, "", MISSING.format(verb="serve", dist="tsva-server"))
    code, out, err = tsva(training_install, "fuse", "a.png", "b.png", cwd=tmp_path)
    assert (code, out, err) == (2, "", MISSING.format(verb="fuse", dist="tsva-client"))
    code, out, err = tsva(training_install, "simulate", "--pairs", "0", "-o", tmp_path / "sim", cwd=tmp_path)
    assert (code, out) == (2, "") and err == "tsva simulate: --pairs must be >= 1, got 0\n", err

