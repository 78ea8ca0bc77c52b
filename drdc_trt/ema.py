"""Exponential moving average of a module's weights (the ADM family's inference weights).

shadow ← r·shadow + (1 − r)·θ after every optimizer step i, with the warm-up rate
r_i = min(decay, (1 + i)/(10 + i)): early, fast-moving weights are forgotten quickly,
so a short run averages its last ~100 steps and a long one approaches ``decay``.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class EMA:
    def __init__(self, module: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay {decay} must lie in (0, 1)")
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in module.state_dict().items()}

    def rate(self, step: int) -> float:
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        r = self.rate(step)
        for k, v in module.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].mul_(r).add_(v.detach().float(), alpha=1.0 - r)
            else:
                self.shadow[k].copy_(v)

    def load(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        if set(tensors) != set(self.shadow):
            raise ValueError(f"{where}: EMA tensors do not match the U-Net "
                             f"(missing {sorted(set(self.shadow) - set(tensors))[:3]}, "
                             f"unexpected {sorted(set(tensors) - set(self.shadow))[:3]})")
        for k, v in tensors.items():
            self.shadow[k].copy_(v)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        sd = module.state_dict()
        module.load_state_dict({k: self.shadow[k].to(sd[k].dtype) for k in sd})
