"""`tsva serve`: the gateway. No flag is needed; every flag also has a TSVA_* environment variable."""
from __future__ import annotations

import argparse
import sys

from tsva.server import config as config_module

HELP = "run the gateway (embedded backend and shipped model by default)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Serve tsva.v1 over gRPC (default port 50051) with Prometheus metrics (default "
                          "port 9464), the embedded ONNX Runtime backend and the shipped model.")
    config_module.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from tsva.server.app import main

    config = config_module.from_namespace(args)  # a ConfigError is bad input: `tsva serve: ...`, exit 2
    return main(config)


def main(argv: list[str] | None = None) -> int:
    """`python -m tsva.server`: the same parser, run under the same error rule as `tsva serve`."""
    from tsva.common.cli import run_verb

    parser = argparse.ArgumentParser(prog="python -m tsva.server")
    add_arguments(parser)
    return run_verb("serve", sys.modules[__name__], parser.parse_args(argv))
