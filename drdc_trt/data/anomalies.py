"""Synthetic anomalies pasted into normal images (DRAEM-style), for choosing inference
settings without test labels (and for methods that train on them).

Per image: a Perlin-noise mask (per-axis scale 2^U{0..5}, at least 8 px a cell, rotated by a random multiple
of 90° — DRAEM rotates by any angle — thresholded at 0.5, drawn again while empty), a
source texture, and the blend x·(1 − M) + (1 − β)·src·M + β·x·M with β ~ U[0.2, 0.8),
in [0, 1] intensity. The public texture set DRAEM draws sources from is not available
offline, so a source is, with equal probability, a procedural texture (a few octaves
of coloured Perlin noise) or the image itself shuffled in strips (W/8 columns, even and
odd strips shuffled separately, then the same for rows), which keeps the image's own
colours but breaks its structure. Seeded by a torch generator: the same seed gives the
same set.
"""

from __future__ import annotations

import math

import torch

THRESHOLD = 0.5
MAX_SCALE_LOG2 = 5
MIN_CELL = 8  # px


def _fade(t: torch.Tensor) -> torch.Tensor:
    return ((6 * t - 15) * t + 10) * t ** 3


def perlin(size: int, res: tuple[int, int], gen: torch.Generator) -> torch.Tensor:
    """size×size gradient noise with ``res`` lattice cells per axis (each must divide size)."""
    ry, rx = res
    if size % ry or size % rx:
        raise ValueError(f"perlin: lattice {res} does not divide size {size}")
    angles = 2 * math.pi * torch.rand(ry + 1, rx + 1, generator=gen)
    grad = torch.stack([torch.cos(angles), torch.sin(angles)], -1)
    y = torch.arange(size, dtype=torch.float32) * ry / size
    x = torch.arange(size, dtype=torch.float32) * rx / size
    yi, xi = y.long(), x.long()
    fy, fx = (y - yi).view(-1, 1), (x - xi).view(1, -1)

    def corner(dy: int, dx: int) -> torch.Tensor:
        g = grad[(yi + dy).view(-1, 1), (xi + dx).view(1, -1)]
        return g[..., 0] * (fy - dy) + g[..., 1] * (fx - dx)

    ty, tx = _fade(fy), _fade(fx)
    top = torch.lerp(corner(0, 0), corner(0, 1), tx)
    bottom = torch.lerp(corner(1, 0), corner(1, 1), tx)
    return math.sqrt(2) * torch.lerp(top, bottom, ty)


def _lattice(size: int, gen: torch.Generator) -> tuple[int, int]:
    """Per-axis lattice 2^U{0..5}, lowered until it divides the size and leaves cells of at
    least 8 px (DRAEM's finest, 32 cells on 256 px; smaller images would get 2-px stripes)."""
    out = []
    for _ in range(2):
        r = 2 ** int(torch.randint(0, MAX_SCALE_LOG2 + 1, (1,), generator=gen))
        while r > 1 and (size % r or size // r < MIN_CELL):
            r //= 2
        out.append(r)
    return out[0], out[1]


def perlin_mask(size: int, gen: torch.Generator, tries: int = 50, threshold: float = THRESHOLD) -> torch.Tensor:
    """size×size {0, 1} float mask (noise > ``threshold``; GLAD: 0.3), never empty."""
    for _ in range(tries):
        noise = torch.rot90(perlin(size, _lattice(size, gen), gen), int(torch.randint(0, 4, (1,), generator=gen)))
        m = (noise > threshold).float()
        if m.any():
            return m
    # a smooth field that never passes the threshold in `tries` draws: a centred square
    m = torch.zeros(size, size)
    m[size // 4:3 * size // 4, size // 4:3 * size // 4] = 1
    return m


def procedural_texture(size: int, gen: torch.Generator) -> torch.Tensor:
    """3×size×size in [0, 1]: three octaves of Perlin noise per channel."""
    out = torch.zeros(3, size, size)
    for c in range(3):
        for octave in range(3):
            r = 2 ** (octave + int(torch.randint(0, 3, (1,), generator=gen)))
            while size % r:
                r //= 2
            out[c] += perlin(size, (r, r), gen) / 2 ** octave
    lo, hi = out.amin((1, 2), keepdim=True), out.amax((1, 2), keepdim=True)
    return (out - lo) / (hi - lo).clamp_min(1e-6)


def _shuffle_strips(img: torch.Tensor, dim: int, gen: torch.Generator) -> torch.Tensor:
    size = img.shape[dim]
    n = max(2, size // max(1, size // 8))  # W/8-px strips → 8 strips
    bounds = [round(i * size / n) for i in range(n + 1)]
    strips = [img.narrow(dim, bounds[i], bounds[i + 1] - bounds[i]) for i in range(n)]
    order = list(range(n))
    for parity in (0, 1):  # even and odd strips shuffled among themselves
        idx = order[parity::2]
        perm = torch.randperm(len(idx), generator=gen).tolist()
        for pos, p in zip(idx, perm):
            order[pos] = idx[p]
    return torch.cat([strips[i] for i in order], dim)


def self_shuffled(img01: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The image (3×S×S in [0, 1]) cut into strips and shuffled: columns, then rows."""
    return _shuffle_strips(_shuffle_strips(img01, 2, gen), 1, gen)


def grid_shuffled(img01: torch.Tensor, gen: torch.Generator, cells: int = 8) -> torch.Tensor:
    """The image (3×S×S) cut into a cells×cells grid and the cells permuted (GLAD's self-source;
    cell edges at round(i·S/cells), so any S works; cells of unequal sizes only swap with their own size)."""
    size = img01.shape[-1]
    b = [round(i * size / cells) for i in range(cells + 1)]
    boxes = [(b[i], b[i + 1], b[j], b[j + 1]) for i in range(cells) for j in range(cells)]
    out = img01.clone()
    by_shape: dict[tuple[int, int], list] = {}
    for box in boxes:
        by_shape.setdefault((box[1] - box[0], box[3] - box[2]), []).append(box)
    for group in by_shape.values():
        perm = torch.randperm(len(group), generator=gen).tolist()
        for dst, p in zip(group, perm):
            y0, y1, x0, x1 = group[p]
            out[:, dst[0]:dst[1], dst[2]:dst[3]] = img01[:, y0:y1, x0:x1]
    return out


SOURCES = ("procedural", "shuffled")
# Sources a caller may name besides the default set: "grid" (grid_shuffled, GLAD's).
ALL_SOURCES = SOURCES + ("grid",)


def paste_anomalies(images: torch.Tensor, seed: int = 0, sources: tuple[str, ...] = SOURCES
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """images B×3×S×S in [-1, 1] → (images with one anomaly each, masks B×1×S×S in {0, 1}).
    ``sources``: which source textures to draw from (equally likely)."""
    if not sources or set(sources) - set(SOURCES):
        raise ValueError(f"sources {sources!r}: choose from {SOURCES}")
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise ValueError(f"images: expected B×3×S×S, got {tuple(images.shape)}")
    gen = torch.Generator().manual_seed(seed)
    size = images.shape[-1]
    out, masks = torch.empty_like(images), torch.empty(images.shape[0], 1, size, size)
    for i, x in enumerate(images.float().cpu()):
        out[i], masks[i, 0], _ = _one_anomaly(x, gen, sources, (0.2, 0.8))
    return out.to(images.device), masks


def blend(x01: torch.Tensor, src: torch.Tensor, m: torch.Tensor, beta: float) -> torch.Tensor:
    """x·(1 − M) + (1 − β)·src·M + β·x·M (DRAEM's blend, [0, 1] intensities)."""
    return x01 * (1 - m) + (1 - beta) * src * m + beta * x01 * m


def _one_anomaly(x: torch.Tensor, gen: torch.Generator, sources: tuple[str, ...],
                 beta_range: tuple[float, float], threshold: float = THRESHOLD
                 ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """One image (3×S×S in [-1, 1]) with one anomaly: (image, mask S×S, β)."""
    x01 = (x + 1) / 2
    m = perlin_mask(x.shape[-1], gen, threshold=threshold)
    pick = sources[int(torch.randint(len(sources), (1,), generator=gen))] if len(sources) > 1 else sources[0]
    src = (procedural_texture(x.shape[-1], gen) if pick == "procedural" else
           grid_shuffled(x01, gen) if pick == "grid" else self_shuffled(x01, gen))
    beta = beta_range[0] + (beta_range[1] - beta_range[0]) * float(torch.rand(1, generator=gen))
    return blend(x01, src, m, beta) * 2 - 1, m, beta


def anomaly_batch(images: torch.Tensor, gen: torch.Generator, prob: float = 0.5,
                  beta_range: tuple[float, float] = (0.2, 0.8), sources: tuple[str, ...] = SOURCES,
                  threshold: float = THRESHOLD) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training anomalies (DRAEM / DiffusionAD): each image of B×3×S×S in [-1, 1] gets one with
    probability ``prob`` and stays clean otherwise. Returns (images, masks B×1×S×S in {0, 1}, zero
    for clean images, β per image: U[beta_range), 1 for a clean image, which the blend leaves as it is)."""
    if not sources or set(sources) - set(ALL_SOURCES):
        raise ValueError(f"sources {sources!r}: choose from {ALL_SOURCES}")
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise ValueError(f"images: expected B×3×S×S, got {tuple(images.shape)}")
    size = images.shape[-1]
    out, masks = images.float().cpu().clone(), torch.zeros(images.shape[0], 1, size, size)
    betas = torch.ones(images.shape[0])
    for i in range(images.shape[0]):
        if float(torch.rand(1, generator=gen)) < prob:
            out[i], masks[i, 0], betas[i] = _one_anomaly(out[i], gen, sources, beta_range, threshold)
    return out.to(images.device), masks.to(images.device), betas
