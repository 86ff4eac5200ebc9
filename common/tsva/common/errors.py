"""The errors every `tsva` verb reports the same way, and the one exit-code rule.

A verb raises `BadInput` (the user can fix the command: options, files, images) or `Failed` (the work
or the server failed, or could not be reached); the dispatcher (tsva.common.cli) prints the message as
one line `tsva VERB: message` on stderr and exits with the error's status. Each package's own errors
derive from these (tsva.client.errors.TsvaError, tsva.export.errors.TsvaExportError,
tsva.server.config.ConfigError, tsva.server.stack.StackError), so the verbs need no wrapper of their own.

Exit status of every verb: 0 ok, 1 failed or unreachable, 2 bad input, 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped with Ctrl-C


class VerbError(Exception):
    """An error a verb reports as one line; `exit_status` is the verb's exit status."""

    exit_status: int = EXIT_FAILED


class Failed(VerbError):
    """The work failed, or the server failed or could not be reached: exit status 1."""

    exit_status = EXIT_FAILED


class BadInput(VerbError):
    """An option, file or image the user can fix: exit status 2 (argparse's own for bad usage)."""

    exit_status = EXIT_BAD_INPUT


__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "VerbError", "Failed", "BadInput"]
