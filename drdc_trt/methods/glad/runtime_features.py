"""GLAD's feature-space arithmetic in numpy (no torch): numpy transcriptions of
``drdc_trt.methods.glad.features`` (nearest-patch cosine distance, Gaussian blur, the multi-stage
anomaly map, the top-k score) and of ``adaptive.saff_weight``, in float32. Bilinear up-sampling is
the runtime's one rule (``kernels.upsample_base``: align_corners=False, as F.interpolate)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from drdc_trt.float_bounds import cosine_distance_floor

from drdc_trt.runtime.common import upsample_base


def _normalize(f: np.ndarray) -> np.ndarray:
    """B×C×N → each column divided by max(its L2 norm, 1e-12) (F.normalize, dim=1)."""
    norm = np.sqrt(np.square(f).sum(axis=1, keepdims=True, dtype=np.float32))
    return f / np.maximum(norm, np.float32(1e-12))


def nearest_patch_distance(query: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """B×C×h×w, B×C×h'×w' → B×h×w: for each patch of ``query``, 1 − its largest cosine similarity
    with any patch of the same row of ``ref``; 0 at or below the rounding bound (2C + 4)·2⁻²⁴."""
    if query.ndim != 4 or ref.ndim != 4 or query.shape[:2] != ref.shape[:2]:
        raise ValueError(f"nearest_patch_distance: query {query.shape} and ref {ref.shape} must be B×C×h×w with the "
                         "same B and C")
    b, c, h, w = query.shape
    q = _normalize(query.reshape(b, c, -1).astype(np.float32, copy=False))
    r = _normalize(ref.reshape(b, c, -1).astype(np.float32, copy=False))
    cos = np.matmul(q.transpose(0, 2, 1), r)  # B×N×M
    d = (np.float32(1) - cos.max(axis=2)).astype(np.float32, copy=False)
    d = np.where(d > np.float32(cosine_distance_floor(c)), d, np.float32(0))  # below float32 resolution: 0
    return d.reshape(b, h, w).astype(np.float32, copy=False)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """1-D normalised Gaussian, radius ⌈4σ⌉, formed in float64 and rounded to float32."""
    radius = max(1, math.ceil(4 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def gaussian_blur(maps: np.ndarray, sigma: float) -> np.ndarray:
    """B×H×W blurred separably with σ: rows first, then columns; reflect padding (the edge pixel
    not repeated), replicate padding when the kernel's radius reaches the smaller side (reflect
    needs radius < side); σ = 0 returns the maps."""
    if sigma <= 0:
        return maps
    k = gaussian_kernel(sigma)
    r = (k.size - 1) // 2
    _, h, w = maps.shape
    mode = "edge" if r >= min(h, w) else "reflect"
    p = np.pad(maps.astype(np.float32, copy=False), ((0, 0), (r, r), (r, r)), mode=mode)
    rows = np.zeros((p.shape[0], p.shape[1], w), dtype=np.float32)
    for i in range(k.size):
        rows += k[i] * p[:, :, i:i + w]
    out = np.zeros((p.shape[0], h, w), dtype=np.float32)
    for i in range(k.size):
        out += k[i] * rows[:, i:i + h]
    return out


def bilinear(maps: np.ndarray, size: int) -> np.ndarray:
    """B×h×w → B×size×size, bilinear, align_corners=False."""
    return upsample_base(np.ascontiguousarray(maps, dtype=np.float32), size)


def anomaly_map(feats_x: Sequence[np.ndarray], feats_rec: Sequence[np.ndarray], size: int, sigma: float) -> np.ndarray:
    """Σ over the stages of the input's nearest-patch distance to the reconstruction, each
    up-sampled to size×size, then blurred: B×size×size."""
    total = None
    for fx, fr in zip(feats_x, feats_rec, strict=True):
        d = bilinear(nearest_patch_distance(fx, fr), size)
        total = d if total is None else total + d
    return gaussian_blur(total, sigma)


def top_k_score(maps: np.ndarray, k: int) -> np.ndarray:
    """Mean of the k largest values of each row (B×… → B float32); k capped at the row's size."""
    flat = maps.reshape(maps.shape[0], -1)
    k = min(int(k), flat.shape[1])
    top = np.partition(flat, flat.shape[1] - k, axis=1)[:, -k:]
    return top.mean(axis=1, dtype=np.float32)


def saff_weight(A: np.ndarray, size: int, kind: str = "sigmoid") -> np.ndarray:
    """The spatial-adaptive fusion weight (``adaptive.saff_weight``), up-sampled bilinearly:
    B×1×size×size float32. "sigmoid": σ(A) per patch; "minmax": A min–max normalised per row to
    [0, 1] (a constant A: 0, keep the input)."""
    A = A.astype(np.float32, copy=False)
    if kind == "sigmoid":
        with np.errstate(over="ignore"):  # exp(−A) overflows to inf for A < −88: σ = 0, as torch
            w = (np.float32(1) / (np.float32(1) + np.exp(-A))).astype(np.float32)
    elif kind == "minmax":
        flat = A.reshape(A.shape[0], -1)
        lo = flat.min(axis=1)[:, None, None]
        hi = flat.max(axis=1)[:, None, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.where(hi > lo, (A - lo) / np.maximum(hi - lo, np.float32(1e-12)), np.float32(0)).astype(np.float32)
    else:
        raise ValueError(f"saff weight {kind!r}: choose 'sigmoid' or 'minmax'")
    return bilinear(w, size)[:, None]
