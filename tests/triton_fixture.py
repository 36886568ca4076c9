"""A real Triton Inference Server for tests: PyPI nvidia-pytriton's `tritonserver` binary (CPU, python
backend only; `make triton-server` unpacks it) serving the exported ONNX file through the python-backend
twin of the production model (artsearch_tools.model_export.triton_repository). No pytest in here: any test
module or conftest can use it.

    server = start_triton_server(model_path, workdir)   # ready when it returns
    server.grpc_url                                      # "127.0.0.1:<port>", for TRITON_URL
    server.stop(); server.start()                        # a restart on the same ports
    server.freeze(); server.thaw()                       # SIGSTOP / SIGCONT: a server that hangs
    server.stop()
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from artsearch_tools.launcher import free_ports
from artsearch_tools.model_export.triton_repository import DEFAULT_MODEL_NAME, write_python_backend_repository

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TRITONSERVER_BIN = REPO_ROOT / ".cache" / "tritonserver" / "bin" / "tritonserver"


class TritonServerError(RuntimeError):
    """The server binary is missing, or the server exited or never became ready (with its log's end)."""


def tritonserver_binary() -> Path:
    """TRITONSERVER_BIN, or the binary `make triton-server` unpacks."""
    binary = Path(os.environ.get("TRITONSERVER_BIN") or DEFAULT_TRITONSERVER_BIN)
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise TritonServerError(
            f"{binary} is missing: run `make triton-server` (the `make test` target does)"
        )
    return binary


def build_python_backend_repository(
    model_path: Path, repository: Path, model_name: str = DEFAULT_MODEL_NAME
) -> Path:
    """The test model repository: this interpreter's environment (numpy, onnxruntime) runs model.py."""
    write_python_backend_repository(
        model_path, repository, model_name=model_name, execution_env=Path(sys.prefix)
    )
    return repository


def server_environment(binary: Path) -> dict[str, str]:
    """The binary finds its own libraries by RPATH; the python backend's stub, a separate executable, needs
    them on LD_LIBRARY_PATH, and libpython (not on the loader's default path with pyenv's Python)."""
    libraries = [str(binary.parent.parent / "lib"), str(sysconfig.get_config_var("LIBDIR"))]
    inherited = os.environ.get("LD_LIBRARY_PATH")
    return {
        **os.environ,
        "LD_LIBRARY_PATH": os.pathsep.join([*libraries, *([inherited] if inherited else [])]),
    }


@dataclass
class TritonServer:
    """One tritonserver process on loopback ports; `start()` again after `stop()` reuses the ports."""

    binary: Path
    repository: Path
    log_path: Path
    grpc_port: int
    http_port: int
    metrics_port: int
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        return [
            str(self.binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={self.binary.parent.parent / 'backends'}",
            "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
            "--http-address=127.0.0.1", f"--http-port={self.http_port}",
            "--metrics-address=127.0.0.1", f"--metrics-port={self.metrics_port}",
            # config.pbtxt is complete: skip the extra stub launch that auto-completion costs per model.
            "--disable-auto-complete-config",
            "--exit-timeout-secs=5",
        ]  # fmt: skip

    def launch(self) -> None:
        """Starts the process without waiting for it to be ready (a server coming up)."""
        if self.process is not None and self.process.poll() is None:
            raise TritonServerError("tritonserver is already running")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=server_environment(self.binary),
                start_new_session=True,
            )

    def start(self, timeout: float = 60.0) -> float:
        """Launches and waits until ready; returns the seconds it took."""
        started = time.monotonic()
        self.launch()
        self.wait_ready(timeout)
        return time.monotonic() - started

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise TritonServerError(f"tritonserver exited before it was ready:\n{self.log_tail()}")
            if self.is_ready():
                return
            time.sleep(0.1)
        raise TritonServerError(f"tritonserver not ready after {timeout:g} s:\n{self.log_tail()}")

    def is_ready(self) -> bool:
        """Ready, and done starting: Triton starts its gRPC, HTTP and metrics services in that order, and
        exits when the last cannot bind its port. Ready on HTTP alone, a test could read metrics not served
        yet, or use a server about to exit."""
        return self._answers(f"{self.http_url}/v2/health/ready") and self._answers(self.metrics_url)

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (Triton unloads its models and stops its python stubs), then SIGKILL after `grace`."""
        if self.process is None:
            return
        self.thaw()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def freeze(self) -> None:
        """SIGSTOP: the server keeps its ports (connections open) but answers nothing, like a hung one."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def log_tail(self, characters: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-characters:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> TritonServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_triton_server(
    model_path: Path,
    workdir: Path,
    *,
    model_name: str = DEFAULT_MODEL_NAME,
    timeout: float = 60.0,
    start: bool = True,
) -> TritonServer:
    """Builds the python-backend repository under `workdir` and starts a server on free loopback ports;
    returns it ready. The caller stops it (`stop()` or a `with` block). With `start=False` the server is
    returned unstarted (a test may change the repository first, then `start()`)."""
    binary = tritonserver_binary()
    repository = build_python_backend_repository(model_path, workdir / "model_repository", model_name)
    grpc_port, http_port, metrics_port = free_ports(3)
    server = TritonServer(
        binary, repository, workdir / "tritonserver.log", grpc_port, http_port, metrics_port
    )
    if not start:
        return server
    try:
        server.start(timeout)
    except BaseException:
        server.stop()
        raise
    return server
