"""What one load level measured: latencies of the tiles after warm-up, errors by status code,
throughput over the measured window, and a summary as a plain dict (the --json keys)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LevelStats:
    concurrency: int
    window: int
    megapixels_per_tile: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)   # status name -> tiles
    warmup_tiles: int = 0
    first_error: str | None = None
    measure_start: float | None = None   # perf_counter at the end of the warm-up
    measure_end: float | None = None     # last completion of a measured tile
    aborted: str | None = None           # why the level stopped early
    gateway: dict | None = None          # CPU and RSS of the gateway process, when sampled

    def record_ok(self, sent: float, done: float) -> None:
        if self._warm(sent):
            return
        self.latencies_ms.append((done - sent) * 1000.0)
        self.measure_end = max(self.measure_end or done, done)

    def record_error(self, sent: float, done: float, status: str, message: str) -> None:
        if self._warm(sent):
            return
        self.errors[status] += 1
        if self.first_error is None:
            self.first_error = f"{status}: {message}"
        self.measure_end = max(self.measure_end or done, done)

    def _warm(self, sent: float) -> bool:
        if self.measure_start is None or sent < self.measure_start:
            self.warmup_tiles += 1
            return True
        return False

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def summary(self) -> dict:
        elapsed = (self.measure_end - self.measure_start) if (self.measure_end and self.measure_start) else 0.0
        lat = np.asarray(self.latencies_ms, np.float64)
        pct = (lambda q: round(float(np.percentile(lat, q)), 2)) if lat.size else (lambda q: None)
        tiles_per_s = self.ok / elapsed if elapsed > 0 else 0.0
        return {
            "concurrency": self.concurrency,
            "window": self.window,
            "tiles": self.ok + self.error_count,
            "ok": self.ok,
            "errors": dict(sorted(self.errors.items())),
            "error_count": self.error_count,
            "first_error": self.first_error,
            "warmup_tiles": self.warmup_tiles,
            "elapsed_s": round(elapsed, 3),
            "throughput": round(tiles_per_s, 3),   # tiles/s answered successfully
            "fused_mp_per_s": round(tiles_per_s * self.megapixels_per_tile, 3),
            "p50": pct(50), "p90": pct(90), "p99": pct(99),
            "max": round(float(lat.max()), 2) if lat.size else None,
            "mean": round(float(lat.mean()), 2) if lat.size else None,
            "aborted": self.aborted,
            "gateway": self.gateway,
        }


def find_knee(levels: list[dict], fraction: float = 0.9) -> dict | None:
    """The lowest concurrency that reaches `fraction` of the best throughput: past it throughput
    hardly grows and latency climbs."""
    usable = [level for level in levels if level["ok"] > 0]
    if not usable:
        return None
    best = max(level["throughput"] for level in usable)
    return min((level for level in usable if level["throughput"] >= fraction * best),
               key=lambda level: level["concurrency"])
