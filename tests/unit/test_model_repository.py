"""tsva.common.model_repository: which repository (flag > TSVA_MODEL_REPOSITORY > packaged
default), which version is served (the newest), which one an export adds (the next, never over
an existing one unless asked), and what config.pbtxt's version policy says about it."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
from tsva.common import model_repository as repo
from tsva.server import config as gateway_config

from tests.support.paths import REPO_ROOT


def _model(root: Path, name: str, version: int | str) -> Path:
    path = root / name / str(version) / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"onnx")
    return path


def test_flag_beats_environment_beats_packaged_default(tmp_path):
    env = {repo.ENV: str(tmp_path / "from-env")}
    assert repo.resolve(tmp_path / "from-flag", env) == tmp_path / "from-flag"
    assert repo.resolve(None, env) == tmp_path / "from-env"
    assert repo.resolve(None, {}) == repo.packaged_default()
    parser = argparse.ArgumentParser()
    repo.add_argument(parser)
    assert parser.parse_args([repo.FLAG, "/x"]).model_repository == "/x"
    assert parser.parse_args([]).model_repository is None  # resolve() decides


def test_packaged_default_is_the_checkouts_repository_from_the_install_record():
    # This venv's tsva-common is an editable install of <checkout>/common (PEP 610 direct_url.json).
    assert repo.source_tree() == REPO_ROOT
    assert repo.packaged_default() == REPO_ROOT / "model_repository"
    assert repo.source_tree("no-such-distribution") is None


def test_newest_version_is_served_and_the_shipped_model_is_version_1(tmp_path):
    assert repo.latest_model(REPO_ROOT / "model_repository") == REPO_ROOT / "model_repository/tsva/1/model.onnx"
    assert repo.latest_model(tmp_path) == tmp_path / "tsva" / "1" / "model.onnx"  # none: where it was looked for
    for version in (1, 2, 10):
        _model(tmp_path, "tsva", version)
    (tmp_path / "tsva" / "11").mkdir()          # a version folder without its model file is skipped
    _model(tmp_path, "tsva", "latest")          # not a version
    _model(tmp_path, "other", 99)
    assert repo.versions(tmp_path) == [1, 2, 10, 11]
    assert repo.latest_model(tmp_path) == tmp_path / "tsva" / "10" / "model.onnx"


def test_gateway_model_path_follows_the_repository_setting(tmp_path, monkeypatch):
    for key in ("TSVA_MODEL_PATH", repo.ENV):
        monkeypatch.delenv(key, raising=False)
    assert Path(gateway_config.parse([]).model_path) == REPO_ROOT / "model_repository/tsva/1/model.onnx"
    _model(tmp_path, "tsva", 3)
    monkeypatch.setenv(repo.ENV, str(tmp_path))
    assert gateway_config.parse([]).model_path == str(tmp_path / "tsva" / "3" / "model.onnx")
    other = tmp_path / "flag"
    _model(other, "tsva", 5)
    assert gateway_config.parse([repo.FLAG, str(other)]).model_path == str(other / "tsva" / "5" / "model.onnx")
    # --model-path and TSVA_MODEL_PATH still name the file itself.
    monkeypatch.setenv("TSVA_MODEL_PATH", "/models/a.onnx")
    assert gateway_config.parse([repo.FLAG, str(other)]).model_path == "/models/a.onnx"
    assert gateway_config.parse(["--model-path", "/models/b.onnx"]).model_path == "/models/b.onnx"


def test_export_takes_the_next_version_and_refuses_to_overwrite(tmp_path):
    assert repo.new_version(tmp_path) == (1, tmp_path / "tsva" / "1" / "model.onnx")
    _model(tmp_path, "tsva", 1)
    _model(tmp_path, "tsva", 4)
    assert repo.next_version(tmp_path) == 5
    assert repo.new_version(tmp_path) == (5, tmp_path / "tsva" / "5" / "model.onnx")
    with pytest.raises(repo.ModelRepositoryError, match="version 4 of 'tsva' is not replaced without --overwrite"):
        repo.new_version(tmp_path, version=4)
    assert repo.new_version(tmp_path, version=4, overwrite=True) == (4, tmp_path / "tsva" / "4" / "model.onnx")
    with pytest.raises(repo.ModelRepositoryError):
        repo.new_version(tmp_path, version=0)
    with pytest.raises(repo.ModelRepositoryError):
        repo.new_version(tmp_path, "../escape")


def test_version_policy_of_config_pbtxt(tmp_path):
    shipped = repo.version_policy(REPO_ROOT / "model_repository")
    assert shipped == repo.VersionPolicy("latest", num_versions=1)
    assert repo.version_policy(tmp_path) == repo.VersionPolicy()  # no config: Triton's default
    (tmp_path / "tsva").mkdir()
    config = tmp_path / "tsva" / "config.pbtxt"
    config.write_text('name: "tsva"\n# version_policy: { all: {} }\nversion_policy: { specific: { versions: [1, 3] } }\n')
    assert repo.version_policy(tmp_path) == repo.VersionPolicy("specific", specific=(1, 3))
    _model(tmp_path, "tsva", 1)
    note = repo.serving_note(tmp_path, "tsva", 2)
    assert note is not None and "serves versions 1, 3 only: version 2 is not served" in note
    assert repo.serving_note(tmp_path, "tsva", 3) is None
    config.write_text("version_policy: { latest: { num_versions: 2 } }")
    _model(tmp_path, "tsva", 5)
    assert repo.serving_note(tmp_path, "tsva", 6) is None and repo.serving_note(tmp_path, "tsva", 4) is None
    _model(tmp_path, "tsva", 6)
    assert "older than the 2 newest" in repo.serving_note(tmp_path, "tsva", 4)
    config.write_text("version_policy: { all { } }")
    assert repo.version_policy(tmp_path).kind == "all" and repo.serving_note(tmp_path, "tsva", 2) is None


# ---- the verbs' defaults (in process: the verb's run() on a tiny checkpoint) ---------------------

@pytest.fixture
def checkpoint(tmp_path, torch_one_thread):
    from tsva.export.checkpoint import save_checkpoint
    from tsva.export.network import NetworkConfig, build_network
    from tsva.export.optics import Optics

    net = build_network(NetworkConfig(base_width=4, depth=2)).eval()
    path = tmp_path / "best.pt"
    save_checkpoint(path, net, net.config, optics=Optics().to_dict(), train={"patch_size": 64},
                    training_data="tiny", training_command="tsva train --tiny")
    return path


def _export(*argv: str) -> int:
    """The export verb's run() without the parity check; a user error is exit status 2 and one
    `tsva export: ...` line on stderr, as the `tsva` entry point reports it."""
    from tsva.export.errors import TsvaExportError
    from tsva.export.verbs import export as export_verb

    parser = argparse.ArgumentParser()
    export_verb.add_arguments(parser)
    try:
        return export_verb.run(parser.parse_args([*argv, "--no-parity"]))
    except TsvaExportError as exc:
        print(f"tsva export: {exc}", file=sys.stderr)
        return 2


def test_export_adds_the_next_version_with_its_number_and_no_borrowed_summary(checkpoint, tmp_path, capsys):
    from tsva.common.metadata import read_onnx_metadata

    repository = tmp_path / "repository"
    assert _export(str(checkpoint), repo.FLAG, str(repository)) == 0
    assert _export(str(checkpoint), repo.FLAG, str(repository)) == 0
    first, second = (read_onnx_metadata(repo.model_file(repository, "tsva", v)) for v in (1, 2))
    assert (first.model_version, second.model_version) == ("1", "2")
    assert second.evaluation_summary == "" and second.training_command == "tsva train --tiny"
    assert repo.latest_model(repository) == repo.model_file(repository, "tsva", 2)
    assert "model_version 2" in capsys.readouterr().out
    before = repo.model_file(repository, "tsva", 1).read_bytes()
    capsys.readouterr()
    assert _export(str(checkpoint), repo.FLAG, str(repository), "--model-version", "1") == 2
    assert "version 1 of 'tsva' is not replaced without --overwrite" in capsys.readouterr().err
    assert repo.model_file(repository, "tsva", 1).read_bytes() == before and repo.versions(repository) == [1, 2]
    evaluation = tmp_path / "evaluation.json"
    evaluation.write_text('{"summary": "this model: 33 dB"}')
    assert _export(str(checkpoint), repo.FLAG, str(repository), "--model-version", "1", "--overwrite",
                   "--evaluation", str(evaluation)) == 0
    assert read_onnx_metadata(repo.model_file(repository, "tsva", 1)).evaluation_summary == "this model: 33 dB"
    assert _export(str(checkpoint), repo.FLAG, str(repository), "--evaluation", str(tmp_path / "missing.json")) == 2
    assert "tsva export: --evaluation" in capsys.readouterr().err
    assert repo.versions(repository) == [1, 2]  # a refused export leaves no version behind


def test_export_to_an_explicit_file_and_a_pinned_policy_is_reported(checkpoint, tmp_path, capsys):
    from tsva.common.metadata import read_onnx_metadata

    assert _export(str(checkpoint), "-o", str(tmp_path / "out.onnx")) == 0
    assert read_onnx_metadata(tmp_path / "out.onnx").model_version == "1"  # -o: today's default version
    repository = tmp_path / "repository"
    (repository / "tsva").mkdir(parents=True)
    (repository / "tsva" / "config.pbtxt").write_text("version_policy: { specific: { versions: [1] } }")
    _model(repository, "tsva", 1)
    assert _export(str(checkpoint), repo.FLAG, str(repository)) == 0
    assert repo.model_file(repository, "tsva", 2).is_file()
    assert "version 2 is not served until its version_policy lists it" in capsys.readouterr().err


def test_evaluate_writes_a_new_run_folder_by_default(monkeypatch, tmp_path):
    from tsva.export.verbs import evaluate as evaluate_verb

    parser = argparse.ArgumentParser()
    evaluate_verb.add_arguments(parser)
    assert parser.parse_args([]).output is None
    folder = evaluate_verb.run_folder(0.0)
    assert folder.parent == Path("runs") and folder.name.startswith("evaluate-") and len(folder.name) == 24
    assert evaluate_verb.run_folder(3600.0) != folder
