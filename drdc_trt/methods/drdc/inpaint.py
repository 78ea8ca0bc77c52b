"""Reference batched DDIM inpainting loop (docs/design.md, "DRDC's hot loop").

For B images every (grid spec j, set k) pair is one row of a single batch of
N = B·J·K rows; the network is called once per step on all of them. Between two
network calls the work is the fused ``ops.step``; ``impl`` picks the PyTorch
reference or the compiled kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from drdc_trt.methods.drdc import ops
from drdc_trt.schedule import Schedule, ddim_timesteps

# eps_fn(unet_in N×6×H×W, timesteps N float32) -> ε̂ N×3×H×W
EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class LoopNoise:
    """All randomness of one loop run, drawn up front so that every implementation
    can be fed the very same numbers."""

    fill: torch.Tensor   # N×3×H×W, fills the unknown cells of the condition c
    start: torch.Tensor  # N×3×H×W, ε of x_{t0}
    steps: torch.Tensor  # num_steps×N×3×H×W, ε' of the known-region re-noising

    @classmethod
    def draw(cls, rows: int, size: int, num_steps: int, generator: torch.Generator | None = None,
             device: torch.device | str = "cpu") -> "LoopNoise":
        shape = (rows, 3, size, size)
        fill = torch.randn(shape, generator=generator)
        start = torch.randn(shape, generator=generator)
        steps = torch.randn((num_steps, *shape), generator=generator)
        return cls(fill.to(device), start.to(device), steps.to(device))


@dataclass
class LoopResult:
    heat: torch.Tensor  # B×H×W, sum of the per-step heatmap terms
    count: int          # number of terms per pixel: steps × specs × pool factors
    xt: torch.Tensor    # N×3×H×W, the final composited reconstruction of every row


def inpaint_heat(
    x: torch.Tensor, labels: torch.Tensor, num_sets: int, eps_fn: EpsFn, schedule: Schedule,
    t0: int, num_steps: int, noise: LoopNoise, pool_factors: Sequence[int], clip_x0: bool = True,
    net_dtype: torch.dtype = torch.float32, impl: str = "torch",
) -> LoopResult:
    """Run the inpainting loop on images x (B×3×H×W in [-1, 1]) and return the heat sum."""
    b, _, h, w = x.shape
    j = labels.shape[0]
    n = b * j * num_sets
    if noise.fill.shape[0] != n or noise.steps.shape[0] != num_steps:
        raise ValueError(
            f"noise: expected {n} rows and {num_steps} steps, got {noise.fill.shape[0]} rows "
            f"and {noise.steps.shape[0]} steps"
        )
    timesteps = ddim_timesteps(t0, num_steps)
    a0, s0 = schedule.coefficients(timesteps[0])
    xt, unet_in = ops.prepare(x, labels, num_sets, noise.fill, noise.start, a0, s0, net_dtype, impl=impl)
    heat = torch.zeros(b, h, w, dtype=torch.float32, device=x.device)
    for i, t in enumerate(timesteps):
        t_next = timesteps[i + 1] if i + 1 < num_steps else -1
        t_batch = torch.full((n,), float(t), dtype=torch.float32, device=x.device)
        eps = eps_fn(unet_in, t_batch).to(unet_in.dtype).contiguous()
        a_t, s_t = schedule.coefficients(t)
        a_n, s_n = schedule.coefficients(t_next)
        xt, unet_in, heat = ops.step(x, labels, num_sets, xt, eps, noise.steps[i], unet_in, heat,
                                     a_t, s_t, a_n, s_n, pool_factors, clip_x0, impl=impl)
    return LoopResult(heat=heat, count=num_steps * j * len(pool_factors), xt=xt)
