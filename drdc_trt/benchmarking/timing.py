"""Clocks, time-bounded measurement, per-stage timers and peak-memory probes.

Method (as trtexec / polygraphy): warm up for a time (at least one call, which
also pays for lazy initialisation, CUDA-graph capture, cuDNN/oneDNN plan
selection), then time back-to-back calls until both ``min_iters`` calls and
``max_seconds`` have passed, or ``max_iters`` calls were made. Each call is one
sample. On CUDA a sample is the time between two CUDA events recorded on the
current stream around the call, followed by a synchronisation (so a sample is
the latency of one batch, launch gaps included); on the CPU it is
``time.perf_counter``.
"""

from __future__ import annotations

import contextlib
import resource
import time
from dataclasses import dataclass, field
from typing import Callable

import torch


class Clock:
    """``mark()`` a point in time; ``ms(a, b)`` between two marks after ``sync()``."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"

    def mark(self):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()  # on the current stream (the refiner's, inside its network callback)
            return ev
        return time.perf_counter()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def ms(self, a, b) -> float:
        if self.cuda:
            return float(a.elapsed_time(b))
        return (b - a) * 1e3

    @property
    def method(self) -> str:
        return "CUDA events on the current stream + synchronize" if self.cuda else "time.perf_counter"


class StageTimer:
    """Sums the time spent in named spans during one call (``begin`` … ``resolve``).

    Spans are marks of the same :class:`Clock` (no synchronisation inside the call,
    so timing a stage does not change the schedule of the work)."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self._spans: list = []

    def begin(self) -> None:
        self._spans = []

    @contextlib.contextmanager
    def span(self, name: str):
        a = self.clock.mark()
        try:
            yield
        finally:
            self._spans.append((name, a, self.clock.mark()))

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            with self.span(name):
                return fn(*args, **kwargs)

        timed.__wrapped__ = fn
        return timed

    def resolve(self) -> dict[str, dict]:
        """{name: {"ms": total, "calls": n}} of the spans since ``begin`` (after ``clock.sync()``)."""
        out: dict[str, dict] = {}
        for name, a, b in self._spans:
            rec = out.setdefault(name, {"ms": 0.0, "calls": 0})
            rec["ms"] += self.clock.ms(a, b)
            rec["calls"] += 1
        return out


@dataclass
class Measurement:
    latencies_ms: list[float]
    stages: list[dict] = field(default_factory=list)  # one StageTimer.resolve() per sample
    warmup_iters: int = 0
    warmup_s: float = 0.0
    measure_s: float = 0.0
    stop_reason: str = ""


def measure(fn: Callable[[], object], clock: Clock, warmup_s: float, min_iters: int, max_seconds: float,
            max_iters: int = 200, stages: StageTimer | None = None) -> Measurement:
    """Warm up ``fn`` for ``warmup_s`` (at least one call), then sample it (see module docstring)."""
    if min_iters < 1 or max_iters < min_iters:
        raise ValueError(f"need 1 <= min_iters <= max_iters, got {min_iters}, {max_iters}")
    t0 = time.perf_counter()
    warm = 0
    while True:
        fn()
        clock.sync()
        warm += 1
        if time.perf_counter() - t0 >= warmup_s:
            break
    warm_s = time.perf_counter() - t0
    lat: list[float] = []
    per_stage: list[dict] = []
    t0 = time.perf_counter()
    while True:
        if stages is not None:
            stages.begin()
        a = clock.mark()
        fn()
        b = clock.mark()
        clock.sync()
        lat.append(clock.ms(a, b))
        if stages is not None:
            per_stage.append(stages.resolve())
        elapsed = time.perf_counter() - t0
        if len(lat) >= max_iters:
            reason = f"max_iters={max_iters} reached"
            break
        if len(lat) >= min_iters and elapsed >= max_seconds:
            reason = (f"max_seconds={max_seconds:g} reached" if len(lat) > min_iters
                      else f"min_iters={min_iters} done (past max_seconds={max_seconds:g})")
            break
    return Measurement(lat, per_stage, warm, warm_s, time.perf_counter() - t0, reason)


# --------------------------------------------------------------------------- memory
_KIB = 1024.0


def _rss_kib() -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to /proc/self/clear_refs resets the peak RSS (VmHWM, and with it
    getrusage's ru_maxrss) to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class MemoryProbe:
    """Peak memory of one measured row.

    Host: peak RSS from ``resource.getrusage`` (reset at the start of the row where
    Linux allows it, else the process's peak so far). CUDA: the torch caching
    allocator's ``max_memory_allocated`` (reset per row) and the device memory in use
    (``mem_get_info``), which also counts engines with their own allocators (ONNX
    Runtime CUDA, TensorRT).
    """

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.reset_ok = False
        self.rss_start_kib: float | None = None

    def reset(self) -> None:
        import gc

        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        self.reset_ok = _reset_peak_rss()
        self.rss_start_kib = _rss_kib()

    def read(self) -> dict:
        peak_kib = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
        out = {
            "host_peak_rss_mib": round(peak_kib / _KIB, 1),
            "host_peak_rss_scope": "this row" if self.reset_ok else "process lifetime",
        }
        if self.rss_start_kib is not None:
            out["host_rss_at_start_mib"] = round(self.rss_start_kib / _KIB, 1)
            out["host_peak_increase_mib"] = round(max(peak_kib - self.rss_start_kib, 0.0) / _KIB, 1)
        if self.device.type == "cuda":
            free, total = torch.cuda.mem_get_info(self.device)
            out["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
            out["cuda_max_reserved_mib"] = round(torch.cuda.max_memory_reserved(self.device) / 2**20, 1)
            out["cuda_device_used_mib"] = round((total - free) / 2**20, 1)
            out["peak_mib"], out["peak_kind"] = out["cuda_max_allocated_mib"], "torch.cuda.max_memory_allocated"
        else:
            out["peak_mib"], out["peak_kind"] = out["host_peak_rss_mib"], "peak RSS (getrusage)"
        return out

