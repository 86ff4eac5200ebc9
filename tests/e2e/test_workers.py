"""`tsva serve --workers 2`: two gateway processes on one port under a supervisor, real gRPC.

- tiles sent over many connections are served by both workers (both spend CPU on them), and the
  one metrics endpoint counts every tile: the workers' samples are summed;
- a worker that is killed while it holds calls: those calls fail with UNAVAILABLE at once (not at
  their deadline), the other worker keeps serving, the supervisor starts a new worker, and the
  metrics keep counting;
- a port that another process holds: the supervisor stops with exit status 2.
"""
from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import grpc
import pytest

from tests.support.gateway import start_gateway
from tests.support.metrics import metric
from tests.support.tiles import defocused_pair
from tests.support.workers import fuse_on_new_connection, wait_for_workers

pytestmark = pytest.mark.slow  # gateway processes

FLAGS = dict(workers=2, patch_size=64, patch_overlap=16, max_batch=8)


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_two_workers_one_port_one_metrics_endpoint(tiny_model):
    pair = defocused_pair(512, 512)
    with start_gateway(tiny_model, **FLAGS) as gw:
        pids = wait_for_workers(gw, 2)
        before = {pid: cpu_s(pid) for pid in pids}
        n = 24
        for i in range(n):
            reply = fuse_on_new_connection(gw.address, f"t{i}", pair)
            assert reply.tile_id == f"t{i}" and reply.fused.width == 512
        used = {pid: cpu_s(pid) - before[pid] for pid in pids}
        assert all(seconds > 0.05 for seconds in used.values()), f"CPU seconds per worker: {used}"
        assert metric(gw.metrics_url, "tsva_tiles_total", outcome="ok") == n
        assert metric(gw.metrics_url, "tsva_fused_pixels_total") == n * 512 * 512
        assert metric(gw.metrics_url, "tsva_backend_up") == 1.0
        assert metric(gw.metrics_url, "tsva_inflight_tiles") == 0.0
        assert gw.stop() == 0


def test_killed_worker_fails_its_calls_and_is_restarted(tiny_model):
    pair = defocused_pair(128, 128)
    with start_gateway(tiny_model, **FLAGS) as gw:
        victim, survivor = wait_for_workers(gw, 2)
        os.kill(victim, signal.SIGSTOP)  # frozen: calls that reach it wait
        outcomes: dict[str, object] = {}

        def call(i: int) -> None:
            try:
                outcomes[f"c{i}"] = fuse_on_new_connection(gw.address, f"c{i}", pair, timeout=60)
            except grpc.RpcError as exc:
                outcomes[f"c{i}"] = exc

        threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30  # the survivor answers its calls; the frozen worker's wait
        while len(outcomes) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2)
        held = [t for t in threads if t.is_alive()]
        answered_before_kill = len(outcomes)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
        assert held, "no call reached the frozen worker (12 connections all on the other one)"
        assert answered_before_kill >= 1, "the other worker answered nothing while one was frozen"
        failed = {k: v for k, v in outcomes.items() if isinstance(v, grpc.RpcError)}
        assert len(failed) == len(held)
        assert {e.code() for e in failed.values()} == {grpc.StatusCode.UNAVAILABLE}, failed
        assert time.monotonic() - killed_at < 15, "the dead worker's calls waited for their deadline"

        new = wait_for_workers(gw, 2, not_in=[victim])
        assert survivor in new
        for i in range(8):
            assert fuse_on_new_connection(gw.address, f"after{i}", pair).tile_id == f"after{i}"
        ok = len(outcomes) - len(failed) + 8
        # Tiles the killed worker had answered died with it: its files stay, so they still count.
        assert metric(gw.metrics_url, "tsva_tiles_total", outcome="ok") == ok
        assert "worker 0" in gw.logs() or "worker 1" in gw.logs()
        assert "died (killed by signal 9); restarting" in gw.logs()
        assert gw.stop() == 0


def test_port_taken_stops_the_supervisor(tiny_model):
    with socket.socket() as holder:  # a plain socket, without SO_REUSEPORT
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with start_gateway(tiny_model, extra_args=["--port", str(port)], wait=False, **FLAGS) as gw:
            assert gw.process.wait(60) == 2
        assert "cannot start" in gw.logs() and "stopping the gateway" in gw.logs()
