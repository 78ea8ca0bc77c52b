"""Small synthetic defects: the second family of anomalies the label-free selection pastes in.

The Perlin patches of ``data.anomalies`` cover 5–50 % of an image; real inspection defects are
often a few pixels: pits, thin scratches, a spot out of focus. A diffusion map can find large
patches and miss those, so a selection scored on patches alone may trust it where it does not
help (a held-out line with tiny dark pitting, median area 0.17 %, lost AUPRO at every λ > 0 that
the patches chose). Per image, one of:

* ``spot`` (probability 1/2): an ellipse (axis ratio U[0.5, 1]) of exactly n pixels, n the area
  fraction a·S² with log a ~ U[log 0.0005, log 0.01] (0.05–1 % of the image); its intensity moved
  by ±c, c ~ U[0.15, 0.4) in [0, 1] units, dark or bright with equal probability (flipped when the
  move would leave [0, 1]).
* ``scratch`` (1/4): a segment of length U[0.1, 0.3)·S and width max(1, S/64) px at any angle,
  moved by ±c the same way.
* ``blur`` (1/4): a disc of area fraction log-uniform in [0.002, 0.01] replaced by the image
  blurred with a Gaussian of σ = 1.5·max(1, S/64) px, placed where that changes the image most
  among 8 random centres (blur on a flat surface changes nothing a detector could see).

Masks hold every pixel the defect changed by construction (the blur's: the whole disc). Seeded by
a torch generator: the same seed gives the same set.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

KINDS = ("spot", "scratch", "blur")
KIND_WEIGHTS = (0.5, 0.25, 0.25)
AREA_RANGE = (0.0005, 0.01)       # spots: fraction of the image
BLUR_AREA_RANGE = (0.002, 0.01)   # a smaller blurred disc is a few pixels of little change
CONTRAST_RANGE = (0.15, 0.4)      # intensity move of spots and scratches, [0, 1] units
SCRATCH_LENGTH = (0.1, 0.3)       # fraction of the side
BLUR_CANDIDATES = 8


def _u(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(1, generator=gen))


def _log_u(gen: torch.Generator, lo: float, hi: float) -> float:
    return math.exp(_u(gen, math.log(lo), math.log(hi)))


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    c = torch.arange(size, dtype=torch.float64) + 0.5  # pixel centres
    return c.view(-1, 1).expand(size, size), c.view(1, -1).expand(size, size)


def spot_mask(size: int, gen: torch.Generator, area_range: tuple[float, float] = AREA_RANGE) -> torch.Tensor:
    """size×size bool: the n pixels nearest (in the ellipse's own metric) to a random centre,
    n = round(a·size²) clamped into the area range, so the area is exact whatever the side."""
    lo, hi = math.ceil(area_range[0] * size * size), max(1, math.floor(area_range[1] * size * size))
    n = min(hi, max(lo, round(_log_u(gen, *area_range) * size * size)))
    ratio, angle = _u(gen, 0.5, 1.0), _u(gen, 0.0, math.pi)
    r = math.sqrt(n / (math.pi * ratio))  # semi-axes r and ratio·r hold about n pixels
    cy, cx = (_u(gen, r, size - r) for _ in range(2))
    yy, xx = _grid(size)
    dy, dx = yy - cy, xx - cx
    u = dx * math.cos(angle) + dy * math.sin(angle)
    v = -dx * math.sin(angle) + dy * math.cos(angle)
    dist = (u / r) ** 2 + (v / (ratio * r)) ** 2
    order = torch.argsort(dist.flatten(), stable=True)[:n]
    m = torch.zeros(size * size, dtype=torch.bool)
    m[order] = True
    return m.view(size, size)


def scratch_width(size: int) -> int:
    return max(1, round(size / 64))


def scratch_mask(size: int, gen: torch.Generator) -> torch.Tensor:
    """size×size bool: the pixels whose centres lie within half the width (at least 1/√2 px, so
    a diagonal 1-px line has no gaps) of a random segment kept inside the image."""
    length = _u(gen, *SCRATCH_LENGTH) * size
    angle = _u(gen, 0.0, math.pi)
    hx, hy = math.cos(angle) * length / 2, math.sin(angle) * length / 2
    cx, cy = _u(gen, abs(hx) + 1, size - abs(hx) - 1), _u(gen, abs(hy) + 1, size - abs(hy) - 1)
    yy, xx = _grid(size)
    px, py = xx - (cx - hx), yy - (cy - hy)
    sx, sy = 2 * hx, 2 * hy
    t = ((px * sx + py * sy) / (sx * sx + sy * sy)).clamp(0, 1)
    d = torch.hypot(px - t * sx, py - t * sy)
    return d <= max(scratch_width(size) / 2, 1 / math.sqrt(2))


def shift(x01: torch.Tensor, m: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """x01 (3×S×S in [0, 1]) with the pixels of m moved by ±c, c ~ U[CONTRAST_RANGE): dark or
    bright at random, flipped when the move would leave [0, 1] and the other way would not."""
    c = _u(gen, *CONTRAST_RANGE)
    sign = -1.0 if float(torch.rand(1, generator=gen)) < 0.5 else 1.0
    inside = x01[:, m]
    for s in (sign, -sign):
        moved = inside + s * c
        if moved.min() >= 0 and moved.max() <= 1:
            break
    else:  # neither way fits every pixel: the one that clips least
        def moved_by(s: float) -> float:
            return float((inside + s * c).clamp(0, 1).sub(inside).abs().mean())
        s = sign if moved_by(sign) >= moved_by(-sign) else -sign
    out = x01.clone()
    out[:, m] = (inside + s * c).clamp(0, 1)
    return out


def gaussian_blur(x01: torch.Tensor, sigma: float) -> torch.Tensor:
    """3×S×S blurred with a separable Gaussian (radius 3σ, reflect padding)."""
    r = max(1, math.ceil(3 * sigma))
    k = torch.exp(-(torch.arange(-r, r + 1, dtype=torch.float32) ** 2) / (2 * sigma * sigma))
    k = (k / k.sum()).to(x01.dtype)
    x = F.pad(x01[:, None], (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    return F.conv2d(x, k.view(1, 1, -1, 1))[:, 0]


def blur_sigma(size: int) -> float:
    return 1.5 * max(1.0, size / 64)


def blur_defect(x01: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(x01 with a disc replaced by its blurred self, the disc mask): of BLUR_CANDIDATES random
    centres, the one where the blur changes the image most."""
    size = x01.shape[-1]
    blurred = gaussian_blur(x01, blur_sigma(size))
    change = (blurred - x01).abs().mean(0)
    r = math.sqrt(_log_u(gen, *BLUR_AREA_RANGE) * size * size / math.pi)
    yy, xx = _grid(size)
    best, best_gain = None, -1.0
    for _ in range(BLUR_CANDIDATES):
        cy, cx = _u(gen, r, size - r), _u(gen, r, size - r)
        m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        gain = float(change[m].mean()) if m.any() else 0.0
        if gain > best_gain:
            best, best_gain = m, gain
    out = x01.clone()
    out[:, best] = blurred[:, best]
    return out, best


def one_small_defect(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, str]:
    """One image (3×S×S in [-1, 1]) with one small defect: (image, mask S×S in {0, 1}, kind)."""
    x01 = (x.float() + 1) / 2
    u, kind = float(torch.rand(1, generator=gen)), KINDS[-1]
    acc = 0.0
    for k, w in zip(KINDS, KIND_WEIGHTS):
        acc += w
        if u < acc:
            kind = k
            break
    size = x.shape[-1]
    if kind == "blur":
        out, m = blur_defect(x01, gen)
    else:
        m = spot_mask(size, gen) if kind == "spot" else scratch_mask(size, gen)
        out = shift(x01, m, gen)
    return out * 2 - 1, m.float(), kind


def paste_small_defects(images: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """images B×3×S×S in [-1, 1] → (images with one small defect each, masks B×1×S×S in {0, 1}, kinds)."""
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise ValueError(f"images: expected B×3×S×S, got {tuple(images.shape)}")
    gen = torch.Generator().manual_seed(seed)
    size = images.shape[-1]
    out, masks, kinds = torch.empty_like(images), torch.empty(images.shape[0], 1, size, size), []
    for i, x in enumerate(images.float().cpu()):
        y, m, kind = one_small_defect(x, gen)
        out[i], masks[i, 0] = y.to(out.dtype), m
        kinds.append(kind)
    return out.to(images.device), masks, kinds
