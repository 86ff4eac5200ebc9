"""Where the model repository is, and its versions as Triton lays them out.

One setting for every command that reads or writes models: `--model-repository DIR`, else the
environment variable TSVA_MODEL_REPOSITORY, else the packaged default:

1. the `model_repository/` folder of the source tree the distributions were installed from (the
   checkout of an editable or `pip install ./common` install), found through the installed
   distribution's PEP 610 record (direct_url.json), not through this file's location, so it holds
   wherever site-packages lies;
2. else FALLBACK_REPOSITORY, /opt/tsva/model_repository: where the container image copies it
   (a wheel installed from an index or a wheelhouse records no source tree).

The repository holds `<name>/config.pbtxt` and `<name>/<version>/model.onnx`, versions being
positive integers (Triton's layout). The gateway serves the newest version of the shipped model
(Triton's default `latest` policy); `tsva export` adds the next one.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

FLAG = "--model-repository"
ENV = "TSVA_MODEL_REPOSITORY"
FOLDER = "model_repository"
FALLBACK_REPOSITORY = Path("/opt/tsva/model_repository")
SHIPPED_MODEL_NAME = "tsva"
MODEL_FILE = "model.onnx"
DISTRIBUTION = "tsva-common"  # always installed with any part of TSVA; its source is <tree>/common


class ModelRepositoryError(ValueError):
    """A version cannot be added (it exists and may not be overwritten, or the name is unusable)."""


def source_tree(distribution: str = DISTRIBUTION) -> Path | None:
    """The checkout `distribution` was installed from (the folder above its project folder), or
    None when it was installed from a wheel or an index (no local directory in its PEP 610 record)."""
    try:
        text = importlib_metadata.distribution(distribution).read_text("direct_url.json")
    except importlib_metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    url = urlparse(record.get("url", ""))
    if url.scheme != "file" or "dir_info" not in record:
        return None
    return Path(unquote(url.path)).parent


def packaged_default() -> Path:
    """The repository used when neither the flag nor the environment names one."""
    tree = source_tree()
    if tree is not None and (tree / FOLDER).is_dir():
        return tree / FOLDER
    return FALLBACK_REPOSITORY


def resolve(flag_value: str | os.PathLike | None = None, environ=os.environ) -> Path:
    """The repository: the flag's value, else TSVA_MODEL_REPOSITORY, else the packaged default."""
    if flag_value:
        return Path(flag_value)
    if environ.get(ENV):
        return Path(environ[ENV])
    return packaged_default()


def add_argument(parser, **kwargs) -> None:
    """Adds --model-repository to an argparse parser (default None: `resolve` applies the rest)."""
    parser.add_argument(FLAG, default=None, metavar="DIR", help=kwargs.pop("help", None) or (
        f"model repository, Triton's layout NAME/VERSION/{MODEL_FILE} (env {ENV}; default: the "
        f"checkout's {FOLDER}/, else {FALLBACK_REPOSITORY})"), **kwargs)


# ---- versions ----------------------------------------------------------------------------------

def versions(repository: str | os.PathLike, name: str = SHIPPED_MODEL_NAME) -> list[int]:
    """The version folders of model `name`, ascending (any folder named by a positive integer)."""
    folder = Path(repository) / name
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0)


def model_file(repository: str | os.PathLike, name: str, version: int) -> Path:
    return Path(repository) / name / str(version) / MODEL_FILE


def latest_model(repository: str | os.PathLike, name: str = SHIPPED_MODEL_NAME) -> Path:
    """The newest version's model file (Triton's `latest` policy); version 1's path when the
    repository has none, so that "model not found" names where it was looked for."""
    served = [v for v in versions(repository, name) if model_file(repository, name, v).is_file()]
    return model_file(repository, name, served[-1] if served else 1)


def next_version(repository: str | os.PathLike, name: str = SHIPPED_MODEL_NAME) -> int:
    existing = versions(repository, name)
    return existing[-1] + 1 if existing else 1


@dataclass(frozen=True)
class VersionPolicy:
    """config.pbtxt's version_policy: latest N (Triton's default, N = 1), all, or specific ones."""
    kind: str = "latest"
    num_versions: int = 1
    specific: tuple[int, ...] = ()

    def serves(self, version: int, existing: list[int]) -> bool:
        """Whether Triton serves `version` once it is added next to `existing`."""
        if self.kind == "all":
            return True
        if self.kind == "specific":
            return version in self.specific
        return version in sorted({*existing, version})[-self.num_versions:]


def version_policy(repository: str | os.PathLike, name: str = SHIPPED_MODEL_NAME) -> VersionPolicy:
    """The policy in `<repository>/<name>/config.pbtxt` (the default one when absent)."""
    config = Path(repository) / name / "config.pbtxt"
    text = config.read_text() if config.is_file() else ""
    text = re.sub(r"#.*", "", text)  # comments may mention a policy
    block = re.search(r"version_policy\s*:?\s*\{\s*(latest|all|specific)\s*:?\s*\{([^}]*)\}", text)
    if block is None:
        return VersionPolicy()
    kind, body = block.group(1), block.group(2)
    if kind == "specific":
        listed = re.search(r"versions\s*:\s*\[([^\]]*)\]", body)
        numbers = re.findall(r"\d+", listed.group(1) if listed else " ".join(re.findall(r"versions\s*:\s*(\d+)", body)))
        return VersionPolicy("specific", specific=tuple(int(n) for n in numbers))
    if kind == "latest":
        count = re.search(r"num_versions\s*:\s*(\d+)", body)
        return VersionPolicy("latest", num_versions=int(count.group(1)) if count else 1)
    return VersionPolicy("all")


def new_version(repository: str | os.PathLike, name: str = SHIPPED_MODEL_NAME, *,
                version: int | None = None, overwrite: bool = False) -> tuple[int, Path]:
    """(version, model file) for a model to add: the next free version, or `version`; refuses to
    return an existing version's file unless `overwrite`. Creates nothing."""
    if not name or "/" in name or name in (".", ".."):
        raise ModelRepositoryError(f"model name {name!r}: not a folder name")
    number = next_version(repository, name) if version is None else int(version)
    if number < 1:
        raise ModelRepositoryError(f"version {number}: versions are positive integers")
    path = model_file(repository, name, number)
    if path.parent.exists() and not overwrite:
        raise ModelRepositoryError(f"{path.parent} exists: version {number} of {name!r} is not replaced "
                                   f"without --overwrite")
    return number, path


def serving_note(repository: str | os.PathLike, name: str, version: int) -> str | None:
    """None when Triton serves `version` under the model's config.pbtxt, else why not (the
    policy is the operator's: it is reported, not edited)."""
    policy = version_policy(repository, name)
    existing = [v for v in versions(repository, name) if v != version]
    if policy.serves(version, existing):
        return None
    if policy.kind == "specific":
        return (f"{Path(repository) / name / 'config.pbtxt'} serves versions "
                f"{', '.join(map(str, policy.specific)) or 'none'} only: version {version} is not served "
                f"until its version_policy lists it")
    return f"version {version} is older than the {policy.num_versions} newest: Triton does not serve it"


__all__ = ["ENV", "FALLBACK_REPOSITORY", "FLAG", "ModelRepositoryError", "SHIPPED_MODEL_NAME", "VersionPolicy",
           "add_argument", "latest_model", "model_file", "new_version", "next_version", "packaged_default",
           "resolve", "serving_note", "source_tree", "version_policy", "versions"]
