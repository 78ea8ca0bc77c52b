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
                 stop_timeout_s: float = 60.0, env: dict | None = None):
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        self.args = [sys.executable, "-m", "drdc_trt.cli", "serve", *map(str, args), "--host", "127.0.0.1",
                     "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
                     "--metrics-port", str(self.metrics_port)]
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
        # own process group: a kill on timeout takes tritonserver and the stubs with it
        self.proc = subprocess.Popen(self.args, stdout=self._fh, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
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
