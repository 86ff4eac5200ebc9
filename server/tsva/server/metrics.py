"""Prometheus metrics of the gateway, served on their own HTTP port (prometheus-client).

All names start with tsva_. Metrics live on the registry they are given (no global default, so
two gateways or tests in one process never share counters); the gateway serves prometheus-client's
default REGISTRY, which also carries process_* metrics (RSS, CPU). With `--workers N` each worker's
values go to files in PROMETHEUS_MULTIPROC_DIR whatever the registry, summed by the supervisor.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Tile latencies of a 2-core CPU (seconds per tile) up to a busy GPU node's (milliseconds).
TILE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
BACKEND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# Outcome label values of tsva_tiles_total: "ok" or a lower-case gRPC status name.
OK = "ok"


class Metrics:
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.tiles = Counter("tsva_tiles", "Tiles answered, by outcome (ok or the gRPC status name)",
                             ["outcome"], registry=registry)
        self.tile_latency = Histogram("tsva_tile_latency_seconds", "Request received to fused tile ready",
                                      buckets=TILE_BUCKETS, registry=registry)
        self.batch_size = Histogram("tsva_backend_batch_size", "Patches per backend batch",
                                    buckets=BATCH_BUCKETS, registry=registry)
        self.backend_latency = Histogram("tsva_backend_latency_seconds", "Backend time of one batch",
                                         buckets=BACKEND_BUCKETS, registry=registry)
        self.backend_errors = Counter("tsva_backend_errors", "Backend batches that failed", registry=registry)
        self.backend_bytes = Counter("tsva_backend_tensor_bytes", "Bytes of model tensors between the gateway "
                                     "and the backend, by direction (sent: y1 and y2, received: x)", ["direction"],
                                     registry=registry)
        # multiprocess_mode: how `--workers N` sums a gauge over the live workers (ignored with one).
        self.queue_depth = Gauge("tsva_queue_depth", "Patches waiting for a backend batch", registry=registry,
                                 multiprocess_mode="livesum")
        self.inflight_streams = Gauge("tsva_inflight_streams", "FuseTiles streams open", registry=registry,
                                      multiprocess_mode="livesum")
        self.inflight_tiles = Gauge("tsva_inflight_tiles", "Tiles being processed", registry=registry,
                                    multiprocess_mode="livesum")
        self.fused_pixels = Counter("tsva_fused_pixels", "Pixels of fused tiles returned", registry=registry)
        self.shot_order_swaps = Counter("tsva_shot_order_swaps",
                                        "Tiles whose shot_b was sharper and became Y1", registry=registry)
        self.rescan_tiles = Counter("tsva_rescan_tiles", "Fused tiles the focus QC flagged for rescan",
                                    registry=registry)
        self.triton_batches = Counter("tsva_triton_batches", "Batches answered by Triton, by how the tensors "
                                      "travelled (grpc, system or cuda shared memory)", ["transport"],
                                      registry=registry)
        self.triton_shm_fallbacks = Counter(
            "tsva_triton_shm_fallbacks", "Times a shared-memory region could not be created or registered "
            "and the batches went over gRPC instead, by reason (create or register)", ["reason"], registry=registry)
        self.backend_up = Gauge("tsva_backend_up", "1 when the backend is ready to serve (in every worker), "
                                "else 0", registry=registry, multiprocess_mode="livemin")
        self.open_port = Gauge("tsva_plaintext_open_port", "1 when the gRPC port is plaintext, token-less and "
                               "bound to a non-loopback address (see the start-up WARNING), else 0",
                               registry=registry, multiprocess_mode="livemax")
        for outcome in (OK, "invalid_argument", "unavailable", "cancelled", "deadline_exceeded",
                        "resource_exhausted", "internal"):
            self.tiles.labels(outcome)  # export every outcome from the start, at 0


def serve_metrics(host: str, port: int, registry: CollectorRegistry):
    """Starts the /metrics HTTP server in a daemon thread; returns (server, thread)."""
    return start_http_server(port, addr=host, registry=registry)
