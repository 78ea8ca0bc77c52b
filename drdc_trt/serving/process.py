"""``drdc serve`` as a child process: free ports, wait until ready, stop with SIGTERM (kill on
timeout), memory of the whole process tree (the Python process, tritonserver and its Python-backend
stubs). Used by the serving tests and the load test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from . import MODEL_ENCODED, MODEL_RAW


def free_ports(n: int) -> list[int]:
    """n distinct ports free on 127.0.0.1 now (bound to port 0, then released)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of pid and all its descendants (Linux /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
        todo += _children(p)
    return total


class ServerProcess:
    """``python -m drdc_trt.cli serve ARGS`` on 127.0.0.1 with free ports; use as a context manager
    (always stopped on exit: SIGTERM, then SIGKILL of the process group after ``stop_timeout_s``)."""

    def __init__(self, args: list[str], log_path: str | Path, start_timeout_s: float = 180.0,
                 stop_timeout_s: float = 60.0, env: dict | None = None, command: list[str] | None = None):
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        ports = [str(self.http_port), str(self.grpc_port), str(self.metrics_port)]
        if command is None:
            self.args = [sys.executable, "-m", "drdc_trt.cli", "serve", *map(str, args), "--host", "127.0.0.1",
                         "--http-port", ports[0], "--grpc-port", ports[1], "--metrics-port", ports[2]]
        else:  # a plain tritonserver command line; the ports follow
            self.args = [*map(str, command), "--http-address", "127.0.0.1", "--grpc-address", "127.0.0.1",
                         "--http-port", ports[0], "--grpc-port", ports[1], "--metrics-port", ports[2]]
        self.log_path = Path(log_path)
        self.start_timeout_s, self.stop_timeout_s = start_timeout_s, stop_timeout_s
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _get_ok(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}{path}", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    def health(self, what: str = "ready") -> bool:
        """Triton's /v2/health/ready or /v2/health/live."""
        return self._get_ok(f"/v2/health/{what}")

    def models_ready(self) -> bool:
        """Both models loaded (PyTriton loads them one after the other; the server reports ready
        as soon as the first is)."""
        return all(self._get_ok(f"/v2/models/{m}/ready") for m in (MODEL_RAW, MODEL_ENCODED))

    def start(self) -> "ServerProcess":
        self._fh = open(self.log_path, "wb")
        # own process group: a kill on timeout takes tritonserver and the stubs with it; started in the
        # log's folder, not the caller's: from a source checkout `-m` and the backend stubs would put
        # the checkout's drdc_trt/ (not the installed package) first on sys.path
        self.proc = subprocess.Popen(self.args, stdout=self._fh, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True, cwd=self.log_path.parent)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"drdc serve exited with {self.proc.returncode} before it was ready:\n"
                                   f"{self.log()[-6000:]}")
            if self.health("ready") and self.models_ready():
                return self
            time.sleep(0.25)
        self.kill()
        raise TimeoutError(f"drdc serve not ready after {self.start_timeout_s} s:\n{self.log()[-6000:]}")

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float | None = None) -> int:
        try:
            return self.proc.wait(timeout=self.stop_timeout_s if timeout_s is None else timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL to the whole process group (the server's own session), leftovers included."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait(timeout=30)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        self.terminate()
        try:
            return self.wait()
        except subprocess.TimeoutExpired:
            return None
        finally:
            self.kill()  # stray children of the group, if any
            self._fh.close()

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def rss_bytes(self) -> int:
        return tree_rss_bytes(self.proc.pid)


def bundled_tritonserver(repository: str | Path, workdir: str | Path, log_path: str | Path,
                         **kwargs) -> ServerProcess:
    """The ``tritonserver`` of the PyTriton wheel (Python backend only) on a model repository, set up
    as PyTriton sets it up: the binaries copied to ``workdir`` with the Python-backend stub of this
    interpreter's version, this interpreter's libpython and libraries on LD_LIBRARY_PATH, and its
    bin/ first on PATH (the embedded Python finds this environment's packages through it)."""
    import shutil
    import sysconfig

    from pytriton.server.triton_server import get_triton_python_backend_python_env
    from pytriton.triton import TRITONSERVER_DIST_DIR
    from pytriton.utils.distribution import get_libs_path, get_stub_path

    dist = Path(workdir) / "tritonserver"
    shutil.copytree(TRITONSERVER_DIST_DIR, dist, ignore=shutil.ignore_patterns("python_backend_stubs"))
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    shutil.copy(get_stub_path(version), dist / "backends" / "python" / "triton_python_backend_stub")
    libs = [p for p in (sysconfig.get_config_var("LIBDIR"), str(get_libs_path()), os.environ.get("LD_LIBRARY_PATH"))
            if p]
    env = {"LD_LIBRARY_PATH": ":".join(libs),
           "PATH": f"{get_triton_python_backend_python_env() / 'bin'}:{os.environ.get('PATH', '')}"}
    command = [dist / "bin" / "tritonserver", "--model-repository", Path(repository).resolve(),
               "--backend-directory", dist / "backends", "--strict-readiness", "true", "--exit-timeout-secs", "30"]
    return ServerProcess([], log_path, env=env, command=command, **kwargs)
