"""Gateway configuration: every option is a command-line flag and a TSVA_* environment variable.

Precedence: flag > environment variable > default. `tsva serve` needs none of them.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields

from tsva.common import model_repository
from tsva.common.errors import BadInput
from tsva.common.limits import DEFAULT_MAX_MESSAGE_BYTES  # noqa: F401 (shared with the client; importable from here)

# The packaged model repository (tsva.common.model_repository: the checkout's model_repository/, else
# /opt/tsva/model_repository) and the model served from it without --model-path: the shipped model's
# newest version. from_namespace applies --model-repository / TSVA_MODEL_REPOSITORY.
DEFAULT_MODEL_REPOSITORY = model_repository.packaged_default()
DEFAULT_MODEL_PATH = model_repository.latest_model(DEFAULT_MODEL_REPOSITORY)


# The patch side for tiles too large to go whole on a CPU (and of `--patch-size tile`'s validation):
# 224-px patches keep a CPU batch's memory small whatever the tile's size.
CPU_PATCH_SIZE = 224
# On a CPU, whole tiles run 2.2x faster than 224-px patches with 64-px overlap (no overlap computed
# twice; docs/performance.md) but their memory grows with the tile: up to this many pixels a tile
# goes whole (a 1224x1024 scanner tile is 1.25 MP; ~0.8 GB of ONNX Runtime activations for the
# shipped network), larger ones as CPU_PATCH_SIZE patches.
CPU_WHOLE_TILE_MAX_PIXELS = 1536 * 1536
CPU_WHOLE_TILES_PER_BATCH = 1  # whole tiles per CPU batch: batching them measured no faster, memory grows with it
WHOLE_TILE = 0  # patch side meaning "no patches": GetInfo.patch_size reports it as 0
TYPICAL_TILE_SIDE = 1232  # a 1224x1024 scanner tile's width padded to 16


class ConfigError(BadInput, ValueError):
    """An option with an unusable value; the message names the flag (`tsva serve` exits with 2)."""


def _csv(text: str) -> list[str]:
    """The non-empty, stripped items of a comma-separated option."""
    return [item.strip() for item in text.split(",") if item.strip()]


@dataclass(frozen=True)
class Option:
    flag: str
    env: str
    type: type
    help: str
    choices: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()


def _option(flag: str, type_: type, default, help_: str, choices=None, aliases=()):
    env = "TSVA_" + flag.lstrip("-").replace("-", "_").upper()
    return field(default=default, metadata={"option": Option(flag, env, type_, help_, choices, aliases)})


@dataclass(frozen=True)
class Config:
    host: str = _option("--host", str, "0.0.0.0", "address the gRPC server binds to")
    port: int = _option("--port", int, 50051, "gRPC port")
    workers: int = _option("--workers", int, 1, "gateway processes sharing the gRPC port (SO_REUSEPORT), "
                           "restarted when they die; one metrics endpoint sums them all")
    metrics_host: str = _option("--metrics-host", str, "0.0.0.0", "address of the Prometheus endpoint")
    metrics_port: int = _option("--metrics-port", int, 9464, "Prometheus /metrics HTTP port (0: off)")
    backend: str = _option("--backend", str, "embedded", "inference backend", ("embedded", "triton"))
    model_repository: str = _option(model_repository.FLAG, str, str(DEFAULT_MODEL_REPOSITORY),
                                    "model repository (Triton's layout NAME/VERSION/model.onnx) whose newest "
                                    f"{model_repository.SHIPPED_MODEL_NAME} version is served without --model-path")
    model_path: str = _option("--model-path", str, str(DEFAULT_MODEL_PATH), "ONNX model (embedded backend; "
                              "its metadata is read for GetInfo with the triton backend too when present; "
                              "default: the newest version in --model-repository)")
    model_name: str = _option("--model-name", str, "tsva", "model name (in Triton's repository)")
    triton_urls: str = _option("--triton-urls", str, "localhost:8001",
                               "Triton gRPC endpoints, comma-separated (triton backend)",
                               aliases=("--triton-url",))
    triton_shared_memory: str = _option(
        "--triton-shared-memory", str, "auto", "how tensors travel to Triton: through shared memory "
        "(system: /dev/shm, cuda: GPU memory) or inside gRPC (off); auto: system shared memory to "
        "Triton endpoints on a loopback address, gRPC to the others", ("auto", "system", "cuda", "off"))
    providers: str = _option("--providers", str, "auto", "ONNX Runtime execution providers, comma-separated "
                             "(auto: TensorRT, CUDA where present, else CPU)")
    precision: str = _option("--precision", str, "auto", "model file the embedded backend runs: auto (on the "
                             "CPU the int8 form NAME.int8.onnx beside --model-path when it was quantised from "
                             "it, else the float file), float32, or int8 (fails without a matching int8 form)",
                             ("auto", "float32", "int8"))
    intra_op_threads: int = _option("--intra-op-threads", int, 0, "ONNX Runtime threads (0: all cores)")
    patch_size: str = _option("--patch-size", str, "auto", "patch side in pixels (multiple of 16), `tile` "
                              "(whole tiles, padded to a multiple of 16; tiles of one size batch together) "
                              "or `auto` (whole tiles; on CPU, tiles over 1536x1536 as 224-px patches)")
    patch_overlap: int = _option("--patch-overlap", int, 64, "minimum overlap of neighbouring patches in pixels")
    patch_align: int = _option("--patch-align", int, 0, "patch origins are multiples of this (0: the model's; "
                               "16, or its size_multiple metadata where larger)")
    max_batch: int = _option("--max-batch", int, 16, "most patches per backend batch")
    max_delay_ms: float = _option("--max-delay-ms", float, 5.0, "longest wait for a batch to fill")
    queue_size: int = _option("--queue-size", int, 512, "most patches waiting for the backend")
    backend_concurrency: int = _option("--backend-concurrency", int, 0, "batches run by the backend at once "
                                       "(0: 1 for embedded, 2 per endpoint for triton)")
    max_inflight_tiles: int = _option("--max-inflight-tiles", int, 8,
                                      "most tiles being processed at once (all streams and calls)")
    stream_window: int = _option("--stream-window", int, 8, "most tiles of one stream between being read and "
                                 "their reply being handed to gRPC (no further reads until one is)")
    max_streams: int = _option("--max-streams", int, 256, "most FuseTiles streams open at once")
    max_calls: int = _option("--max-calls", int, 512, "most gRPC calls of any kind open at once "
                             "(unary Fuse calls hold their request while waiting)")
    max_tile_width: int = _option("--max-tile-width", int, 4096, "widest tile accepted")
    max_tile_height: int = _option("--max-tile-height", int, 4096, "tallest tile accepted")
    max_message_bytes: int = _option("--max-message-bytes", int, DEFAULT_MAX_MESSAGE_BYTES,
                                     "largest gRPC message received or sent")
    backend_timeout_s: float = _option("--backend-timeout-s", float, 60.0, "deadline of one backend batch")
    health_interval_s: float = _option("--health-interval-s", float, 2.0, "how often backend readiness is probed")
    grace_s: float = _option("--grace-s", float, 20.0, "on SIGTERM, time given to in-flight tiles")
    tls_cert: str | None = _option("--tls-cert", str, None, "server certificate (PEM): enables TLS")
    tls_key: str | None = _option("--tls-key", str, None, "its private key (PEM)")
    tls_client_ca: str | None = _option("--tls-client-ca", str, None, "CA of client certificates: mutual TLS")
    token_file: str | None = _option("--token-file", str, None, "accepted bearer tokens, one per line")
    log_level: str = _option("--log-level", str, "INFO", "logging level",
                             ("DEBUG", "INFO", "WARNING", "ERROR"))

    def patch_side(self, device: str = "cpu", max_side: int = 0) -> int:
        """The patch side to serve with: --patch-size, or for `auto` WHOLE_TILE (0) on every device
        (on CPU, tiles over CPU_WHOLE_TILE_MAX_PIXELS go as patches: see large_tile_side), unless
        the model is built for sides below a typical tile's (max_side: a TensorRT profile's)."""
        text = str(self.patch_size).strip().lower()
        if text == "tile":
            return WHOLE_TILE
        if text == "auto":
            return WHOLE_TILE if not max_side or max_side >= TYPICAL_TILE_SIDE else CPU_PATCH_SIZE
        return int(text)

    def large_tile_side(self, device: str = "cpu") -> int:
        """The patch side for tiles over CPU_WHOLE_TILE_MAX_PIXELS under the `auto` whole-tile plan
        on CPU (0: every tile goes whole), so a CPU's memory does not grow with the tile; the same
        plan sends whole tiles one per batch (app.py). An explicit --patch-size is kept as given."""
        return CPU_PATCH_SIZE if str(self.patch_size).strip().lower() == "auto" and device == "cpu" else 0

    @property
    def triton_url_list(self) -> list[str]:
        return _csv(self.triton_urls)

    @property
    def provider_list(self) -> list[str]:
        return _csv(self.providers)

    @property
    def effective_backend_concurrency(self) -> int:
        if self.backend_concurrency:
            return self.backend_concurrency
        return 1 if self.backend == "embedded" else 2 * len(self.triton_url_list)

    def validate(self) -> "Config":
        text = str(self.patch_size).strip().lower()
        if text not in ("auto", "tile") and not text.isdigit():
            raise ConfigError(f"--patch-size: {self.patch_size!r}, expected a multiple of 16, tile or auto")
        side = CPU_PATCH_SIZE if text in ("auto", "tile") else int(text)
        checks = [
            (side >= 16 and side % 16 == 0, "--patch-size: must be a positive multiple of 16"),
            (self.patch_align >= 0 and side % max(self.patch_align, 1) == 0,
             "--patch-align: must divide --patch-size"),
            (0 <= self.patch_overlap <= side - max(self.patch_align, 1),
             "--patch-overlap: must be >= 0 and at most --patch-size minus --patch-align"),
            (self.max_batch >= 1, "--max-batch: must be >= 1"),
            (self.workers >= 1 and (self.workers == 1 or self.port != 0),
             "--workers: must be >= 1, and more than 1 needs a fixed --port (not 0)"),
            (self.max_delay_ms >= 0, "--max-delay-ms: must be >= 0"),
            (self.queue_size >= 1, "--queue-size: must be >= 1"),
            (self.backend_concurrency >= 0, "--backend-concurrency: must be >= 0"),
            (self.max_inflight_tiles >= 1, "--max-inflight-tiles: must be >= 1"),
            (self.stream_window >= 1, "--stream-window: must be >= 1"),
            (self.max_streams >= 1, "--max-streams: must be >= 1"),
            (self.max_calls >= self.max_streams, "--max-calls: must be >= --max-streams"),
            (self.max_tile_width >= 1 and self.max_tile_height >= 1, "--max-tile-width/--max-tile-height: must be >= 1"),
            (0 <= self.port < 65536 and 0 <= self.metrics_port < 65536, "--port/--metrics-port: 0..65535"),
            (self.max_message_bytes >= 4 * 1024 * 1024, "--max-message-bytes: must be >= 4 MiB"),
            (self.backend != "triton" or bool(self.triton_url_list), "--triton-urls: at least one endpoint"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.backend == "triton":
            # HOST:PORT of every target; imported here so the config stays light for the embedded backend.
            from tsva.server.backends.triton_targets import parse_targets

            try:
                parse_targets(self.triton_urls)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        return self


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds one flag per Config field. Defaults stay None here: from_namespace falls back to the
    environment, then to Config, so a bad environment value is reported under its variable's name."""
    for f in fields(Config):
        opt: Option = f.metadata["option"]
        shown = f"default {f.default}" if f.default is not None else "off"
        parser.add_argument(opt.flag, *opt.aliases, dest=f.name, type=opt.type, default=None,
                            choices=opt.choices, help=f"{opt.help} (env {opt.env}; {shown})")


def from_namespace(args: argparse.Namespace) -> Config:
    values = {}
    for f in fields(Config):
        opt: Option = f.metadata["option"]
        value = getattr(args, f.name)
        if value is None and opt.env in os.environ:
            try:
                value = opt.type(os.environ[opt.env])
            except ValueError:
                raise ConfigError(f"{opt.env}: {os.environ[opt.env]!r} is not a valid {opt.type.__name__}") from None
            if opt.choices and value not in opt.choices:
                raise ConfigError(f"{opt.env}: {value!r}, expected one of {', '.join(opt.choices)}")
        values[f.name] = f.default if value is None else value
    if args.model_path is None and "TSVA_MODEL_PATH" not in os.environ:  # follows the repository
        values["model_path"] = str(model_repository.latest_model(values["model_repository"]))
    return Config(**values).validate()


def parse(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(prog="tsva serve")
    add_arguments(parser)
    return from_namespace(parser.parse_args(argv))
