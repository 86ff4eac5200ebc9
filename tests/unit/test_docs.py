"""The documentation stays true to the tree and the command line.

- Every relative link (and image) in README.md and docs/ resolves to a file of the repository, and
  a `#anchor` to a heading of that file (GitHub's heading slugs).
- Every `--flag` the docs write next to a `tsva VERB` exists in that verb's `--help` (its parser,
  built in process by `tsva.common.cli.build_parser`, nested sub-commands included). A flag is
  "next to a verb" in two places only: a command line that runs `tsva VERB ...` (in a code block
  or an inline code span), and a table under a heading that names one verb as `tsva VERB`. Flags
  in prose are not checked: they often belong to another program (docker, trtexec, pip).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pytest
from tsva.common import cli

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FLAG = re.compile(r"(?<![\w-])--[a-z0-9][a-z0-9-]*")
# `tsva VERB` as the program of a command (after a prompt, env assignments, a path to the venv),
# never as another program's argument (`kubectl -n tsva create ...`).
COMMAND = re.compile(r"^\s*(?:\$\s+)?(?:(?:do|then|else|time|exec)\s+)?(?:\w+=\S*\s+)*"
                     r"(?:[\w./-]*/)?tsva\s+([a-z][a-z-]*)\b(.*)$")
CODE_SPAN = re.compile(r"`([^`]+)`")
# Where one command ends and the next (another program's) begins; a shell comment ends them all.
COMMAND_SPLIT = re.compile(r"\|\||&&|[|;()]|\$\(")
COMMENT = re.compile(r"(^|\s)#.*$")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces -> '-'."""
    text = re.sub(r"`|\*\*|__", "", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors, seen, fenced = set(), {}, False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else HEADING.match(line)
        if m:
            slug = _slug(m.group(2))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _lines_outside_code(text: str):
    """(line number, line) of the lines that are not inside a fenced code block."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def relative_links(path: Path) -> list[tuple[int, str]]:
    out = []
    for number, line in _lines_outside_code(path.read_text(encoding="utf-8")):
        line = CODE_SPAN.sub("", line)
        for target in LINK.findall(line):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                out.append((number, target))
    return out


def broken_links(path: Path) -> list[str]:
    problems = []
    for number, target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(ROOT)}:{number}: {target}"
        if not resolved.exists():
            problems.append(f"{where}: no such file")
        elif ROOT not in resolved.parents and resolved != ROOT:
            problems.append(f"{where}: outside the repository")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            problems.append(f"{where}: no heading with anchor #{anchor}")
    return problems


# ---- flags ----------------------------------------------------------------------------------

def _commands(text: str) -> list[tuple[int, str, str]]:
    """(line, verb, the command's own text) for every `tsva VERB ...` command line: lines of code
    blocks (with their backslash continuations) and inline code spans."""
    found, fenced, pending = [], False, None
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        pieces: list[str]
        if fenced:
            if pending is not None:
                pending = (pending[0], pending[1] + " " + line)
            else:
                pending = (number, line)
            if line.rstrip().endswith("\\"):
                continue
            pieces = [pending[1]]
            number, pending = pending[0], None
        else:
            pieces = CODE_SPAN.findall(line)
        for piece in pieces:
            for segment in COMMAND_SPLIT.split(COMMENT.sub("", piece)):
                m = COMMAND.match(segment)
                if m:
                    found.append((number, m.group(1), m.group(2)))
    return found


def _tables(text: str) -> list[tuple[int, str, str]]:
    """(line, verb, first cell) of the table rows under a heading that names one verb as `tsva VERB`."""
    found, verb = [], None
    for number, line in _lines_outside_code(text):
        heading = HEADING.match(line)
        if heading:
            verbs = re.findall(r"\btsva\s+([a-z][a-z-]*)", heading.group(2).replace("`", ""))
            verb = verbs[0] if len(verbs) == 1 and "," not in heading.group(2) else None
        elif verb and line.startswith("|") and not re.match(r"^\|[\s:|-]+\|?$", line):
            found.append((number, verb, line.split("|")[1]))
    return found


def documented_flags(path: Path) -> list[tuple[int, str, str]]:
    """(line, verb, --flag) the file states for a verb."""
    text = path.read_text(encoding="utf-8")
    out = []
    for number, verb, piece in _commands(text) + _tables(text):
        out += [(number, verb, flag) for flag in FLAG.findall(piece)]
    return out


def _all_options(parser: argparse.ArgumentParser) -> set[str]:
    options = set()
    for action in parser._actions:
        options.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                options |= _all_options(sub)
    return options


_VERB_OPTIONS: dict[str, set[str]] = {}


def verb_options(verb: str) -> set[str] | None:
    """Every option of `tsva VERB --help` (None for a verb that does not exist or is not installed)."""
    if verb not in _VERB_OPTIONS:
        if verb not in cli.installed_verbs():
            return None
        parser = cli.build_parser([verb])
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        _VERB_OPTIONS[verb] = _all_options(sub.choices[verb])
    return _VERB_OPTIONS[verb]


def unknown_flags(path: Path) -> list[str]:
    problems = []
    for number, verb, flag in documented_flags(path):
        options = verb_options(verb)
        where = f"{path.relative_to(ROOT)}:{number}"
        if verb not in cli.KNOWN_VERBS:
            problems.append(f"{where}: `tsva {verb}` is not a verb (verbs: {', '.join(cli.KNOWN_VERBS)})")
        elif options is not None and flag not in options:
            problems.append(f"{where}: `tsva {verb} {flag}`: no such flag in `tsva {verb} --help`")
    return problems


# ---- the tests ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    assert broken_links(path) == []


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_flags_named_for_a_verb_exist(path):
    assert unknown_flags(path) == []


def test_docs_are_checked_at_all():
    """The checks above see the README's links and the serve table's and command lines' flags."""
    assert len(relative_links(ROOT / "README.md")) >= 10
    flags = {(verb, flag) for p in DOC_FILES for _, verb, flag in documented_flags(p)}
    assert ("serve", "--max-batch") in flags          # the serve flag table
    assert ("fuse", "--dd") in flags                  # a command line in a code block
    assert ("serve", "--triton-urls") in flags        # an inline code span
    assert len({verb for verb, _ in flags}) >= 6


def test_the_checks_catch_mistakes(tmp_path, monkeypatch):
    """A broken link, a missing anchor and a misspelt flag are reported; other programs' flags
    and flags in prose are not."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "other.md").write_text("# Other page\n\n## The `tsva serve` flags\n")
    doc = tmp_path / "page.md"
    doc.write_text(
        "# Page\n\n[ok](other.md#the-tsva-serve-flags) [gone](missing.md) [bad](other.md#nope) "
        "[web](https://example.org/x.md) `[not a link](nowhere.md)`\n\n"
        "Prose may say --anything.\n\n"
        "```console\n$ tsva serve --max-batch 8 --no-such-flag \\\n    --port 1  # --comment-flag\n"
        "$ docker run --rm tsva-gateway serve --whatever\n$ tsva fuse a b --dd 1 | grep --count x\n```\n\n"
        "Run `tsva info --jsn` or `tsva nonverb --x`.\n\n"
        "## tsva serve\n\n| flag | meaning |\n| --- | --- |\n| `--grace-s` | ok |\n| `--grase-s` | typo |\n")
    assert broken_links(doc) == ["page.md:3: missing.md: no such file",
                                 "page.md:3: other.md#nope: no heading with anchor #nope"]
    assert unknown_flags(doc) == [
        "page.md:8: `tsva serve --no-such-flag`: no such flag in `tsva serve --help`",
        "page.md:14: `tsva info --jsn`: no such flag in `tsva info --help`",
        f"page.md:14: `tsva nonverb` is not a verb (verbs: {', '.join(cli.KNOWN_VERBS)})",
        "page.md:21: `tsva serve --grase-s`: no such flag in `tsva serve --help`",
    ]
