"""Shared test helpers: a real gateway process on loopback, and small ONNX models with the contract.

Stable names (other areas use them):
- `start_gateway(model_path=None, **flags)`: context manager; starts `python -m tsva.server` on free
  ports, waits for grpc.health.v1 SERVING, yields a `Gateway` (unpacks as address, metrics_url,
  process), and stops it (SIGTERM, then SIGKILL) afterwards, even on failure.
- `gateway` fixture: one gateway per test module with the tiny model.
- `make_tiny_onnx(path, ...)`: a pointwise model x = clip(w1*y1 + w2*y2 + bias) built with onnx.helper.
- `make_unet_onnx(path, ...)`: a random-weight U-Net-like model with a realistic receptive field.
- `free_port()`, `read_metrics(url)`, `metric(url, name, **labels)`.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A port the OS says is free now on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# ONNX models with the contract: inputs y1, y2, output x, float32 NCHW, dynamic N/H/W.

def _contract_io(channels: int | None = 3):
    from onnx import TensorProto, helper

    shape = ["batch", channels, "height", "width"]
    return ([helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name in ("y1", "y2")],
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)])


def _save(graph, path: Path, metadata: dict[str, str] | None) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every ONNX Runtime in use here
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


TINY_METADATA = {
    "model_name": "tiny", "model_version": "7",
    "optics.numerical_aperture": "0.75", "optics.refractive_index": "1",
    "optics.pixel_size_um": "0.25", "optics.wavelengths_um": "0.61,0.53,0.47",
    "optics.defocus_um": "0.5,1,1.5", "optics.focus_sigma_um": "1", "note": "test model",
}


def make_tiny_onnx(path, *, w1: float = 0.75, w2: float = 0.25, bias: float = 0.0,
                   fail_on_white: bool = False, metadata: dict[str, str] | None = None) -> Path:
    """x = clip(w1*y1 + w2*y2 + bias, 0, 1): pointwise, so patch-wise and whole-tile results agree
    exactly, and an asymmetric w1/w2 shows which shot the gateway fed as Y1.

    fail_on_white: fault injection for backend-failure tests (a real ONNX Runtime error, not a mock):
    the model reshapes to an impossible shape whenever max(y1) > 0.999, so a white tile makes
    session.run fail while darker inputs (and readiness probes with zeros) succeed.
    """
    from onnx import TensorProto, helper

    inputs, outputs = _contract_io(channels=None)
    const = lambda name, value, dtype=TensorProto.FLOAT: helper.make_tensor(name, dtype, [], [value])  # noqa: E731
    nodes = [
        helper.make_node("Mul", ["y1", "w1"], ["a"]),
        helper.make_node("Mul", ["y2", "w2"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["s"]),
        helper.make_node("Add", ["s", "bias"], ["t"]),
        helper.make_node("Clip", ["t", "lo", "hi"], ["x" if not fail_on_white else "clipped"]),
    ]
    inits = [const("w1", w1), const("w2", w2), const("bias", bias), const("lo", 0.0), const("hi", 1.0)]
    if fail_on_white:
        # D = 1 normally; D = 1000003 (a prime no tensor size here is divisible by) on white input.
        nodes += [
            helper.make_node("ReduceMax", ["y1"], ["m"], keepdims=0),
            helper.make_node("Greater", ["m", "threshold"], ["white"]),
            helper.make_node("Cast", ["white"], ["white_i"], to=TensorProto.INT64),
            helper.make_node("Mul", ["white_i", "prime"], ["extra"]),
            helper.make_node("Add", ["extra", "one"], ["d"]),
            helper.make_node("Unsqueeze", ["d", "axis0"], ["d_1d"]),
            helper.make_node("Concat", ["minus_one", "d_1d"], ["flat_shape"], axis=0),
            helper.make_node("Reshape", ["clipped", "flat_shape"], ["flat"]),
            helper.make_node("Shape", ["clipped"], ["shape"]),
            helper.make_node("Reshape", ["flat", "shape"], ["x"]),
        ]
        inits += [const("threshold", 0.999), const("prime", 1000002, TensorProto.INT64),
                  const("one", 1, TensorProto.INT64),
                  helper.make_tensor("minus_one", TensorProto.INT64, [1], [-1]),
                  helper.make_tensor("axis0", TensorProto.INT64, [1], [0])]
    graph = helper.make_graph(nodes, "tiny_tsva", inputs, outputs, initializer=inits)
    return _save(graph, path, TINY_METADATA if metadata is None else metadata)


def make_unet_onnx(path, *, seed: int = 0, width: int = 16, depth: int = 3, channels: int = 3,
                   residual_scale: float = 0.2, metadata: dict[str, str] | None = None) -> Path:
    """A random-weight U-Net-like model (two 3x3 convs per level, stride-2 downsampling, nearest
    upsampling, skip concatenation, residual on Y1), zero-padded like a real network: its receptive
    field (about 200 pixels at the default depth 3 and base width 16, the shipped model's) is what
    makes patch borders differ from the whole tile. H and W must be multiples of 2**depth.
    """
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    inputs, outputs = _contract_io(channels)
    nodes, inits = [], []
    counter = iter(range(10_000))

    def conv(x, c_in, c_out, k=3, stride=1, relu=True, scale=1.0):
        i = next(counter)
        w = rng.normal(0, scale * np.sqrt(2.0 / (c_in * k * k)), (c_out, c_in, k, k)).astype(np.float32)
        b = rng.normal(0, 0.01, c_out).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")])
        out = f"c{i}"
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [out], kernel_shape=[k, k],
                                      pads=[k // 2] * 4, strides=[stride, stride]))
        if relu:
            nodes.append(helper.make_node("Relu", [out], [out + "r"]))
            out += "r"
        return out

    nodes.append(helper.make_node("Concat", ["y1", "y2"], ["yy"], axis=1))
    x, c, skips = "yy", 2 * channels, []
    for level in range(depth):
        c_out = width * 2 ** level
        x = conv(conv(x, c, c_out), c_out, c_out)
        skips.append((x, c_out))
        x, c = conv(x, c_out, c_out, stride=2), c_out
    x = conv(conv(x, c, 2 * c), 2 * c, 2 * c)
    c = 2 * c
    inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
    for level in reversed(range(depth)):
        i = next(counter)
        nodes.append(helper.make_node("Resize", [x, "", "scales"], [f"up{i}"], mode="nearest"))
        skip, c_skip = skips[level]
        nodes.append(helper.make_node("Concat", [f"up{i}", skip], [f"cat{i}"], axis=1))
        x = conv(conv(f"cat{i}", c + c_skip, c_skip), c_skip, c_skip)
        c = c_skip
    r = conv(x, c, channels, k=1, relu=False, scale=residual_scale)
    nodes.append(helper.make_node("Add", ["y1", r], ["x"]))
    graph = helper.make_graph(nodes, "random_unet", inputs, outputs, initializer=inits)
    return _save(graph, path, {"model_name": "random-unet", "model_version": str(seed)}
                 if metadata is None else metadata)


# ---------------------------------------------------------------------------------------------
# A real gateway process.

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


@pytest.fixture
def torch_one_thread():
    """One torch thread for training-side tests: on a small, shared machine extra threads only contend."""
    import torch  # only the training-side tests need torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_onnx(tmp_path_factory.mktemp("models") / "tiny.onnx")


@pytest.fixture(scope="module")
def gateway(tiny_model):
    """One gateway per test module, tiny model, small patches so tests stay fast."""
    with start_gateway(tiny_model, patch_size=64, patch_overlap=16, max_batch=8) as gw:
        yield gw


# ---------------------------------------------------------------------------------------------
# Metrics.

def read_metrics(url: str) -> dict[tuple[str, tuple], float]:
    """All samples of the Prometheus endpoint: {(name, sorted label items): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def metric(url: str, name: str, **labels) -> float:
    """One sample's value (0.0 when the sample does not exist yet)."""
    return read_metrics(url).get((name, tuple(sorted(labels.items()))), 0.0)
