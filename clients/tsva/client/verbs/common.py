"""What every client verb shares: the connection options, opening a Client, and the wording of
failures (one clear line on stderr, no stack trace) for the dispatcher's one error rule
(tsva.common.cli.run_verb, tsva.common.errors).

Exit status: 0 success, 1 the server or the call failed, 2 bad input (options, files, images),
130 interrupted. A reader that closes stdout early (`tsva info | head -1`) ends the verb quietly
with 1, Python's own status for a broken pipe.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Callable

# The verbs' exit statuses, as common.EXIT_*: the one rule of tsva.common.errors.
from tsva.common.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, BadInput, Failed  # noqa: F401
from tsva.common.errors import EXIT_FAILED as EXIT_CALL_FAILED


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """--server, TLS, token and timeout options (loadtest reuses them)."""
    from tsva.client._core import DEFAULT_SERVER

    group = parser.add_argument_group("connection")
    group.add_argument("--server", metavar="HOST:PORT", default=os.environ.get("TSVA_SERVER", DEFAULT_SERVER),
                       help="gateway address (env TSVA_SERVER; default %(default)s)")
    group.add_argument("--tls-ca", metavar="PEM", help="CA certificate(s) that signed the server's: use TLS")
    group.add_argument("--tls-cert", metavar="PEM", help="client certificate, for servers that require mutual TLS")
    group.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    tokens = group.add_mutually_exclusive_group()
    tokens.add_argument("--token", default=os.environ.get("TSVA_TOKEN"),
                        help="bearer token sent with every call (env TSVA_TOKEN; prefer --token-file: "
                             "command lines are visible to other users)")
    tokens.add_argument("--token-file", metavar="FILE", help="file whose first line is the bearer token")
    group.add_argument("--timeout", type=_positive_float, metavar="SECONDS",
                       help="deadline of each call (default: none)")


def number_type(kind: type, bound: int, *, exclusive: bool = False) -> Callable[[str], int | float]:
    """An argparse `type` parsing `kind` (int or float) and refusing values below `bound` (or equal
    to it, `exclusive`): "not an integer: 'x'" / "not a number: 'x'", "must be >= 1, got 0"."""
    noun = "an integer" if kind is int else "a number"
    relation = ">" if exclusive else ">="

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        if value <= bound if exclusive else value < bound:
            raise argparse.ArgumentTypeError(f"must be {relation} {bound}, got {text}")
        return value

    return parse


_positive_float = number_type(float, 0, exclusive=True)


def token_of(args: argparse.Namespace) -> str | None:
    """The bearer token of --token-file (read now) or --token; raises SecurityConfigError for a bad file."""
    from tsva.client import security

    return security.read_token(args.token_file) if getattr(args, "token_file", None) else args.token


def connect(args: argparse.Namespace, **overrides):
    """A Client for the connection options in `args`; raises SecurityConfigError for bad TLS/token files."""
    from tsva.client.sdk import Client

    token = token_of(args)
    kwargs = dict(tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key, token=token,
                  timeout=args.timeout)
    kwargs.update(overrides)
    return Client(args.server, **kwargs)


# A running server that speaks TLS, or wants a client certificate, looks unreachable to a client
# without them (the handshake fails: "Socket closed"), so the message names both options.
TLS_HINT = "a TLS server needs --tls-ca, a mutual-TLS one also --tls-cert and --tls-key"


def describe_failure(exc: BaseException, server: str | None = None) -> tuple[str, int] | None:
    """(one line for a human, exit status) for a failure of a client verb; None for an exception
    that is not a failure of the call or of the input (a bug: shown in full)."""
    import grpc

    from tsva.client import security
    from tsva.client.errors import TsvaError

    if isinstance(exc, TsvaError):
        where = exc.server or server or "the server"
        if exc.unreachable:
            return (f"cannot reach the server at {where} (is `tsva serve` running? --server HOST:PORT "
                    f"picks another; {TLS_HINT}): {exc.message}", EXIT_CALL_FAILED)
        if exc.code == grpc.StatusCode.UNAUTHENTICATED:
            return f"{where} refused the credentials (--token / --token-file): {exc.message}", EXIT_CALL_FAILED
        if exc.code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"no answer from {where} within the deadline (--timeout): {exc.message}", EXIT_CALL_FAILED
        if exc.code == grpc.StatusCode.INVALID_ARGUMENT:
            return f"{where} rejected the input: {exc.message}", EXIT_BAD_INPUT
        if exc.code == grpc.StatusCode.UNAVAILABLE:
            return f"{where} is unavailable: {exc.message}", EXIT_CALL_FAILED
        return f"{where} answered {exc.code.name}: {exc.message}", EXIT_CALL_FAILED
    if isinstance(exc, security.SecurityConfigError):
        return str(exc), EXIT_BAD_INPUT
    if isinstance(exc, OSError):
        name = f" {exc.filename!r}" if exc.filename else ""
        return f"{exc.strerror or exc}{name}", EXIT_BAD_INPUT
    if isinstance(exc, ValueError):  # ImageInputError is one; other exceptions are bugs: shown in full
        return str(exc), EXIT_BAD_INPUT
    return None


def describe_error(exc: Exception, args: argparse.Namespace) -> BadInput | Failed | None:
    """The dispatcher's hook for the client verbs (fuse, focus, info, scan): `tsva VERB: error: ...`,
    worded as argparse words its own errors, with describe_failure's exit status."""
    described = describe_failure(exc, getattr(args, "server", None))
    if described is None:
        return None
    message, status = described
    return (BadInput if status == EXIT_BAD_INPUT else Failed)(f"error: {message}")


def format_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
