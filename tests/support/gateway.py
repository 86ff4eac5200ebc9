"""A real gateway process on loopback: `start_gateway()` starts `python -m tsva.server` on free ports
and waits for grpc.health.v1 SERVING; `Gateway` unpacks as (address, metrics_url, process)."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.models import make_tiny_onnx
from tests.support.paths import REPO_ROOT


def free_port() -> int:
    """A port the OS says is free now on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gateway:
    """A running gateway. Unpacks as (address, metrics_url, process)."""

    def __init__(self, address: str, metrics_url: str, process: subprocess.Popen, log_path: Path):
        self.address, self.metrics_url, self.process, self.log_path = address, metrics_url, process, log_path
        self._final_log: str | None = None  # kept once the process is gone and its folder removed

    def __iter__(self):
        return iter((self.address, self.metrics_url, self.process))

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def logs(self) -> str:
        """Everything the gateway wrote to stdout/stderr (also after it stopped)."""
        if self._final_log is not None:
            return self._final_log
        return self.log_path.read_text(errors="replace")

    def channel(self, **options) -> grpc.Channel:
        return grpc.insecure_channel(self.address, options=channel_options(**options))

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait up to `timeout`, then SIGKILL; returns the exit status."""
        return _stop(self.process, timeout)


def channel_options(max_message_bytes: int = 256 * 1024 * 1024):
    return [("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes)]


def _stop(process: subprocess.Popen, timeout: float) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode


def health_status(address: str, service: str = "", credentials: grpc.ChannelCredentials | None = None,
                  timeout: float = 2.0) -> int | None:
    """The health.v1 status of `service`, or None when the server does not answer."""
    channel = (grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address))
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError:
            return None
    return reply.status


def wait_for_health(address: str, wanted: int = health_pb2.HealthCheckResponse.SERVING, *,
                    timeout: float = 30.0, process: subprocess.Popen | None = None,
                    credentials: grpc.ChannelCredentials | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"gateway exited with status {process.returncode} before becoming healthy")
        if health_status(address, credentials=credentials) == wanted:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{address} did not report {health_pb2.HealthCheckResponse.ServingStatus.Name(wanted)} "
                       f"within {timeout}s")


@contextlib.contextmanager
def start_gateway(model_path=None, *, extra_args: list[str] | tuple[str, ...] = (),
                  env: dict[str, str] | None = None, wait: bool = True, timeout: float = 60.0,
                  credentials: grpc.ChannelCredentials | None = None, **flags):
    """Starts `python -m tsva.server` on 127.0.0.1 with free gRPC and metrics ports.

    flags: option=value pairs, e.g. max_batch=4 -> `--max-batch 4` (True -> bare flag, None -> left
    out). model_path: None uses a fresh tiny model. credentials: for the readiness probe under TLS.
    """
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tsva-gw-")))
        if model_path is None and flags.get("backend", "embedded") == "embedded":
            model_path = make_tiny_onnx(workdir / "tiny.onnx")
        port, metrics_port = free_port(), free_port()
        args = [sys.executable, "-m", "tsva.server", "--host", "127.0.0.1", "--port", str(port),
                "--metrics-host", "127.0.0.1", "--metrics-port", str(metrics_port)]
        if model_path is not None:
            args += ["--model-path", str(model_path)]
        for name, value in flags.items():
            if value is None or value is False:
                continue
            args.append("--" + name.replace("_", "-"))
            if value is not True:
                args.append(str(value))
        args += list(extra_args)
        log_path = workdir / "gateway.log"
        log = stack.enter_context(open(log_path, "wb"))
        proc_env = {k: v for k, v in os.environ.items() if not k.startswith("TSVA_")}
        proc_env.update(env or {})
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=proc_env, cwd=REPO_ROOT)
        gateway = Gateway(f"127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics", process, log_path)
        try:
            if wait:
                try:
                    wait_for_health(gateway.address, timeout=timeout, process=process, credentials=credentials)
                except Exception as exc:
                    raise RuntimeError(f"{exc}; gateway log:\n{gateway.logs()[-4000:]}") from None
            yield gateway
        finally:
            _stop(process, 30.0)
            log.flush()
            gateway._final_log = log_path.read_text(errors="replace")
