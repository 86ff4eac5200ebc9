"""Starts a real `tritonserver` (the binary shipped by nvidia-pytriton) on loopback for the tests.

That binary has Triton's Python backend but no ONNX Runtime backend, so the server gets a temporary
model repository in which the repository's CPU model (model_repository/tsva_cpu: same name
handling, batch size, inputs/outputs, dynamic batching, warm-up) is served by a Python-backend
model that runs the same ONNX file with ONNX Runtime (triton_harness_model.py).

Pitfalls handled here (seen on these machines):
- the Python-backend stub must sit in the backend folder the server is pointed at, so a temporary
  backend folder gets libtriton_python.so, triton_python_backend_utils.py and the stub for this
  Python version;
- with a pyenv Python the stub links the system libpython and fails with
  `'_thread.RLock' object has no attribute '_recursion_count'` unless LD_LIBRARY_PATH puts
  sys.base_prefix/lib first;
- the copied stub's RPATH no longer finds nvidia_pytriton.libs (libcudart), so LD_LIBRARY_PATH
  names that folder too;
- the stub imports numpy/onnxruntime from this virtual environment (its bin first on PATH).
The server runs in its own process group: kill() SIGKILLs the server and its stubs together, as a
node crash would, and stop() never leaves a stub behind.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tsva.common.contract import INPUT_DD

from tests.support.gateway import free_port
from tests.support.paths import REPO_ROOT

MODEL_REPOSITORY = REPO_ROOT / "model_repository"
CPU_CONFIG = MODEL_REPOSITORY / "tsva_cpu" / "config.pbtxt"
SHIPPED_ONNX = MODEL_REPOSITORY / "tsva" / "1" / "model.onnx"
PYTHON_MODEL_SOURCE = Path(__file__).with_name("triton_harness_model.py")


def pytriton_dir() -> Path:
    import pytriton

    return Path(pytriton.__file__).parent / "tritonserver"


def tritonserver_binary() -> Path:
    return pytriton_dir() / "bin" / "tritonserver"


def build_backend_dir(dst: Path) -> Path:
    """A backend folder with the Python backend and the stub for this Python version."""
    src = pytriton_dir()
    python_dir = Path(dst) / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy2(src / "backends" / "python" / name, python_dir / name)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    shutil.copy2(src / "python_backend_stubs" / version / "triton_python_backend_stub",
                 python_dir / "triton_python_backend_stub")
    return Path(dst)


def cpu_model_config(model_name: str, onnx_path: Path, intra_op_threads: int = 1,
                     max_batch_size: int | None = None):
    """model_repository/tsva_cpu's config, with the ONNX Runtime platform replaced by the Python
    backend running the same ONNX file."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse(CPU_CONFIG.read_text(), model_config_pb2.ModelConfig())
    config.name = model_name
    config.platform = ""
    config.backend = "python"
    config.ClearField("optimization")
    for key in list(config.parameters):  # ONNX Runtime backend's own knobs
        del config.parameters[key]
    config.parameters["onnx_path"].string_value = str(Path(onnx_path).resolve())
    config.parameters["intra_op_threads"].string_value = str(intra_op_threads)
    if max_batch_size is not None:
        config.max_batch_size = max_batch_size
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    _follow_pixel_io(config, model)
    _follow_defocus_input(config, model)
    return config


def _follow_defocus_input(config, model) -> None:
    """A defocus-conditioned ONNX model: its third input `dd` (float32, one value per item) in the
    config, and in the warm-up, as `tsva export` writes it for Triton."""
    from tritonclient.grpc import model_config_pb2

    if INPUT_DD not in [i.name for i in model.graph.input]:
        return
    config.input.add(name=INPUT_DD, data_type=model_config_pb2.TYPE_FP32, dims=[1])
    for warmup in config.model_warmup:
        warmup.inputs[INPUT_DD].CopyFrom(model_config_pb2.ModelWarmup.Input(
            data_type=model_config_pb2.TYPE_FP32, dims=[1], zero_data=True))


def _follow_pixel_io(config, model) -> None:
    """A pixel-typed ONNX file (`tsva export --io uint8|uint16`): its tensors as it declares them
    (NHWC, its element type), the warm-up in that form, and its io.* metadata as config
    parameters, which is how the gateway learns them from Triton (as pixel_triton_config writes)."""
    import onnx
    from tritonclient.grpc import model_config_pb2

    elem = model.graph.input[0].type.tensor_type.elem_type
    triton_type = {onnx.TensorProto.UINT8: "TYPE_UINT8", onnx.TensorProto.UINT16: "TYPE_UINT16"}.get(elem)
    if triton_type is None:
        return  # the float32 contract: the config as it is
    data_type = model_config_pb2.DataType.Value(triton_type)
    for tensor in [*config.input, *config.output]:
        tensor.data_type = data_type
        tensor.dims[:] = [-1, -1, 3]
    for warmup in config.model_warmup:
        for tensor in warmup.inputs.values():
            side = tensor.dims[-1]
            tensor.data_type = data_type
            tensor.dims[:] = [side, side, 3]
    for prop in model.metadata_props:
        if prop.key.startswith("io."):
            config.parameters[prop.key].string_value = prop.value


def build_model_repository(dst: Path, models: dict[str, Path], intra_op_threads: int = 1,
                           max_batch_size: int | None = None) -> Path:
    """models: Triton model name -> ONNX file it serves."""
    from google.protobuf import text_format

    for model_name, onnx_path in models.items():
        model_dir = Path(dst) / model_name
        (model_dir / "1").mkdir(parents=True, exist_ok=True)
        shutil.copy2(PYTHON_MODEL_SOURCE, model_dir / "1" / "model.py")
        config = cpu_model_config(model_name, onnx_path, intra_op_threads, max_batch_size)
        (model_dir / "config.pbtxt").write_text(text_format.MessageToString(config))
    return Path(dst)


def stub_environment() -> dict[str, str]:
    env = dict(os.environ)
    base_lib = str(Path(sys.base_prefix) / "lib")
    # The copied stub's RPATH ($ORIGIN/../../../../nvidia_pytriton.libs) no longer resolves.
    bundled_libs = str(pytriton_dir().parents[1] / "nvidia_pytriton.libs")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (base_lib, bundled_libs, env.get("LD_LIBRARY_PATH")) if p)
    # The stub's embedded interpreter ignores PYTHONPATH and finds its prefix (hence numpy and
    # onnxruntime) through the first `python3` on PATH: put this environment's first, as an
    # activated venv would (CI does not activate it).
    env["PATH"] = os.pathsep.join(p for p in (str(Path(sys.executable).parent), env.get("PATH")) if p)
    env["VIRTUAL_ENV"] = sys.prefix
    return env


class TritonServer:
    """One tritonserver process on 127.0.0.1 with free gRPC and metrics ports.

    The ports stay the same across restart(), as a restarted node keeps its address."""

    def __init__(self, models: dict[str, Path] | Path, workdir: Path | None = None,
                 intra_op_threads: int = 1, max_batch_size: int | None = None):
        """models: Triton model name -> ONNX file, or one ONNX file served as "tsva"."""
        self.models = models if isinstance(models, dict) else {"tsva": Path(models)}
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="tsva-triton-"))
        self.backend_dir = build_backend_dir(self.workdir / "backends")
        self.repository = build_model_repository(
            self.workdir / "models", self.models, intra_op_threads, max_batch_size)
        self.grpc_port = free_port()
        self.metrics_port = free_port()
        self.log_path = self.workdir / "tritonserver.log"
        # Python-backend shared memory regions are named by this prefix, so a SIGKILLed server's
        # regions can be removed from /dev/shm.
        self.shm_prefix = f"tsva_test_{os.getpid()}_{self.grpc_port}_"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        return [
            str(tritonserver_binary()),
            f"--model-repository={self.repository}",
            f"--backend-directory={self.backend_dir}",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            "--allow-http=false",
            "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
            "--allow-metrics=true", "--allow-gpu-metrics=false",
            "--metrics-address=127.0.0.1", f"--metrics-port={self.metrics_port}",
            "--metrics-interval-ms=500",
            "--strict-readiness=true", "--exit-on-error=true",
            "--log-verbose=0",
        ]

    def start(self, wait: bool = True, timeout_s: float = 60.0) -> "TritonServer":
        assert self.process is None or self.process.poll() is not None, "already running"
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT,
                                        env=stub_environment(), start_new_session=True)
        if wait:
            try:
                self.wait_ready(timeout_s)
            except BaseException:
                self.stop()
                raise
        return self

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        import tritonclient.grpc as grpcclient

        deadline = time.monotonic() + timeout_s
        client = grpcclient.InferenceServerClient(self.url)
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"tritonserver exited with {self.process.returncode}:\n{self.log_tail()}")
                if "error while loading shared libraries" in self.log_tail():
                    raise RuntimeError(f"the Python-backend stub cannot start:\n{self.log_tail()}")
                try:
                    if all(client.is_model_ready(name) for name in self.models):
                        return
                except Exception:
                    pass
                time.sleep(0.2)
        finally:
            client.close()
        raise TimeoutError(f"tritonserver not ready in {timeout_s}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the server and its Python stubs at once (a crashed node)."""
        if self.process is not None and self.process.poll() is None:
            self._signal_group(signal.SIGKILL)
            self.process.wait(10)
        self._after_exit()

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(10)
        if self.process is not None:
            self._signal_group(signal.SIGKILL)  # stubs left behind by the server, if any
        self._after_exit()

    def _after_exit(self) -> None:
        for region in Path("/dev/shm").glob(self.shm_prefix + "*"):
            region.unlink(missing_ok=True)
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return response.read().decode()

    def close(self) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def metric_value(metrics_text: str, name: str, model: str | None = None) -> float:
    """Sum of a Prometheus counter/gauge in Triton's metrics text, optionally for one model."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            # prometheus_client's parser names counter samples `<name>_total`.
            if sample.name in (name, name + "_total") and (model is None or sample.labels.get("model") == model):
                total += sample.value
    return total


def wait_for_metric(read, at_least: float, timeout_s: float = 10.0) -> float:
    """Polls read() until it reaches at_least or timeout_s passes; returns the last value.
    (Triton updates its counters when a response is sent, a moment after the client has it.)"""
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if value >= at_least or time.monotonic() > deadline:
            return value
        time.sleep(0.1)
