"""Compiled PyTorch runner: CUDA graphs and/or torch.compile on a GPU.

Modes (CUDA only):

* ``"graph"`` (default) — eager modules, one CUDA graph captured per input
  shape (after warm-up on a side stream) and replayed: removes the per-kernel
  launch overhead of the many small U-Net kernels;
* ``"compile"`` — ``torch.compile`` (Inductor, static shapes, no CUDA graphs);
* ``"compile+graph"`` — the compiled function captured into CUDA graphs.

On a CPU device there is nothing to capture and no GPU compiler to use: the
runner falls back to eager PyTorch (exactly the ``torch`` backend), says so with
a ``RuntimeWarning`` and records why in ``fallback_reason``; ``compiled`` is False.
AMP (``precision`` float16 / bfloat16) works as in the eager runner and is
captured into the graphs, with autocast's weight-cast cache off (as
``torch.cuda.make_graphed_callables`` requires): a cached bf16 copy of a weight
is freed when autocast exits, and the graph would replay reads of freed memory;
without the cache the casts are part of the graph.
"""

from __future__ import annotations

import warnings

import torch

from .torch_backend import TorchRunner, amp_context

MODES = ("graph", "compile", "compile+graph")


class _GraphCache:
    """One captured CUDA graph per input signature (shapes and dtypes)."""

    def __init__(self, fn, ctx, warmup: int = 2):
        self.fn, self.ctx, self.warmup = fn, ctx, warmup
        self.graphs: dict = {}

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        key = tuple((a.shape, a.dtype) for a in args)
        entry = self.graphs.get(key)
        if entry is None:
            entry = self.graphs[key] = self._capture(args)
        graph, static_in, static_out = entry
        for dst, src in zip(static_in, args):
            dst.copy_(src)
        graph.replay()
        return static_out.clone()

    def _capture(self, args):
        static_in = [a.detach().clone() for a in args]
        side = torch.cuda.Stream(device=static_in[0].device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), self.ctx():
            for _ in range(self.warmup):
                self.fn(*static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), self.ctx():
            static_out = self.fn(*static_in)
        return graph, static_in, static_out


class TorchCompiledRunner:
    name = "torch-compiled"
    io = "torch"

    def __init__(self, model, device: str | torch.device = "cuda", precision: str = "float32",
                 mode: str = "graph"):
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}; choose one of {MODES}")
        self.device = torch.device(device)
        self.precision, self.mode = precision, mode
        self.fallback_reason = None
        self._eager = TorchRunner(model, self.device, precision)  # validates precision vs device
        self.model = self._eager.model
        if self.device.type != "cuda":
            self.fallback_reason = (f"torch-compiled: device {self.device} is not a CUDA device; CUDA graphs and "
                                    "torch.compile need one, so this runner runs eager PyTorch (same as --backend torch)")
            warnings.warn(self.fallback_reason, RuntimeWarning, stacklevel=2)
            self.compiled = False
            return
        self.compiled = True
        base_fn, unet_fn = self.model.base, self.model.unet
        if "compile" in mode:
            base_fn = torch.compile(base_fn, dynamic=False, mode="max-autotune-no-cudagraphs")
            unet_fn = torch.compile(unet_fn, dynamic=False, mode="max-autotune-no-cudagraphs")
        if "graph" in mode:
            self._base = _GraphCache(base_fn, self._ctx)
            self._unet = _GraphCache(unet_fn, self._ctx)
        else:
            self._base, self._unet = base_fn, unet_fn

    def _ctx(self):
        return amp_context(self.precision, cache_enabled=False)

    @torch.no_grad()
    def base(self, images: torch.Tensor) -> torch.Tensor:
        if not self.compiled:
            return self._eager.base(images)
        images = images.to(self.device, torch.float32).contiguous()
        with self._ctx():
            return self._base(images).float()

    @torch.no_grad()
    def unet(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not self.compiled:
            return self._eager.unet(x, t)
        x = x.to(self.device).contiguous()
        t = t.to(self.device, torch.float32).contiguous()
        with self._ctx():
            return self._unet(x, t).float()
