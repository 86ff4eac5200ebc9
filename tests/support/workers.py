"""Waiting for `tsva serve --workers N` processes and fusing on a fresh connection (SO_REUSEPORT spreads connections)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import grpc
from tsva.v1 import tsva_pb2_grpc as pb_grpc

from tests.support.tiles import fuse_request


def wait_for_workers(gw, n: int, not_in=(), timeout: float = 60.0) -> list[int]:
    """The supervisor's n workers, once each listens on the gateway's port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = workers_of(gw.process.pid)
        try:
            if len(pids) == n and not set(pids) & set(not_in) and all(listens(p, gw.port) for p in pids):
                return pids
        except FileNotFoundError:  # a worker exited meanwhile
            pass
        time.sleep(0.1)
    raise TimeoutError(f"workers of {gw.process.pid}: {workers_of(gw.process.pid)}")


def fuse_on_new_connection(address: str, tile_id: str, pair, timeout: float = 30.0):
    """One Fuse call on a connection of its own (so the kernel picks a worker for it)."""
    with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        return pb_grpc.VirtualAutofocusStub(channel).Fuse(fuse_request(tile_id, pair), timeout=timeout)


def workers_of(supervisor_pid: int) -> list[int]:
    children = Path(f"/proc/{supervisor_pid}/task/{supervisor_pid}/children").read_text().split()
    return sorted(int(pid) for pid in children)


def listens(pid: int, port: int) -> bool:
    """True when process `pid` holds a socket listening on `port` (it is serving)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port and cols[9] in inodes:
                return True
    return False
