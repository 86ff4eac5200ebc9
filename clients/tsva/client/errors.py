"""Exceptions of the client SDK. They are tsva.common.errors' Failed / BadInput, so a `tsva` verb
that lets one through exits with the one exit-code rule (1 failed or unreachable, 2 bad input)."""
from __future__ import annotations

import grpc

from tsva.common.errors import EXIT_BAD_INPUT, EXIT_FAILED, BadInput, Failed
from tsva.common.images import ImageError


class TsvaError(Failed):
    """A call failed: carries the gRPC status code and the server's message.

    `code` is a grpc.StatusCode; `message` is the server's details (it names the field and tile).
    A call the server rejected as INVALID_ARGUMENT is bad input (exit status 2), any other failure 1.
    """

    def __init__(self, code: grpc.StatusCode, message: str, *, server: str | None = None):
        self.code = code
        self.message = message
        self.server = server
        super().__init__(f"{code.name}: {message}")

    @property
    def exit_status(self) -> int:
        return EXIT_BAD_INPUT if self.code == grpc.StatusCode.INVALID_ARGUMENT else EXIT_FAILED

    @property
    def unreachable(self) -> bool:
        """True when no connection to the server could be made (as opposed to a failed call)."""
        message = self.message.lower()
        return self.code == grpc.StatusCode.UNAVAILABLE and any(
            clue in message for clue in ("connect", "resolv", "lookup", "dns"))

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError, server: str | None = None) -> "TsvaError":
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        return cls(code or grpc.StatusCode.UNKNOWN, details or "", server=server)


class ImageInputError(ImageError, BadInput):
    """An input image (array, file or bytes) that cannot be sent; the message names the field."""


__all__ = ["TsvaError", "ImageError", "ImageInputError"]
