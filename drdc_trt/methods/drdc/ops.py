"""DRDC's fused ops of the DDIM inpainting loop: one entry per op.

Each op has a ``reference_*`` function in plain PyTorch (the definition) and a dispatching entry
(``prepare``, ``step``, ``fuse``) that runs either that reference (``impl="torch"``) or the compiled
kernel of ``drdc_trt._C`` (``impl="csrc"``) after checking dtype, device, contiguity and shape.

Layout (shared by every implementation):

* ``x``       B×3×H×W float32, the input image scaled to [-1, 1].
* ``labels``  J×H×W int32: for grid spec j, the disjoint set (0..K-1) that the
  cell of each pixel belongs to. Row (j, k) treats set k as unknown.
* rows        N = B·J·K, row n = (b·J + j)·K + k.
* ``xt``      N×3×H×W float32, the DDIM state x_t.
* ``unet_in`` N×6×H×W network dtype (float32 or float16): concat(x_t, c).
* ``eps``     N×3×H×W network dtype, the U-Net output ε̂.
* ``heat``    B×H×W float32, running sum of the per-step heatmap terms.

Known mask M (1 = known) of row (j, k) at pixel p: ``labels[j, p] != k``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from drdc_trt.ops import NET_DTYPES, check_tensor, compiled, cuda_stream, dtype_name, image_shape, require_impl, mean_filter, upsample_base, image_score


# --------------------------------------------------------------------------- masks
def known_masks(labels: torch.Tensor, num_sets: int) -> torch.Tensor:
    """(J·K)×1×H×W float mask, row j·K + k is 1 where set k is known (labels != k)."""
    k = torch.arange(num_sets, device=labels.device).view(1, num_sets, 1, 1)
    known = labels.unsqueeze(1) != k  # J×K×H×W
    return known.reshape(-1, 1, *labels.shape[-2:]).float()


def _row_masks(labels: torch.Tensor, num_sets: int, batch: int) -> torch.Tensor:
    return known_masks(labels, num_sets).repeat(batch, 1, 1, 1)  # N×1×H×W, b-major


def _rows_of(x: torch.Tensor, rows_per_image: int) -> torch.Tensor:
    return x.repeat_interleave(rows_per_image, dim=0)


# --------------------------------------------------------------------------- references
def reference_prepare(
    x: torch.Tensor, labels: torch.Tensor, num_sets: int,
    fill_noise: torch.Tensor, eps0: torch.Tensor,
    sqrt_ab: float, sqrt_1mab: float, net_dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Condition c = M·x + (1−M)·n and start x_{t0} = √ᾱ·c + √(1−ᾱ)·ε (docs/design.md).

    Returns (xt float32 N×3×H×W, unet_in net_dtype N×6×H×W).
    """
    b, j = x.shape[0], labels.shape[0]
    m = _row_masks(labels, num_sets, b)
    xr = _rows_of(x, j * num_sets)
    c = m * xr + (1.0 - m) * fill_noise
    xt = sqrt_ab * c + sqrt_1mab * eps0
    return xt, torch.cat([xt, c], dim=1).to(net_dtype)


def heat_term(d: torch.Tensor, pool_factors: Sequence[int]) -> torch.Tensor:
    """Σ_f up_f(‖avgpool_f(d)‖₂ over channels): N×3×H×W → N×H×W (nearest up-sampling)."""
    h = torch.zeros(d.shape[0], *d.shape[-2:], dtype=d.dtype, device=d.device)
    for f in pool_factors:
        pooled = F.avg_pool2d(d, f) if f > 1 else d
        norm = pooled.pow(2).sum(1).sqrt()
        if f > 1:
            norm = norm.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)
        h = h + norm
    return h


def reference_step(
    x: torch.Tensor, labels: torch.Tensor, num_sets: int,
    xt: torch.Tensor, eps: torch.Tensor, noise: torch.Tensor, unet_in: torch.Tensor,
    heat: torch.Tensor,
    sqrt_ab: float, sqrt_1mab: float, sqrt_ab_next: float, sqrt_1mab_next: float,
    pool_factors: Sequence[int], clip_x0: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One DDIM (η = 0) inpainting step t → t' with known-region re-noising.

    x̂0 = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t                         (clipped to [-1, 1])
    x_unknown = √ᾱ_t'·x̂0 + √(1−ᾱ_t')·ε̂                   (DDIM update, η = 0)
    x_known   = √ᾱ_t'·x  + √(1−ᾱ_t')·ε'                   (forward process, Eq. 11)
    x_t'      = M·x_known + (1−M)·x_unknown                (Eq. 13)
    heat     += Σ_{j,k} (1−M)·Σ_f up_f ‖down_f(x − x̂0)‖₂  (Eq. 14, unknown cells only)

    Returns (xt_next float32, unet_in with channels 0..2 = xt_next, heat).
    """
    b, j = x.shape[0], labels.shape[0]
    rows = j * num_sets
    m = _row_masks(labels, num_sets, b)
    xr = _rows_of(x, rows)
    e = eps.float()
    x0 = (xt - sqrt_1mab * e) / sqrt_ab
    if clip_x0:
        x0 = x0.clamp(-1.0, 1.0)
    x_unknown = sqrt_ab_next * x0 + sqrt_1mab_next * e
    x_known = sqrt_ab_next * xr + sqrt_1mab_next * noise
    # select, not M·a + (1−M)·b: a non-finite ε̂ in one region must not leak into the other
    # (0·Inf = NaN); the same values as the blend for finite inputs, as the C++ kernel does
    known = m > 0.5
    xt_next = torch.where(known, x_known, x_unknown)
    h = torch.where(known[:, 0], 0.0, heat_term(xr - x0, pool_factors))
    heat = heat + h.view(b, rows, *h.shape[-2:]).sum(1)
    unet_in = torch.cat([xt_next.to(unet_in.dtype), unet_in[:, 3:]], dim=1)
    return xt_next, unet_in, heat


def reference_fuse(
    heat: torch.Tensor, count: int, base: torch.Tensor,
    mean_filter_size: int, stats: Sequence[float], lam: float, score_window: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Spatio-temporal fusion (docs/design.md, "DRDC's hot loop").

    ``stats`` = (μ_diff, σ_diff, μ_base, σ_base), measured on normal images.
    Returns (final B×H×W, diffusion map B×H×W, up-sampled base map B×H×W, score B).
    """
    mu_d, sd_d, mu_b, sd_b = (float(s) for s in stats)
    hd = mean_filter(heat / count, mean_filter_size)
    hb = upsample_base(base, heat.shape[-1])
    final = lam * (hd - mu_d) / sd_d + (1.0 - lam) * (hb - mu_b) / sd_b
    return final, hd, hb, image_score(final, score_window)


def prepare(x, labels, num_sets, fill_noise, eps0, sqrt_ab, sqrt_1mab,
            net_dtype=torch.float32, impl: str = "torch"):
    """Dispatching ``prepare``; see :func:`reference_prepare`."""
    if impl == "torch":
        return reference_prepare(x, labels, num_sets, fill_noise, eps0, sqrt_ab, sqrt_1mab, net_dtype)
    dev, b, h, w, j, n = _loop_operands(impl, x, labels, num_sets)
    check_tensor("fill_noise", fill_noise, (n, 3, h, w), (torch.float32,), dev)
    check_tensor("eps0", eps0, (n, 3, h, w), (torch.float32,), dev)
    if net_dtype not in NET_DTYPES:
        raise TypeError(f"net_dtype {net_dtype} not in {NET_DTYPES}")
    xt = torch.empty(n, 3, h, w, dtype=torch.float32, device=dev)
    unet_in = torch.empty(n, 6, h, w, dtype=net_dtype, device=dev)
    compiled().prepare(
        device=dev.type, stream=cuda_stream(dev), x=x.data_ptr(), labels=labels.data_ptr(),
        fill_noise=fill_noise.data_ptr(), eps0=eps0.data_ptr(), xt=xt.data_ptr(),
        unet_in=unet_in.data_ptr(), B=b, J=j, K=num_sets, H=h, W=w,
        sqrt_ab=float(sqrt_ab), sqrt_1mab=float(sqrt_1mab), net_dtype=dtype_name(net_dtype),
    )
    return xt, unet_in


def step(x, labels, num_sets, xt, eps, noise, unet_in, heat,
         sqrt_ab, sqrt_1mab, sqrt_ab_next, sqrt_1mab_next, pool_factors, clip_x0=True,
         impl: str = "torch"):
    """Dispatching ``step``; see :func:`reference_step`. The csrc path updates
    ``unet_in`` and ``heat`` in place and returns them with a new ``xt``."""
    if impl == "torch":
        return reference_step(x, labels, num_sets, xt, eps, noise, unet_in, heat,
                              sqrt_ab, sqrt_1mab, sqrt_ab_next, sqrt_1mab_next, pool_factors, clip_x0)
    dev, b, h, w, j, n = _loop_operands(impl, x, labels, num_sets)
    check_tensor("xt", xt, (n, 3, h, w), (torch.float32,), dev)
    check_tensor("unet_in", unet_in, (n, 6, h, w), NET_DTYPES, dev)
    check_tensor("eps", eps, (n, 3, h, w), (unet_in.dtype,), dev)
    check_tensor("noise", noise, (n, 3, h, w), (torch.float32,), dev)
    check_tensor("heat", heat, (b, h, w), (torch.float32,), dev)
    _check_pool_factors(pool_factors, h, w)
    xt_next = torch.empty_like(xt)
    compiled().step(
        device=dev.type, stream=cuda_stream(dev), x=x.data_ptr(), labels=labels.data_ptr(),
        xt_in=xt.data_ptr(), eps=eps.data_ptr(), noise=noise.data_ptr(), xt_out=xt_next.data_ptr(),
        unet_in=unet_in.data_ptr(), heat=heat.data_ptr(), B=b, J=j, K=num_sets, H=h, W=w,
        sqrt_ab=float(sqrt_ab), sqrt_1mab=float(sqrt_1mab), sqrt_ab_next=float(sqrt_ab_next),
        sqrt_1mab_next=float(sqrt_1mab_next), pool_factors=[int(f) for f in pool_factors],
        clip_x0=bool(clip_x0), net_dtype=dtype_name(unet_in.dtype),
    )
    return xt_next, unet_in, heat


def fuse(heat, count, base, mean_filter_size, stats, lam, score_window, impl: str = "torch"):
    """Dispatching ``fuse``; see :func:`reference_fuse`."""
    if impl == "torch":
        return reference_fuse(heat, count, base, mean_filter_size, stats, lam, score_window)
    require_impl(impl)
    dev = heat.device
    if heat.dim() != 3:
        raise ValueError(f"heat: expected B×H×W, got shape {tuple(heat.shape)}")
    b, h, w = heat.shape
    if base.dim() != 3:
        raise ValueError(f"base: expected B×h×w, got shape {tuple(base.shape)}")
    check_tensor("heat", heat, (b, h, w), (torch.float32,), dev)
    check_tensor("base", base, (b, *base.shape[1:]), (torch.float32,), dev)
    if count <= 0:
        raise ValueError(f"count must be positive, got {count}")
    if mean_filter_size < 1 or mean_filter_size % 2 == 0:
        raise ValueError(f"mean_filter_size must be a positive odd number, got {mean_filter_size}")
    if not 1 <= score_window <= min(h, w):
        raise ValueError(f"score_window {score_window} must lie in [1, {min(h, w)}]")
    mu_d, sd_d, mu_b, sd_b = (float(s) for s in stats)
    final = torch.empty(b, h, w, dtype=torch.float32, device=dev)
    diff_map = torch.empty_like(final)
    base_up = torch.empty_like(final)
    score = torch.empty(b, dtype=torch.float32, device=dev)
    compiled().fuse(
        device=dev.type, stream=cuda_stream(dev), heat=heat.data_ptr(), base=base.data_ptr(),
        final=final.data_ptr(), diff_map=diff_map.data_ptr(), base_up=base_up.data_ptr(),
        score=score.data_ptr(), B=b, H=h, W=w, h=base.shape[1], w=base.shape[2],
        inv_count=1.0 / count, mean_filter=int(mean_filter_size), mu_d=mu_d, sd_d=sd_d,
        mu_b=mu_b, sd_b=sd_b, lam=float(lam), score_window=int(score_window),
    )
    return final, diff_map, base_up, score


def _loop_operands(impl: str, x, labels, num_sets: int):
    """Checks the operands every loop op shares; returns (device, B, H, W, J, N)."""
    require_impl(impl)
    if num_sets < 1:
        raise ValueError(f"num_sets must be >= 1, got {num_sets}")
    dev = x.device
    b, _, h, w = image_shape(x)
    j = _num_specs(labels)
    check_tensor("x", x, (b, 3, h, w), (torch.float32,), dev)
    check_tensor("labels", labels, (j, h, w), (torch.int32,), dev)
    return dev, b, h, w, j, b * j * num_sets


def _num_specs(labels) -> int:
    """J of a J×H×W label tensor; -1 (caught by the shape check) for anything else."""
    return labels.shape[0] if isinstance(labels, torch.Tensor) and labels.dim() == 3 else -1


def _check_pool_factors(pool_factors, h: int, w: int) -> None:
    if not pool_factors or len(pool_factors) > 4:
        raise ValueError(f"pool_factors: 1 to 4 factors, got {list(pool_factors)}")
    for f in pool_factors:
        if f < 1 or h % f or w % f:
            raise ValueError(f"pool factor {f} must be >= 1 and divide H={h} and W={w}")
