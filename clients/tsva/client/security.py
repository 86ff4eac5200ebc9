"""Client-side credentials: TLS / mutual TLS channel credentials and bearer-token metadata.

The files are checked by tsva.common.credentials (shared with the gateway) before a channel exists.
"""
from __future__ import annotations

from pathlib import Path

import grpc

from tsva.common.credentials import (  # noqa: F401  (the client's verbs use these through this module)
    SecurityConfigError, check_key_pair, check_pem_certificates, read_token, token_metadata)


def channel_credentials(ca_file: str | Path | None = None, cert_file: str | Path | None = None,
                        key_file: str | Path | None = None) -> grpc.ChannelCredentials | None:
    """TLS credentials for a channel, or None for plaintext when no file is given.

    ca_file: CA bundle that signed the server's certificate (None: the system's roots).
    cert_file + key_file: this client's certificate, for servers that require mutual TLS.
    """
    if ca_file is None and cert_file is None and key_file is None:
        return None
    if (cert_file is None) != (key_file is None):
        raise SecurityConfigError("--tls-cert and --tls-key: a client certificate needs its key (give both or neither)")
    root = check_pem_certificates(ca_file, "--tls-ca") if ca_file is not None else None
    cert = key = None
    if cert_file is not None:
        cert, key = check_key_pair(cert_file, key_file, "--tls-cert", "--tls-key")
    return grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=cert)
