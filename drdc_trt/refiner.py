"""The DDIM inpainting loop driven by the C++ refiner (``drdc_trt._C.Refiner``).

``csrc_inpaint_heat`` takes the arguments of
:func:`drdc_trt.diffusion.inpaint.inpaint_heat` and returns the same
:class:`~drdc_trt.diffusion.inpaint.LoopResult`, but the loop itself — the
schedule coefficients, the buffers, the fused prepare/step kernels and the
network calls in between — runs in C++. The network stays a Python callable
(``eps_fn``), wrapped in a ``_C.PythonRunner``: on the CPU it receives torch
tensors that view the C++ buffers, on CUDA tensors made from raw device
pointers (``__cuda_array_interface__``) on the loop's stream.
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import torch

from .diffusion.inpaint import EpsFn, LoopNoise, LoopResult
from .diffusion.schedule import Schedule

_NET_DTYPES = {torch.float32: "float32", torch.float16: "float16"}


def _csrc():
    from . import _C  # noqa: PLC0415

    if not hasattr(_C, "Refiner"):
        raise RuntimeError("drdc_trt._C was built without the C++ refiner")
    return _C


def _require(name: str, t, shape: tuple, device: torch.device) -> None:
    from .ops import _check  # noqa: PLC0415

    _check(name, t, shape, (torch.float32,), device)


def _cpu_callback(eps_fn: EpsFn):
    def run(inp, timesteps, out, _stream):
        # numpy views of the C++ buffers: wrap without copying
        eps = eps_fn(torch.from_numpy(inp), torch.from_numpy(timesteps))
        dst = torch.from_numpy(out)
        if tuple(eps.shape) != tuple(dst.shape):
            raise ValueError(f"eps_fn returned shape {tuple(eps.shape)}, expected {tuple(dst.shape)}")
        dst.copy_(eps)

    return run


def _cuda_callback(eps_fn: EpsFn, device: torch.device):
    def run(inp, timesteps, out, stream):
        ctx = (torch.cuda.stream(torch.cuda.ExternalStream(stream, device=device)) if stream
               else contextlib.nullcontext())
        with ctx:
            eps = eps_fn(torch.as_tensor(inp, device=device), torch.as_tensor(timesteps, device=device))
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
    """:func:`~drdc_trt.diffusion.inpaint.inpaint_heat` with the loop in C++ (same noise,
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

    if dev.type == "cuda":
        callback, stream = _cuda_callback(eps_fn, dev), torch.cuda.current_stream(dev).cuda_stream
    else:
        callback, stream = _cpu_callback(eps_fn), 0
    runner = C.PythonRunner(callback, device=dev.type, net_dtype=_NET_DTYPES[net_dtype], capturable=False)
    refiner = C.Refiner(
        runner, device=dev.type, batch=b, height=h, width=w, num_sets=num_sets, t0=t0, num_steps=num_steps,
        pool_factors=[int(f) for f in pool_factors], clip_x0=bool(clip_x0),
        labels=labels.detach().cpu().contiguous().numpy(), alphas_cumprod=schedule.alphas_cumprod,
    )
    heat = torch.empty(b, h, w, dtype=torch.float32, device=dev)
    xt = torch.empty(n, 3, h, w, dtype=torch.float32, device=dev)
    count = refiner.run(x=x.data_ptr(), heat=heat.data_ptr(), xt_out=xt.data_ptr(), fill=noise.fill.data_ptr(),
                        start=noise.start.data_ptr(), steps=noise.steps.data_ptr(), stream=stream)
    return LoopResult(heat=heat, count=count, xt=xt)


__all__ = ["csrc_inpaint_heat"]
