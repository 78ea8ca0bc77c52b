"""Feature distances of GLAD: the nearest-patch cosine distance that drives both the adaptive
trigger (A, between x0_in and x0_gen) and the anomaly map (between the input and its
reconstruction), the map's Gaussian blur and the top-k image score."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from drdc_trt.float_bounds import cosine_distance_floor


def nearest_patch_distance(query: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """B×C×h×w, B×C×h'×w' → B×h×w: for each patch of ``query``, 1 − the largest cosine similarity
    with any patch of the same row of ``ref`` (GLAD's min over patches of 1 − cos). Distances at or
    below ``float_bounds.cosine_distance_floor(C)`` are 0: a patch identical to its neighbour within
    rounding has distance 0 whatever the CPU or batch (at GLAD's first step x0_in = x0_gen, and the
    rounding noise of their features would otherwise decide whether a row triggers)."""
    q = F.normalize(query.flatten(2), dim=1, eps=1e-12)   # B×C×N
    r = F.normalize(ref.flatten(2), dim=1, eps=1e-12)     # B×C×M
    cos = torch.bmm(q.transpose(1, 2), r)                 # B×N×M
    d = 1 - cos.amax(2)
    d = torch.where(d > cosine_distance_floor(query.shape[1]), d, torch.zeros_like(d))
    return d.view(query.shape[0], *query.shape[-2:])


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """1-D normalised Gaussian, radius ⌈4σ⌉ (scipy.ndimage's truncate = 4)."""
    radius = max(1, math.ceil(4 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).float()


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """B×H×W blurred separably with σ (reflect padding); σ = 0 returns the maps."""
    if sigma <= 0:
        return maps
    k = gaussian_kernel(sigma).to(maps.device)
    r = (k.numel() - 1) // 2
    x = maps.unsqueeze(1)
    h, w = x.shape[-2:]
    # reflect padding needs r < side; clamp the kernel's reach at very small sides
    if r >= min(h, w):
        x = F.pad(x, (r, r, r, r), mode="replicate")
    else:
        x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    x = F.conv2d(x, k.view(1, 1, -1, 1))
    return x[:, 0]


def anomaly_map(feats_x: list[torch.Tensor], feats_rec: list[torch.Tensor], size: int, sigma: float) -> torch.Tensor:
    """Σ over the given stages of the input's nearest-patch distance to the reconstruction,
    each up-sampled (bilinear) to size×size, then blurred: B×size×size."""
    total = None
    for fx, fr in zip(feats_x, feats_rec):
        d = nearest_patch_distance(fx, fr).unsqueeze(1)
        d = F.interpolate(d, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
        total = d if total is None else total + d
    return gaussian_blur(total, sigma)


def top_k_score(maps: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of the k largest values of each row (B×… → B); k is capped at the row's size."""
    flat = maps.flatten(1)
    return flat.topk(min(k, flat.shape[1]), dim=1).values.mean(1)
