"""Inference backends: where batches of patches are run through the network."""
from __future__ import annotations

from tsva.server.backends.base import Backend, BackendUnavailable, ModelInfo

__all__ = ["Backend", "BackendUnavailable", "ModelInfo", "create_backend"]


def create_backend(config, metrics=None) -> Backend:
    """The backend named by config.backend; triton is imported only when asked for."""
    if config.backend == "embedded":
        from tsva.server.backends.embedded import EmbeddedBackend

        return EmbeddedBackend(config.model_path, providers=config.provider_list,
                               intra_op_threads=config.intra_op_threads, max_batch_size=config.max_batch,
                               precision=config.precision)
    if config.backend == "triton":
        from tsva.server.backends.triton import TritonBackend

        return TritonBackend(config.triton_url_list, config.model_name, request_timeout_s=config.backend_timeout_s,
                             shared_memory=config.triton_shared_memory, metrics=metrics)
    raise ValueError(f"--backend: unknown {config.backend!r} (embedded or triton)")
