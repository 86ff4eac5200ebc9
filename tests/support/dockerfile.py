"""Reading the Dockerfile and .dockerignore in tests: stages, instructions, the install command."""
from __future__ import annotations

import fnmatch
import shlex

from tests.support.paths import REPO_ROOT


def parse_dockerfile(text: str) -> list[list[tuple[str, str]]]:
    """Stages, each a list of (INSTRUCTION, arguments); continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    stages: list[list[tuple[str, str]]] = [[]]
    for line in logical:
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM" and stages[-1] and any(i == "FROM" for i, _ in stages[-1]):
            stages.append([])
        stages[-1].append((instruction, arguments.strip()))
    return stages


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last matching pattern wins, '!' re-includes; a pattern matching a folder
    covers everything in it; '**' matches any number of folders (none included)."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        variants = {pattern, pattern[3:]} if pattern.startswith("**/") else {pattern}
        if any(fnmatch.fnmatchcase(candidate, variant) for candidate in candidates for variant in variants):
            excluded = not negate
    return excluded


DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()


STAGES = parse_dockerfile(DOCKERFILE)


IGNORE = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
          if line.strip() and not line.startswith("#")]


def _instructions(stage, name):
    return [arguments for instruction, arguments in stage if instruction == name]


def _install_run() -> str:
    return next(a for a in _instructions(STAGES[0], "RUN") if "install.sh" in a)


def _install_command() -> list[str]:
    """The `scripts/install.sh PROFILE VENV` call inside the install RUN (after its offline switch)."""
    words = shlex.split(_install_run())
    start = words.index("scripts/install.sh")
    return words[start:start + 3]
