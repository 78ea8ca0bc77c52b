"""Contrast normalisation of the diffusion heat (``fusion.heat_norm``).

The paper's heat ‖x − x̂0‖ is in image units: under brighter light the texture
the network cannot predict in a masked cell has more amplitude, so normal images
score higher. Dividing the heat by a contrast scale measured on the input x (known
in full at test time, so nothing of the reconstruction enters it) makes the map
invariant to x → a·x + b: the residual scales with a, and so does the divisor.

* ``image_std``: one scale per image, the robust standard deviation
  1.4826·median|x − median x| over all pixels and channels (a defect covering less
  than half the image does not move it).
* ``local_std``: the standard deviation in a (2·max(grid)+1)² window (mean over
  channels of the per-channel variance; windows cut by the edge use the pixels they
  hold), floored at half the image's robust std so flat regions do not blow up.

Torch here; the torch-free runtime has the numpy transcription in
``drdc_trt.methods.drdc.runtime_kernels`` (tests check they agree).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from drdc_trt.methods.drdc.config import CONTRAST_FLOOR as FLOOR
from drdc_trt.methods.drdc.config import LOCAL_FLOOR, MAD_TO_STD


def robust_std(x: torch.Tensor) -> torch.Tensor:
    """B×C×H×W → B: 1.4826 · median |x − median x| per image."""
    flat = x.flatten(1)
    med = flat.median(dim=1, keepdim=True).values
    return MAD_TO_STD * (flat - med).abs().median(dim=1).values


def local_std(x: torch.Tensor, window: int) -> torch.Tensor:
    """B×C×H×W → B×H×W: √(mean over channels of the window variance)."""
    box = lambda t: F.avg_pool2d(t, window, stride=1, padding=window // 2, count_include_pad=False)
    var = (box(x * x) - box(x) ** 2).mean(1)
    return var.clamp_min(0.0).sqrt()


def local_window(grid_sizes) -> int:
    return 2 * max(grid_sizes) + 1


def heat_divisor(x: torch.Tensor, mode: str, window: int) -> torch.Tensor | None:
    """What the heat sum (B×H×W) of images x is divided by; None for ``none``."""
    if mode == "none":
        return None
    rs = robust_std(x.float()).clamp_min(FLOOR).view(-1, 1, 1)
    if mode == "image_std":
        return rs.expand(x.shape[0], *x.shape[-2:])
    if mode == "local_std":
        return torch.maximum(local_std(x.float(), window), LOCAL_FLOOR * rs)
    raise ValueError(f"heat_norm={mode!r}: choose none, image_std or local_std")
