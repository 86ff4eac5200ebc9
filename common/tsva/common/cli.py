"""The `tsva` command line: one entry point; each verb is a module that a distribution registers in
the entry-point group `tsva.verbs` (`[project.entry-points."tsva.verbs"]` in its pyproject.toml,
`fuse = "tsva.client.verbs.fuse"`), so a verb comes with the package that ships it.

A verb module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`, and may
define `describe_error(exc, args) -> VerbError | None`, its wording for other libraries' exceptions.
It imports heavy things (torch, onnxruntime, grpc) inside those functions: `tsva --help` imports every
verb module to read its HELP, `tsva VERB ...` only the chosen one.

Every verb's run() goes through one wrapper, `run_verb`, and one exit-code rule (tsva.common.errors):
0 ok, 1 failed or unreachable, 2 bad input, 130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType

from tsva.common.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, VerbError

GROUP = "tsva.verbs"

# The product's verbs and the distribution that ships each, in the order `tsva --help` lists them.
# Installed verbs are found through GROUP; this map only names the package to install for a verb
# that is missing, and orders the listing (other packages' verbs follow, by name).
KNOWN_VERBS: dict[str, str] = {
    "serve": "tsva-server",
    "fuse": "tsva-client",
    "focus": "tsva-client",
    "info": "tsva-client",
    "scan": "tsva-client",
    "loadtest": "tsva-client",
    "stack": "tsva-server",
    "simulate": "tsva-export",
    "train": "tsva-export",
    "evaluate": "tsva-export",
    "export": "tsva-export",
    "quantize": "tsva-export",
}

DESCRIPTION = "Two-shot virtual autofocusing: fuse two out-of-focus shots into the in-focus tile."


def installed_verbs() -> dict[str, EntryPoint]:
    """verb -> its entry point, for every installed distribution that registers verbs."""
    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=GROUP):
        found.setdefault(entry.name, entry)
    return found


def _ordered(verbs: Mapping[str, EntryPoint]) -> list[str]:
    known = [verb for verb in KNOWN_VERBS if verb in verbs]
    return known + sorted(verb for verb in verbs if verb not in KNOWN_VERBS)


def _import(entry: EntryPoint) -> ModuleType | None:
    """The verb's module; None when the module itself is absent (metadata left by an uninstalled package)."""
    try:
        return importlib.import_module(entry.module)
    except ModuleNotFoundError as exc:
        if exc.name and (entry.module == exc.name or entry.module.startswith(exc.name + ".")):
            return None
        raise


def missing_message(verb: str) -> str:
    """The line for a verb whose package is not installed."""
    if verb in KNOWN_VERBS:
        return (f"tsva {verb}: this verb needs the {KNOWN_VERBS[verb]} package, which is not installed "
                f"(scripts/install.sh dev installs everything)")
    return f"tsva {verb}: the package of this verb is not installed (only its metadata is left)"


def build_parser(argv: list[str] | None = None,
                 verbs: Mapping[str, EntryPoint] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv` (default sys.argv[1:]). When argv names an installed verb, only that
    verb's module is imported (the others are bare choices); otherwise, for the listing of
    `tsva --help`, every verb's module is, to read its HELP."""
    argv = sys.argv[1:] if argv is None else argv
    verbs = installed_verbs() if verbs is None else verbs
    chosen = argv[0] if argv and argv[0] in verbs else None
    parser = argparse.ArgumentParser(prog="tsva", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for verb in _ordered(verbs):
        if chosen is not None and verb != chosen:
            sub.add_parser(verb)
            continue
        try:
            module = _import(verbs[verb])
        except ImportError as exc:
            if verb == chosen:
                raise
            module, problem = None, f"cannot be loaded here: {exc}"  # one broken verb keeps the others listed
        else:
            problem = "its package is not installed"
        if module is None:
            sub.add_parser(verb, help=f"({problem})")
            continue
        verb_parser = sub.add_parser(verb, help=module.HELP, description=module.HELP)
        if verb == chosen:
            module.add_arguments(verb_parser)
            verb_parser.set_defaults(_module=module)
    return parser


def run_verb(verb: str, module: ModuleType, args: argparse.Namespace) -> int:
    """Runs `module.run(args)` under the one exit-code rule. A VerbError (or what the module's
    describe_error makes of another exception) becomes one line `tsva VERB: message` on stderr and
    its exit status; Ctrl-C is 130; other exceptions are bugs and keep their traceback."""
    describe = getattr(module, "describe_error", None)
    try:
        status = module.run(args)
        sys.stdout.flush()  # a broken pipe shows here rather than at interpreter exit
        return int(status or 0)
    except BrokenPipeError:
        # The reader went away (`tsva info | head -1`): nothing to tell it. Point stdout at devnull
        # so the interpreter's final flush does not fail again and print a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"tsva {verb}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        error = describe(exc, args) if describe is not None else None
        if error is None:
            if not isinstance(exc, VerbError):
                raise
            error = exc
        print(f"tsva {verb}: {error}", file=sys.stderr)
        return error.exit_status


def main(argv: list[str] | None = None, verbs: Mapping[str, EntryPoint] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    verbs = installed_verbs() if verbs is None else verbs
    verb = argv[0] if argv else None
    # A verb of a package that is not installed: say which package, before argparse reads the
    # verb's arguments (it would only say they are unrecognized).
    if (verb in KNOWN_VERBS and verb not in verbs) or (verb in verbs and _import(verbs[verb]) is None):
        print(missing_message(verb), file=sys.stderr)
        return EXIT_BAD_INPUT
    args = build_parser(argv, verbs).parse_args(argv)
    args.command_line = "tsva " + shlex.join(argv)  # what train and evaluate record for reproduction
    return run_verb(args.verb, args._module, args)


if __name__ == "__main__":
    sys.exit(main())
