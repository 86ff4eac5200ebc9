"""`tsva serve --workers N`: N gateway processes on one port, under a supervisor.

One gateway process is bounded by Python: its event loop and patch work use about one core. With
N workers, every worker is an ordinary gateway (`python -m tsva.server`, the same settings) that
binds the same port with SO_REUSEPORT, so the kernel spreads incoming connections over them;
a client's calls on one connection stay on one worker. This process, the supervisor:

- starts the workers, handing each the full configuration through TSVA_* variables (flags win
  over those, so the workers get exactly this process's settings) and TSVA_WORKER=<index>;
- restarts a worker that dies, with a backoff when it keeps dying young; its in-flight calls end
  with UNAVAILABLE (their connection is gone), the other workers go on serving;
- stops everything when a worker of the first start cannot start (exit status 2: the port is
  taken, the model is unusable...), reporting that status;
- serves the one metrics endpoint: prometheus-client's multiprocess mode, each worker writing its
  samples to files in PROMETHEUS_MULTIPROC_DIR, summed here (gauges as the metrics module says);
- on SIGTERM/SIGINT, passes SIGTERM on and waits for the workers' graceful shutdown.

With the embedded backend and --intra-op-threads 0, each worker gets cores / N ONNX Runtime threads,
so N workers do not oversubscribe the CPU.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tsva.server.config import Config

log = logging.getLogger("tsva.server.workers")

WORKER_ENV = "TSVA_WORKER"  # set in each worker: its index; tells app.main to serve, not supervise
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
STARTUP_FAILED = 2          # app.main's status when the gateway cannot start
_BACKOFF_INITIAL_S, _BACKOFF_MAX_S, _YOUNG_S = 0.5, 30.0, 10.0


def is_worker() -> bool:
    return WORKER_ENV in os.environ


def worker_config(config: Config) -> Config:
    """The settings a worker runs with: the supervisor's, with the metrics endpoint served by
    the supervisor alone and ONNX Runtime threads shared out."""
    changes: dict = {"metrics_port": 0}
    if config.backend == "embedded" and config.intra_op_threads == 0:
        changes["intra_op_threads"] = max(1, (os.cpu_count() or 1) // config.workers)
    return dataclasses.replace(config, **changes)


def worker_environment(config: Config, index: int, multiproc_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TSVA_")}
    for f in dataclasses.fields(Config):
        value = getattr(config, f.name)
        if value is not None:
            env[f.metadata["option"].env] = str(value)
    env[WORKER_ENV] = str(index)
    env[MULTIPROC_ENV] = multiproc_dir
    return env


class Supervisor:
    def __init__(self, config: Config):
        self.config = config
        self.worker_config = worker_config(config)
        self._stop = threading.Event()
        self._procs: dict[int, subprocess.Popen] = {}  # index -> process
        self._started_at: dict[int, float] = {}
        self._backoff: dict[int, float] = {}
        self._first_generation: set[int] = set()
        self.restarts = 0

    # ------------------------------------------------------------------ workers
    def _spawn(self, index: int) -> None:
        env = worker_environment(self.worker_config, index, self.multiproc_dir)
        process = subprocess.Popen([sys.executable, "-m", "tsva.server"], env=env)
        self._procs[index] = process
        self._started_at[index] = time.monotonic()
        log.info("worker %d started (pid %d)", index, process.pid)

    def _reap(self, index: int, process: subprocess.Popen) -> bool:
        """Handles a worker that exited; False when the whole gateway must stop."""
        from prometheus_client import multiprocess

        status = process.returncode
        multiprocess.mark_process_dead(process.pid, self.multiproc_dir)  # its live gauges leave the sums
        if status == STARTUP_FAILED and index in self._first_generation:
            log.error("worker %d cannot start (exit status %d): stopping the gateway", index, status)
            return False
        young = time.monotonic() - self._started_at[index] < _YOUNG_S
        delay = min(_BACKOFF_MAX_S, self._backoff.get(index, _BACKOFF_INITIAL_S / 2) * 2) if young \
            else _BACKOFF_INITIAL_S
        self._backoff[index] = delay
        how = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
        log.warning("worker %d (pid %d) died (%s); restarting it in %.1f s", index, process.pid, how, delay)
        self._first_generation.discard(index)
        self._procs.pop(index)
        if self._stop.wait(delay):
            return True
        self.restarts += 1
        self._spawn(index)
        return True

    def _terminate_all(self) -> None:
        for process in self._procs.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.grace_s + 10
        for process in self._procs.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in time: killing it", process.pid)
                process.kill()
                process.wait(10)

    # ------------------------------------------------------------------ metrics
    def _serve_metrics(self):
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiproc_dir)
        try:
            server, _ = start_http_server(self.config.metrics_port, addr=self.config.metrics_host, registry=registry)
        except OSError as exc:
            raise OSError(f"--metrics-port: cannot bind {self.config.metrics_host}:{self.config.metrics_port} "
                          f"({exc})") from None
        return server

    # ------------------------------------------------------------------ run
    def run(self) -> int:
        own_dir = MULTIPROC_ENV not in os.environ
        self.multiproc_dir = os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="tsva-metrics-")
        Path(self.multiproc_dir).mkdir(parents=True, exist_ok=True)
        for stale in Path(self.multiproc_dir).glob("*.db"):  # a previous run's samples
            stale.unlink()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        metrics_server = None
        status = 0
        try:
            if self.config.metrics_port:
                try:
                    metrics_server = self._serve_metrics()
                except OSError as exc:
                    log.error("cannot start: %s", exc)
                    return STARTUP_FAILED
            for index in range(self.config.workers):
                self._spawn(index)
            self._first_generation = set(self._procs)
            log.info("%d workers on %s:%d%s", self.config.workers, self.config.host, self.config.port,
                     f"; metrics of all workers on http://{self.config.metrics_host}:{self.config.metrics_port}"
                     "/metrics" if metrics_server else "")
            while not self._stop.wait(0.2):
                for index, process in list(self._procs.items()):
                    if process.poll() is not None and not self._stop.is_set():
                        if not self._reap(index, process):
                            status = STARTUP_FAILED
                            self._stop.set()
                            break
            log.info("stopping %d workers", len(self._procs))
            self._terminate_all()
            log.info("stopped")
            return status
        finally:
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()
            if own_dir:
                shutil.rmtree(self.multiproc_dir, ignore_errors=True)


def supervise(config: Config) -> int:
    return Supervisor(config).run()
