"""Start PyTriton's bundled `tritonserver` (python backend only) against a model repository, and stop it by PID.

For `ssdtrt bench serve --repository`, the tests of `export-triton` and local trials. The stub gets the same set-up
PyTriton gives it: an environment's bin/ first on PATH (the stub's embedded Python then finds that environment's
site-packages; it ignores PYTHONPATH) — this interpreter's, or the serving env (numpy < 2) when this one has numpy 2
(`serve_env.stub_env`) —, the LIBDIR and PyTriton's bundled libraries on LD_LIBRARY_PATH, and the stub built for this
Python version in a private backend folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ssdtrt.core.errors import BackendUnavailableError, SSDTRTError
from ssdtrt.serve.pytriton_app import ensure_libpython_on_ld_path


#: start-up failures worth one more try (a race under load), as they appear in the server's log
RETRYABLE = ("Timeout occurred while waiting for config file",)


class ServerStartError(SSDTRTError):
    """tritonserver exited or did not become ready in time (its log tail is in the message)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _pytriton_dist() -> tuple[Path, Path]:
    """(tritonserver folder, bundled shared libraries) of the installed nvidia-pytriton wheel."""
    from ssdtrt.serve.serve_env import import_pytriton

    root = Path(import_pytriton().__file__).parent
    return root / "tritonserver", root.parent / "nvidia_pytriton.libs"


@dataclass
class TritonProcess:
    """One tritonserver child on 127.0.0.1 (by default) with free ports; `stop()` ends it (SIGTERM, then SIGKILL)."""

    repository: Path
    host: str = "127.0.0.1"
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _workdir: Path | None = None
    _log_copy: str = ""

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def start(self) -> TritonProcess:
        dist, libs = _pytriton_dist()
        self._workdir = Path(tempfile.mkdtemp(prefix="ssdtrt-triton-"))
        backends = self._workdir / "backends"
        shutil.copytree(dist / "backends", backends, ignore=shutil.ignore_patterns("__pycache__"))
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise BackendUnavailableError(f"PyTriton has no python-backend stub for Python {version}")
        shutil.copy2(stub, backends / "python" / "triton_python_backend_stub")
        env = dict(os.environ)
        ensure_libpython_on_ld_path(env)
        env["LD_LIBRARY_PATH"] = os.pathsep.join([env["LD_LIBRARY_PATH"], str(libs)])
        from ssdtrt.serve.serve_env import stub_env

        stub_python = stub_env()
        python_bin = stub_python / "bin" if stub_python is not None else Path(sys.executable).parent
        env["PATH"] = os.pathsep.join([str(python_bin), env.get("PATH", "")])
        self.log_path = self._workdir / "tritonserver.log"
        cmd = [
            str(dist / "bin" / "tritonserver"), f"--model-repository={self.repository}",
            f"--backend-directory={backends}", f"--cache-directory={dist / 'caches'}",
            f"--http-address={self.host}", f"--http-port={self.http_port}",
            f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix()}",
            "--exit-timeout-secs=30", *self.extra_args,
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        return self

    def wait_ready(self, timeout_s: float = 120.0, *, model: str | None = None, live_only: bool = False) -> None:
        """Poll /v2/health/ready (/live; /v2/models/MODEL/ready when `model` is given: PyTriton's server is ready
        before it loads its model) until it answers 200; ServerStartError with the log tail otherwise."""
        path = f"v2/models/{model}/ready" if model else "v2/health/live" if live_only else "v2/health/ready"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise ServerStartError(f"tritonserver exited (code {self.process and self.process.returncode}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://{self.http_url}/{path}", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise ServerStartError(f"tritonserver not {path} after {timeout_s:.0f} s:\n{self.log_tail()}")

    def start_ready(self, timeout_s: float = 180.0, *, model: str | None = None, attempts: int = 3) -> TritonProcess:
        """`start` + `wait_ready`, starting again (same ports) when the model failed to load for a start-up race:
        PyTriton's stub waits only 1 s for its handshake socket, which a loaded 2-core machine can miss."""
        for attempt in range(1, attempts + 1):
            self.start()
            try:
                self.wait_ready(timeout_s, model=model)
                return self
            except ServerStartError as err:
                self.stop()
                if attempt == attempts or not any(m in str(err) or m in self.log_text() for m in RETRYABLE):
                    raise
        return self

    def log_text(self) -> str:
        if self.log_path is not None and self.log_path.is_file():
            return self.log_path.read_text(errors="replace")
        return self._log_copy

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self, timeout_s: float = 40.0) -> int | None:
        """SIGTERM (Triton drains in-flight requests), SIGKILL of the process group after `timeout_s`."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if proc is not None:  # python-backend stubs share the group: none may outlive the server
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for region in Path("/dev/shm").glob(f"{self._shm_prefix()}*"):  # left only when the server was killed
            region.unlink(missing_ok=True)
        if self._workdir is not None:
            self._keep_log()
            shutil.rmtree(self._workdir, ignore_errors=True)
        return None if proc is None else proc.returncode

    def _shm_prefix(self) -> str:
        """This server's python-backend shared-memory regions: /dev/shm/<prefix>*."""
        return f"ssdtrt{os.getpid()}x{self.http_port}"

    def _keep_log(self) -> None:
        if self.log_path is not None and self.log_path.is_file():
            self._log_copy = self.log_text()

    def __enter__(self) -> TritonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class ServeProcess(TritonProcess):
    """`ssdtrt serve MODEL` as a child process (for `bench serve` and tests): same ports, readiness and stop.

    `repository` is unused here (kept by the base class); `model` is what gets served."""

    model: Path | None = None
    serve_args: tuple[str, ...] = ()

    def start(self) -> ServeProcess:
        self._workdir = Path(tempfile.mkdtemp(prefix="ssdtrt-serve-"))
        self.log_path = self._workdir / "serve.log"
        cmd = [
            sys.executable, "-m", "ssdtrt.cli.app", "serve", str(self.model), "--host", self.host,
            "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
            "--metrics-port", str(self.metrics_port), *self.serve_args,
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self
