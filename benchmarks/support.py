"""What several benchmarks share: `tsva loadtest --json` as a subprocess, and CPU seconds from /proc.

The scripts import it by name (`from support import ...`): Python puts a script's own folder,
benchmarks/, first on sys.path."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path


def run_loadtest(address: str, *, concurrency: int, window: int, warmup: float,
                 duration: float | None = None, count: int | None = None, tile_size: str | None = None,
                 encoding: str | None = None, gateway_pid: int | None = None, extra: Iterable[str] = (),
                 timeout: float | None = None) -> dict:
    """Runs `tsva loadtest --server ADDRESS ... --json` and returns its parsed report.

    `count` (measured tiles) replaces `duration` (measured seconds) when given; a None option is
    left out (the loadtest's default). Exits with the loadtest's stderr when it printed no report."""
    command = [sys.executable, "-m", "tsva.common.cli", "loadtest", "--server", address,
               "--concurrency", str(concurrency), "--window", str(window), "--warmup", str(warmup)]
    if count:
        command += ["--count", str(count)]
    elif duration is not None:
        command += ["--duration", str(duration)]
    for flag, value in (("--tile-size", tile_size), ("--encoding", encoding), ("--gateway-pid", gateway_pid)):
        if value is not None:
            command += [flag, str(value)]
    command += [*extra, "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if not done.stdout.strip():
        raise SystemExit(f"tsva loadtest failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def _stat_fields(pid: int | str) -> list[str] | None:
    """/proc/PID/stat after the command name (fields 3...), or None when the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cpu_s(fields: list[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime (stat fields 14, 15)


def group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds of every live process in a process group (Triton and its stubs)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(entry.name)) and int(fields[2]) == pgid:
            total += _cpu_s(fields)  # fields[2] is pgrp (stat field 5)
    return total


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its live children (a gateway's workers)."""
    pids = [pid] + [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return sum(_cpu_s(fields) for p in pids if (fields := _stat_fields(p)))
