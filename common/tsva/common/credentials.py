"""Credential checks shared by client and gateway: PEM certificates, key pairs, bearer tokens.

Every file is read and checked here, before a channel or server exists, so a typo in a path or a key
that does not belong to its certificate is one clear error instead of a handshake failure later.
No grpc here: the client's channel credentials (tsva.client.security) and the gateway's server
credentials (tsva.server.security) are built from what these checks return.
"""
from __future__ import annotations

import ssl
from pathlib import Path

AUTHORIZATION_KEY = "authorization"  # gRPC metadata keys are lower case
BEARER_PREFIX = "Bearer "


class SecurityConfigError(Exception):
    """A certificate, key, CA or token file is missing, unreadable or inconsistent."""


def read_file(path: str | Path, what: str) -> bytes:
    """Bytes of `path`, or SecurityConfigError naming `what` (e.g. "--tls-cert") and the reason."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SecurityConfigError(f"{what}: cannot read {str(path)!r}: {exc.strerror or exc}") from exc
    if not data.strip():
        raise SecurityConfigError(f"{what}: {str(path)!r} is empty")
    return data


def check_pem_certificates(path: str | Path, what: str) -> bytes:
    """Reads a PEM file of one or more certificates (a certificate or a CA bundle)."""
    data = read_file(path, what)
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise SecurityConfigError(f"{what}: {str(path)!r} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    try:
        ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:
        raise SecurityConfigError(f"{what}: {str(path)!r} is not a valid PEM certificate: {exc}") from exc
    return data


def check_key_pair(cert_file: str | Path, key_file: str | Path, cert_what: str, key_what: str) -> tuple[bytes, bytes]:
    """Reads a certificate and its private key and checks that they belong together.

    OpenSSL (through the standard library's ssl module) does the check, so no extra dependency.
    """
    cert = check_pem_certificates(cert_file, cert_what)
    key = read_file(key_file, key_what)
    if b"PRIVATE KEY-----" not in key:
        raise SecurityConfigError(f"{key_what}: {str(key_file)!r} holds no PEM private key")
    if b"ENCRYPTED" in key:
        raise SecurityConfigError(f"{key_what}: {str(key_file)!r} is encrypted; gRPC needs an unencrypted key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        # The password callable stops OpenSSL from prompting on a terminal.
        context.load_cert_chain(str(cert_file), str(key_file), password=lambda: b"")
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise SecurityConfigError(
                f"{key_what}: the private key in {str(key_file)!r} does not match the certificate "
                f"in {str(cert_file)!r} ({cert_what})") from exc
        raise SecurityConfigError(
            f"{cert_what}/{key_what}: cannot load {str(cert_file)!r} with {str(key_file)!r}: {exc}") from exc
    return cert, key


def check_token(token: str, what: str = "token") -> str:
    """A bearer token must be one printable line: gRPC metadata values cannot hold newlines."""
    if not token or not token.strip():
        raise SecurityConfigError(f"{what}: the token is empty")
    if any(ch.isspace() for ch in token) or not token.isprintable() or not token.isascii():
        raise SecurityConfigError(f"{what}: the token must be printable ASCII without spaces or newlines")
    return token


def token_lines(token_file: str | Path, what: str) -> list[str]:
    """The non-empty, non-comment lines of a token file, stripped; SecurityConfigError when none."""
    text = read_file(token_file, what).decode("utf-8", errors="replace")
    tokens = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not tokens:
        raise SecurityConfigError(f"{what}: {str(token_file)!r} holds no token (only blank or # comment lines)")
    return tokens


def read_token(token_file: str | Path, what: str = "--token-file") -> str:
    """The first non-empty, non-comment line of a token file (the format the gateway reads)."""
    return check_token(token_lines(token_file, what)[0], what)


def token_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """Call metadata that carries a bearer token; empty when token is None.

    Metadata (not grpc.access_token_call_credentials) so tokens work on plaintext loopback too.
    """
    if token is None:
        return ()
    return ((AUTHORIZATION_KEY, BEARER_PREFIX + check_token(token)),)
