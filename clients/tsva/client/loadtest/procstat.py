"""CPU and resident memory of a local process (the gateway under test), read from /proc (Linux)."""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path


def _cpu_seconds(pid: int) -> float:
    # Fields after the command name (which may hold spaces): utime and stime are fields 14 and 15.
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def check_pid(pid: int) -> None:
    if not Path(f"/proc/{pid}/stat").exists():
        raise ValueError(f"--gateway-pid: no process {pid} here (/proc/{pid} missing; Linux only)")


class ProcessSampler:
    """Samples a process every `interval` s while running: CPU % (of one core) and peak RSS."""

    def __init__(self, pid: int, interval: float = 0.25):
        self.pid, self.interval = pid, interval
        self._task: asyncio.Task | None = None
        self._peak_rss = 0.0
        self._cpu0 = self._t0 = 0.0

    async def _sample(self) -> None:
        while True:
            try:
                self._peak_rss = max(self._peak_rss, _rss_mb(self.pid))
            except OSError:
                return  # the process is gone
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._cpu0, self._t0 = _cpu_seconds(self.pid), time.perf_counter()
        self._peak_rss = _rss_mb(self.pid)
        self._task = asyncio.create_task(self._sample())

    async def stop(self) -> dict | None:
        if self._task is None:
            return None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        try:
            cpu = _cpu_seconds(self.pid) - self._cpu0
        except OSError:
            return {"pid": self.pid, "cpu_percent": None, "rss_mb_peak": round(self._peak_rss, 1), "exited": True}
        wall = time.perf_counter() - self._t0
        return {"pid": self.pid, "cpu_percent": round(100.0 * cpu / wall, 1) if wall > 0 else None,
                "rss_mb_peak": round(self._peak_rss, 1), "exited": False}
