"""Before the load (is the server there, do the credentials work, what does it accept) and after
it (the JSON object, the results file, the exit status)."""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import grpc
from google.protobuf.json_format import MessageToDict

from tsva.client.loadtest.runner import Connection
from tsva.client.loadtest.stats import LevelStats, find_knee
from tsva.client.loadtest.tiles import TileSpec
from tsva.v1 import tsva_pb2 as pb
from tsva.v1 import tsva_pb2_grpc


async def preflight(connection: Connection, timeout: float) -> dict | str:
    """GetInfo as a dict, or one line saying why the server cannot be load-tested."""
    async with connection.channel() as channel:
        try:
            reply = await tsva_pb2_grpc.VirtualAutofocusStub(channel).GetInfo(
                pb.GetInfoRequest(), metadata=connection.metadata, timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNAUTHENTICATED:
                return f"{connection.server} refused the credentials (--token / --token-file): {exc.details()}"
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                from tsva.client.verbs.common import TLS_HINT
                return f"cannot reach the server at {connection.server} ({TLS_HINT}): {code.name}: {exc.details()}"
            return f"{connection.server}: GetInfo failed: {code.name}: {exc.details()}"
    return MessageToDict(reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


class Results:
    """Every level's summary and latencies; the summary JSON; the results file."""

    def __init__(self, args: argparse.Namespace, info: dict, spec: TileSpec, duration: float | None):
        self.levels: list[dict] = []
        self.latencies: list[list[float]] = []
        self.planned = args.sweep or [args.concurrency]
        self.settings = {
            "server": args.server, "mode": args.mode, "window": args.window, "warmup_s": args.warmup,
            "duration_s": None if args.count else duration, "count": args.count,
            "tile": {"width": spec.width, "height": spec.height, "channels": spec.channels,
                     "pixel_type": spec.pixel_type, "encoding": spec.encoding},
            "backend": info.get("backend"), "model_name": info.get("model_name"),
            "model_version": info.get("model_version"),
        }
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    @property
    def title(self) -> str:
        tile = self.settings["tile"]
        return (f"tsva loadtest {self.settings['server']} ({self.settings['backend']}), {self.settings['mode']}, "
                f"{tile['width']}x{tile['height']}, window {self.settings['window']}")

    def add(self, stats: LevelStats) -> None:
        self.levels.append(stats.summary())
        self.latencies.append([round(v, 3) for v in stats.latencies_ms])

    def summary(self) -> dict:
        """The --json object: the figures of the single level (of the knee in a sweep) at the top,
        every level under "levels"."""
        aborted = next((level["aborted"] for level in self.levels if level["aborted"]), None)
        knee = find_knee(self.levels) if len(self.planned) > 1 else (self.levels[-1] if self.levels else None)
        headline = knee or (self.levels[-1] if self.levels else {})
        errors: dict[str, int] = {}
        for level in self.levels:
            for status, n in level["errors"].items():
                errors[status] = errors.get(status, 0) + n
        return {
            **self.settings,
            "started": self.started,
            "complete": aborted is None and len(self.levels) == len(self.planned),
            "aborted": aborted,
            "knee": knee["concurrency"] if knee and len(self.planned) > 1 else None,
            "concurrency": headline.get("concurrency"),
            "p50": headline.get("p50"), "p90": headline.get("p90"), "p99": headline.get("p99"),
            "max": headline.get("max"),
            "throughput": headline.get("throughput", 0.0),
            "fused_mp_per_s": headline.get("fused_mp_per_s", 0.0),
            "gateway": headline.get("gateway"),
            "tiles": sum(level["tiles"] for level in self.levels),
            "ok": sum(level["ok"] for level in self.levels),
            "errors": dict(sorted(errors.items())),
            "error_count": sum(errors.values()),
            "levels": self.levels,
        }

    def write(self, path: Path) -> None:
        """Atomically (temp file + rename), so a reader never sees half a file."""
        document = {**self.summary(), "latencies_ms": self.latencies}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle, indent=1)
        os.replace(tmp, path)

    def verdict(self, max_error_rate: float) -> tuple[int, str]:
        summary = self.summary()
        if summary["aborted"]:
            return 1, f"stopped early: {summary['aborted']} (errors: {summary['errors']})"
        if summary["ok"] == 0:
            return 1, f"no tile was answered successfully (errors: {summary['errors']})"
        rate = summary["error_count"] / max(1, summary["tiles"])
        if rate > max_error_rate:
            return 1, (f"{summary['error_count']} of {summary['tiles']} tiles failed ({rate:.1%} > "
                       f"--max-error-rate {max_error_rate:.1%}): {summary['errors']}")
        return 0, ""
