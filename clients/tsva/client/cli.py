"""The `tsva` command line: one entry point, one module per verb.

Each verb's module defines `add_arguments(parser)` and `run(args) -> int`. Modules are imported
only when their verb is used, so the light client works without the gateway or the training side
installed, and a verb whose package is missing says which package to install.
"""
from __future__ import annotations

import argparse
import importlib
import shlex
import sys

# verb -> (module, distribution that ships it, one-line help)
VERBS: dict[str, tuple[str, str, str]] = {
    "serve": ("tsva.server.verbs.serve", "tsva-server", "run the gateway (embedded backend and shipped model by default)"),
    "fuse": ("tsva.client.verbs.fuse", "tsva-client", "fuse two out-of-focus shots through a server"),
    "focus": ("tsva.client.verbs.focus", "tsva-client", "find the sharpest plane of a z-stack"),
    "info": ("tsva.client.verbs.info", "tsva-client", "show server, model and limits"),
    "scan": ("tsva.client.verbs.scan", "tsva-client", "scan a whole slide through a server into a pyramidal slide"),
    "loadtest": ("tsva.client.verbs.loadtest", "tsva-client", "load-test a server"),
    "stack": ("tsva.server.verbs.stack", "tsva-server", "bring the docker compose stack up or down"),
    "simulate": ("tsva.export.verbs.simulate", "tsva-export", "write simulated training pairs to disk"),
    "train": ("tsva.export.verbs.train", "tsva-export", "train TSVA or the U-Net baseline"),
    "evaluate": ("tsva.export.verbs.evaluate", "tsva-export", "evaluate against baselines"),
    "export": ("tsva.export.verbs.export", "tsva-export", "export a checkpoint to ONNX / TensorRT"),
    "quantize": ("tsva.export.verbs.quantize", "tsva-export", "int8 CPU model from a float32 ONNX model"),
}


def _load(verb: str):
    module, dist, _ = VERBS[verb]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
            return None
        raise


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv` (default sys.argv[1:]); only the verb it names is imported."""
    parser = argparse.ArgumentParser(
        prog="tsva", description="Two-shot virtual autofocusing: fuse two out-of-focus shots into the in-focus tile.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    argv = sys.argv[1:] if argv is None else argv
    chosen = argv[0] if argv else None
    for verb, (module, dist, help_text) in VERBS.items():
        verb_parser = sub.add_parser(verb, help=help_text, description=help_text)
        # Import only the verb being run (and none for `tsva --help`), so start-up stays fast.
        if verb == chosen:
            mod = _load(verb)
            if mod is None:
                verb_parser.set_defaults(_missing=dist)
            else:
                mod.add_arguments(verb_parser)
                verb_parser.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    args.command_line = "tsva " + shlex.join(argv)  # what train and evaluate record for reproduction
    missing = getattr(args, "_missing", None)
    if missing:
        print(f"tsva {args.verb}: this verb needs the {missing} package, which is not installed "
              f"(scripts/install.sh dev installs everything)", file=sys.stderr)
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
