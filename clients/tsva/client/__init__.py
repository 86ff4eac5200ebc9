"""Client SDK and command line of the two-shot virtual autofocus (TSVA) service.

    from tsva.client import Client, AsyncClient, FusePair, TsvaError

Names are imported lazily, so `tsva --help` and the verbs that need no gRPC start fast.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "Client": "tsva.client.sdk",
    "AsyncClient": "tsva.client.aio",
    "TsvaError": "tsva.client.errors",
    "ImageInputError": "tsva.client.errors",
    "ImageError": "tsva.common.images",
    "FusePair": "tsva.client.results",
    "FuseResult": "tsva.client.results",
    "FocusResult": "tsva.client.results",
    "ServiceInfo": "tsva.client.results",
    "TileError": "tsva.client.results",
    "Timings": "tsva.client.results",
    "DEFAULT_SERVER": "tsva.client._core",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tsva.client' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
