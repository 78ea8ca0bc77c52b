"""The options of ``drdc-bench`` (every run's), its usage error, and the thread count of a run."""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch


@dataclass
class Options:
    config: str | None = None          # preset name (when neither bundle nor model)
    bundle: str | None = None
    model: str | None = None           # checkpoint folder (real weights for the torch rows)
    backends: tuple[str, ...] = ("torch", "torch-compiled", "onnxruntime", "tensorrt")
    loops: tuple[str, ...] = ("torch", "csrc")
    precisions: tuple[str, ...] = ("float32",)
    batches: tuple[int, ...] = (1, 8)
    steps: int | None = None
    size: int | None = None
    device: str = "cpu"
    out: Path = Path("benchmarks/results")
    warmup_s: float = 0.0
    min_iters: int = 3
    max_seconds: float = 10.0
    max_iters: int = 200
    budget_s: float | None = None
    compile_mode: str = "graph"
    seed: int = 0
    threads: int | None = None         # CPU threads of torch, the _C kernels and ONNX Runtime
    date: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).date().isoformat())
    tag: str = ""
    write: bool = True
    images: str | None = None          # --method glad/all: a folder of input images (random ones otherwise)
    int8_calib: str | None = None      # normal images to quantize a temporary bundle's denoisers on
    int8_calib_images: int = 64        # how many of them run through the loop


OPENVINO_PRECISIONS = ("float32", "bfloat16", "int8")  # int8: a bundle written with drdc export --int8


class BenchError(ValueError):
    """A bad combination of options (reported as a usage error)."""


@contextmanager
def thread_count(n: int | None):
    """torch's and the compiled kernels' CPU threads set to ``n`` for the block, then restored:
    the bench also runs in-process (tests, notebooks), where a changed count would change the
    floating-point sums of whatever runs next."""
    if n is None:
        yield
        return
    if n < 1:
        raise BenchError(f"--threads must be >= 1, got {n}")
    from drdc_trt import _C

    before = torch.get_num_threads(), _C.num_threads()
    torch.set_num_threads(n)
    _C.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        _C.set_num_threads(before[1])
