"""Security of the gateway's gRPC port: TLS, mutual TLS and bearer tokens.

Everything is checked at start-up: a bad certificate, a key that does not match it, a missing or
empty token file raise SecurityConfigError, so the server never runs open by accident.
Health and reflection stay open for probes (kubelet, docker HEALTHCHECK, load balancers).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

from tsva.common.credentials import (AUTHORIZATION_KEY, BEARER_PREFIX, SecurityConfigError, check_key_pair,
                                  check_pem_certificates, check_token, token_lines)

__all__ = ["SecurityConfigError", "server_credentials", "auth_interceptors", "BearerTokenInterceptor",
           "read_tokens", "OPEN_METHOD_PREFIXES"]

log = logging.getLogger(__name__)

# Services that answer without a token: probes must work without secrets.
OPEN_METHOD_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def server_credentials(cert_file: str | Path | None, key_file: str | Path | None,
                       client_ca_file: str | Path | None) -> grpc.ServerCredentials | None:
    """TLS credentials for the gRPC port; None (plaintext) only when no file is given at all.

    client_ca_file: clients must present a certificate signed by this CA (mutual TLS).
    """
    if cert_file is None and key_file is None and client_ca_file is None:
        return None
    if cert_file is None or key_file is None:
        raise SecurityConfigError("--tls-cert and --tls-key: TLS needs both the server certificate and its key"
                                  + (" (--tls-client-ca alone cannot enable mutual TLS)" if client_ca_file else ""))
    cert, key = check_key_pair(cert_file, key_file, "--tls-cert", "--tls-key")
    client_ca = None
    if client_ca_file is not None:
        client_ca = check_pem_certificates(client_ca_file, "--tls-client-ca")
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None)


def read_tokens(token_file: str | Path) -> list[str]:
    """Accepted tokens: one per line (several allow rotation), blank and # lines ignored."""
    return [check_token(token, "--token-file") for token in token_lines(token_file, "--token-file")]


def _digest(value: str) -> bytes:
    # Comparing fixed-length digests keeps compare_digest constant-time in the token's length too.
    return hashlib.sha256(value.encode("utf-8")).digest()


def _deny_handler(handler: grpc.RpcMethodHandler | None, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind as `handler` that answers UNAUTHENTICATED."""

    async def deny(request_or_iterator, context: grpc.aio.ServicerContext):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    request_streaming = handler.request_streaming if handler is not None else False
    response_streaming = handler.response_streaming if handler is not None else False
    if request_streaming and response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    if request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    if response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Requires `authorization: Bearer <token>` metadata on every method except OPEN_METHOD_PREFIXES."""

    def __init__(self, tokens: list[str]):
        if not tokens:
            raise SecurityConfigError("--token-file: no token to accept")
        self._digests = [_digest(token) for token in tokens]

    def _authorized(self, metadata) -> tuple[bool, str]:
        values = [value for key, value in (metadata or ()) if key == AUTHORIZATION_KEY]
        if not values:
            return False, f"missing bearer token: send metadata '{AUTHORIZATION_KEY}: {BEARER_PREFIX}<token>'"
        value = values[0] if isinstance(values[0], str) else values[0].decode("utf-8", errors="replace")
        if not value.startswith(BEARER_PREFIX):
            return False, f"'{AUTHORIZATION_KEY}' metadata must be '{BEARER_PREFIX}<token>'"
        presented = _digest(value[len(BEARER_PREFIX):].strip())
        # Check every accepted token (no early exit) so timing says nothing about which matched.
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(presented, digest)
        return (True, "") if matched else (False, "invalid bearer token")

    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
            handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = handler_call_details.method or ""
        if method.startswith(OPEN_METHOD_PREFIXES):
            return await continuation(handler_call_details)
        ok, reason = self._authorized(handler_call_details.invocation_metadata)
        if ok:
            return await continuation(handler_call_details)
        # Log the method and the reason only: never the presented token.
        log.warning("rejected call to %s: %s", method, reason)
        return _deny_handler(await continuation(handler_call_details), reason)


def auth_interceptors(token_file: str | Path | None) -> list[grpc.aio.ServerInterceptor]:
    """Interceptors enforcing bearer tokens from `token_file`; empty list when token_file is None."""
    if token_file is None:
        return []
    return [BearerTokenInterceptor(read_tokens(token_file))]
