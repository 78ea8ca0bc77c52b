"""The DDIM inpainting loop driven by the C++ refiner (``drdc_trt._C.Refiner``).

``csrc_inpaint_heat`` takes the arguments of
:func:`drdc_trt.methods.drdc.inpaint.inpaint_heat` and returns the same
:class:`~drdc_trt.methods.drdc.inpaint.LoopResult`, but the loop itself — the
schedule coefficients, the buffers, the fused prepare/step kernels and the
network calls in between — runs in C++. The network stays a Python callable
(``eps_fn``), wrapped in a ``_C.PythonRunner``: on the CPU it receives torch
tensors that view the C++ buffers, on CUDA tensors made from raw device
pointers (``__cuda_array_interface__``) on the loop's stream.

The C++ refiner owns its loop buffers (on CUDA ~385 MB at the ``fast`` preset,
batch 32), so one is built per (batch, shape, settings, net dtype) and reused
across calls, as the torch-free runtime does; the cache lives as long as the
``labels`` tensor it was built for (a Detector's). On CUDA the loop runs on the
caller's current stream, or, when that is the legacy default stream (on which
CUDA graphs cannot be captured and TensorRT adds syncs), on a side stream
ordered after and before the caller's.
"""

from __future__ import annotations

import contextlib
import hashlib
import weakref
from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch

from drdc_trt.methods.drdc.inpaint import EpsFn, LoopNoise, LoopResult
from drdc_trt.schedule import Schedule

_NET_DTYPES = {torch.float32: "float32", torch.float16: "float16"}
_PER_LABELS = 4          # refiners kept per labels tensor (least recently used dropped)
_cache: dict[int, OrderedDict] = {}   # id(labels) -> key -> (refiner, slot)
_stats = {"built": 0, "reused": 0}


class _EpsSlot:
    """The network of the current call: a cached refiner's runner calls whatever is here."""

    fn: EpsFn | None = None


def cache_info() -> dict:
    """Refiners built and reused so far, and how many are held now."""
    return {**_stats, "held": sum(len(v) for v in _cache.values())}


def clear_cache() -> None:
    """Drop every cached refiner (frees their buffers, e.g. between benchmarked engines)."""
    _cache.clear()


def _csrc():
    from drdc_trt import _C

    if not hasattr(_C, "Refiner"):
        raise RuntimeError("drdc_trt._C was built without the C++ refiner")
    return _C


def _require(name: str, t, shape: tuple, device: torch.device) -> None:
    from drdc_trt.ops import check_tensor as _check

    _check(name, t, shape, (torch.float32,), device)


def _cpu_callback(slot: _EpsSlot):
    def run(inp, timesteps, out, _stream):
        # numpy views of the C++ buffers: wrap without copying
        eps = slot.fn(torch.from_numpy(inp), torch.from_numpy(timesteps))
        dst = torch.from_numpy(out)
        if tuple(eps.shape) != tuple(dst.shape):
            raise ValueError(f"eps_fn returned shape {tuple(eps.shape)}, expected {tuple(dst.shape)}")
        dst.copy_(eps)

    return run


def _cuda_callback(slot: _EpsSlot, device: torch.device):
    def run(inp, timesteps, out, stream):
        ctx = (torch.cuda.stream(torch.cuda.ExternalStream(stream, device=device)) if stream
               else contextlib.nullcontext())
        with ctx:
            eps = slot.fn(torch.as_tensor(inp, device=device), torch.as_tensor(timesteps, device=device))
            dst = torch.as_tensor(out, device=device)
            if tuple(eps.shape) != tuple(dst.shape):
                raise ValueError(f"eps_fn returned shape {tuple(eps.shape)}, expected {tuple(dst.shape)}")
            dst.copy_(eps)

    return run


def csrc_inpaint_heat(
    x: torch.Tensor, labels: torch.Tensor, num_sets: int, eps_fn: EpsFn, schedule: Schedule,
    t0: int, num_steps: int, noise: LoopNoise, pool_factors: Sequence[int], clip_x0: bool = True,
    net_dtype: torch.dtype = torch.float32,
) -> LoopResult:
    """:func:`~drdc_trt.methods.drdc.inpaint.inpaint_heat` with the loop in C++ (same noise,
    same labels, same result to float rounding)."""
    C = _csrc()
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"x: expected B×3×H×W, got {tuple(x.shape) if hasattr(x, 'shape') else type(x).__name__}")
    if net_dtype not in _NET_DTYPES:
        raise TypeError(f"net_dtype {net_dtype} not in {list(_NET_DTYPES)}")
    if not isinstance(labels, torch.Tensor) or labels.dim() != 3 or labels.dtype != torch.int32:
        raise ValueError("labels: expected a J×H×W torch.int32 tensor")
    b, _, h, w = x.shape
    j = labels.shape[0]
    n = b * j * num_sets
    dev = x.device
    _require("x", x, (b, 3, h, w), dev)
    if tuple(labels.shape[1:]) != (h, w):
        raise ValueError(f"labels: shape {tuple(labels.shape)}, expected ({j}, {h}, {w})")
    _require("noise.fill", noise.fill, (n, 3, h, w), dev)
    _require("noise.start", noise.start, (n, 3, h, w), dev)
    _require("noise.steps", noise.steps, (num_steps, n, 3, h, w), dev)

    refiner, slot = _refiner_for(C, dev, b, h, w, labels, num_sets, schedule, t0, num_steps, pool_factors,
                                 clip_x0, net_dtype)
    heat = torch.empty(b, h, w, dtype=torch.float32, device=dev)
    xt = torch.empty(n, 3, h, w, dtype=torch.float32, device=dev)
    ptrs = dict(x=x.data_ptr(), heat=heat.data_ptr(), xt_out=xt.data_ptr(), fill=noise.fill.data_ptr(),
                start=noise.start.data_ptr(), steps=noise.steps.data_ptr())
    slot.fn = eps_fn
    try:
        if dev.type != "cuda":
            count = refiner.run(**ptrs, stream=0)
        else:
            from drdc_trt.backends.adapter import enqueue_stream

            with enqueue_stream(dev) as stream, torch.cuda.device(dev):
                count = refiner.run(**ptrs, stream=stream)
    finally:
        slot.fn = None  # the cache must not keep the caller's network alive
    return LoopResult(heat=heat, count=count, xt=xt)


def _refiner_for(C, dev, b, h, w, labels, num_sets, schedule, t0, num_steps, pool_factors, clip_x0, net_dtype):
    """A cached ``_C.Refiner`` for these settings (built on first use)."""
    pools = tuple(int(f) for f in pool_factors)
    ab = np.ascontiguousarray(schedule.alphas_cumprod, dtype=np.float64)
    key = (str(dev), b, h, w, num_sets, int(t0), int(num_steps), pools, bool(clip_x0), net_dtype,
           labels._version, hashlib.sha1(ab.tobytes()).hexdigest())
    per = _cache.get(id(labels))
    if per is None:
        per = _cache[id(labels)] = OrderedDict()
        weakref.finalize(labels, _cache.pop, id(labels), None)  # ids are reused once the tensor is gone
    entry = per.get(key)
    if entry is not None:
        per.move_to_end(key)
        _stats["reused"] += 1
        return entry
    slot = _EpsSlot()
    callback = _cuda_callback(slot, dev) if dev.type == "cuda" else _cpu_callback(slot)
    runner = C.PythonRunner(callback, device=dev.type, net_dtype=_NET_DTYPES[net_dtype], capturable=False)
    # the refiner's buffers land on the current device: make it the inputs' one
    with torch.cuda.device(dev) if dev.type == "cuda" else contextlib.nullcontext():
        refiner = C.Refiner(
            runner, device=dev.type, batch=b, height=h, width=w, num_sets=num_sets, t0=t0, num_steps=num_steps,
            pool_factors=list(pools), clip_x0=bool(clip_x0), labels=labels.detach().cpu().contiguous().numpy(),
            alphas_cumprod=ab,
        )
    entry = per[key] = (refiner, slot)
    while len(per) > _PER_LABELS:
        per.popitem(last=False)
    _stats["built"] += 1
    return entry


__all__ = ["cache_info", "clear_cache", "csrc_inpaint_heat"]
