"""Array ops the torch-free runtimes of several methods share (bilinear up-sampling, the one rule
of every runtime: align_corners=False, as F.interpolate)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _linear_indices(in_size: int, out_size: int):
    scale = np.float32(in_size / out_size)
    src = scale * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    src = np.maximum(src, np.float32(0.0))
    i0 = np.minimum(src.astype(np.int64), in_size - 1)
    i1 = np.where(i0 < in_size - 1, i0 + 1, i0)
    l1 = np.clip(src - i0.astype(np.float32), 0.0, 1.0).astype(np.float32)
    return i0, i1, np.float32(1.0) - l1, l1


def upsample_base(base: np.ndarray, size: int) -> np.ndarray:
    """B×h×w → B×S×S, bilinear, align_corners=False (PyTorch's index and weight rule)."""
    _, h, w = base.shape
    y0, y1, wy0, wy1 = _linear_indices(h, size)
    x0, x1, wx0, wx1 = _linear_indices(w, size)
    r0, r1 = base[:, y0], base[:, y1]
    top = wx0 * r0[:, :, x0] + wx1 * r0[:, :, x1]
    bottom = wx0 * r1[:, :, x0] + wx1 * r1[:, :, x1]
    return (wy0[:, None] * top + wy1[:, None] * bottom).astype(np.float32)
