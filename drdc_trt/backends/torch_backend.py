"""Eager PyTorch runner (fp32; autocast fp16/bf16 on GPU)."""

from __future__ import annotations

import contextlib

import torch

_AMP = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}


def amp_context(precision: str, cache_enabled: bool = True):
    """CUDA autocast for ``precision`` (a no-op context for float32). ``cache_enabled=False``
    where the context is captured into a CUDA graph: autocast's cache of low-precision
    weight copies is freed when the context exits, and a graph would replay reads of it."""
    amp = _AMP[precision]
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=amp, cache_enabled=cache_enabled)


class TorchRunner:
    name = "torch"
    io = "torch"

    def __init__(self, model, device: str | torch.device = "cpu", precision: str = "float32"):
        if precision not in _AMP:
            raise ValueError(f"precision {precision!r}; choose one of {sorted(_AMP)}")
        self.device = torch.device(device)
        if _AMP[precision] is not None and self.device.type != "cuda":
            raise ValueError(f"precision {precision} needs a CUDA device")
        self.model = model.to(self.device).eval()
        self.precision = precision

    def _ctx(self):
        return amp_context(self.precision)

    @torch.no_grad()
    def base(self, images: torch.Tensor) -> torch.Tensor:
        with self._ctx():
            return self.model.base(images.to(self.device)).float()

    @torch.no_grad()
    def unet(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with self._ctx():
            return self.model.unet(x, t).float()
