"""The input contract every method's detector checks: B×3×S×S floats in [-1, 1]."""

from __future__ import annotations

import torch

# Float rounding slack of the [-1, 1] range check (the bundle's torch-free check uses the same,
# export/bundle.py: RANGE_SLACK; a separate constant so the training path needs no drdc_trt.export).
RANGE_SLACK = 1e-3



def check_images(images, size: int, device: torch.device) -> torch.Tensor:
    """Images are B×3×S×S floats in [-1, 1] (``data.load_image``; 8-bit pixels v: v / 127.5 − 1);
    returns them as contiguous float32 on ``device``. Every method's detector checks with this."""
    s = size
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images: expected a torch.Tensor B×3×{s}×{s}, got {type(images).__name__}")
    if images.dim() != 4 or tuple(images.shape[1:]) != (3, s, s) or images.shape[0] < 1:
        raise ValueError(f"images: expected B×3×{s}×{s} (B ≥ 1), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"images: dtype {images.dtype}; expected floats in [-1, 1] (8-bit pixels v: v / 127.5 - 1)")
    x = images.to(device, torch.float32).contiguous()
    check_image_range(x)
    return x


def check_image_range(x: torch.Tensor) -> None:
    """ValueError unless every value of x is finite and within [-1, 1] (± RANGE_SLACK)."""
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = (~finite).nonzero()[0].tolist()
        raise ValueError(f"images: {int((~finite).sum())} non-finite value(s) (NaN or Inf), the first at index "
                         f"{tuple(bad)}")
    lo, hi = (float(v) for v in torch.aminmax(x))
    if lo < -1 - RANGE_SLACK or hi > 1 + RANGE_SLACK:
        hint = " (0..255 pixels? use v / 127.5 - 1)" if hi > 2 else ""
        raise ValueError(f"images: values span [{lo:.4g}, {hi:.4g}], expected [-1, 1]{hint}")
