"""The fused ops of the DDIM inpainting loop: one entry per op.

Each op has a ``reference_*`` function in plain PyTorch (the definition) and a
dispatching entry (``prepare``, ``step``, ``fuse``) that runs either that
reference (``impl="torch"``) or the compiled kernel of ``drdc_trt._C``
(``impl="csrc"``) after checking dtype, device, contiguity and shape. DiffusionAD's
norm-guided combination (``norm_guided``) and GLAD's per-row step (``glad_predict``,
``glad_update``) are the ops of the other methods.

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

import numbers
from typing import Sequence

import torch
import torch.nn.functional as F

IMPLS = ("torch", "csrc")


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
    """Condition c = M·x + (1−M)·n and start x_{t0} = √ᾱ·c + √(1−ᾱ)·ε (DESIGN §1.3).

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


def mean_filter(maps: torch.Tensor, size: int) -> torch.Tensor:
    """size×size mean over the valid neighbours (border pixels average fewer values)."""
    if size <= 1:
        return maps
    return F.avg_pool2d(maps.unsqueeze(1), size, stride=1, padding=size // 2,
                        count_include_pad=False).squeeze(1)


def upsample_base(base: torch.Tensor, size: int) -> torch.Tensor:
    """B×h×w → B×S×S, bilinear, align_corners=False."""
    return F.interpolate(base.unsqueeze(1), size=(size, size), mode="bilinear",
                         align_corners=False).squeeze(1)


def image_score(maps: torch.Tensor, window: int) -> torch.Tensor:
    """Max of the window×window average-pooled map (stride 1, no padding), per image."""
    return F.avg_pool2d(maps.unsqueeze(1), window, stride=1).amax(dim=(1, 2, 3))


def reference_fuse(
    heat: torch.Tensor, count: int, base: torch.Tensor,
    mean_filter_size: int, stats: Sequence[float], lam: float, score_window: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Spatio-temporal fusion (DESIGN §1.4).

    ``stats`` = (μ_diff, σ_diff, μ_base, σ_base), measured on normal images.
    Returns (final B×H×W, diffusion map B×H×W, up-sampled base map B×H×W, score B).
    """
    mu_d, sd_d, mu_b, sd_b = (float(s) for s in stats)
    hd = mean_filter(heat / count, mean_filter_size)
    hb = upsample_base(base, heat.shape[-1])
    final = lam * (hd - mu_d) / sd_d + (1.0 - lam) * (hb - mu_b) / sd_b
    return final, hd, hb, image_score(final, score_window)


def reference_norm_guided(x_a: torch.Tensor, e_a: torch.Tensor, x_b: torch.Tensor, e_b: torch.Tensor,
                          ab_a, ab_b, w: float = 1.0, clamp: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """DiffusionAD's norm-guided one-step combination: (x0_g, x0_b), its definition
    ``drdc_trt.models.diffusionad.norm_guided.norm_guided_x0`` (ᾱ_a, ᾱ_b floats or one per image)."""
    from .models.diffusionad.norm_guided import norm_guided_x0

    return norm_guided_x0(x_a, e_a, x_b, e_b, ab_a, ab_b, w, clamp)


def reference_glad_predict(x_t: torch.Tensor, x: torch.Tensor, noise: torch.Tensor, eps: torch.Tensor, ab: float,
                           clip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """GLAD's two one-step estimates at ᾱ: (x0_gen, x0_in), x0_gen = x̂0(x_t, ε̂) and
    x0_in = x̂0(q(x, ᾱ, ε), ε̂) (the input re-noised with the loop's noise ε), both clamped to
    [-1, 1] unless ``clip=False``; x̂0 and q are ``drdc_trt.models.glad.target``'s."""
    from .models.glad.target import predict_x0, q_sample

    x0_gen = predict_x0(x_t, ab, eps)
    x0_in = predict_x0(q_sample(x, ab, noise), ab, eps)
    if clip:
        x0_gen, x0_in = x0_gen.clamp(-1, 1), x0_in.clamp(-1, 1)
    return x0_gen, x0_in


def reference_glad_update(state, x0_gen: torch.Tensor, x0_in: torch.Tensor, eps: torch.Tensor, w: torch.Tensor,
                          score: torch.Tensor, k: int, t: int, ab_next: float, tau: float, min_step: int,
                          last: bool):
    """GLAD's per-row rule of one step, once ε̂, x0_gen, x0_in, the SAFF weight w (B×1×H×W) and the
    trigger score (B) are known. ``state``: a ``RowState`` (x_t, recon, done, triggered, steps,
    trigger_step, trigger_kind, max_score); its fields are replaced by the updated tensors.

        active = ¬done, checking = active ∧ ¬triggered
        trig = checking ∧ score > τ, fall = checking ∧ ¬trig ∧ t < min_step
        x0 = trig ? w⊙x0_gen + (1−w)⊙x0_in : x0_gen, x_next = ddim_next(x0, ε̂, ᾱ')
        finish = fall ∨ (active ∧ last), moving = active ∧ ¬fall
        x_t ← moving ? x_next : x_t, recon ← fall ? x0_in : (moving ∧ finish ? x0 : recon)
        steps += active, trigger_step ← k where trig ∨ fall, trigger_kind ← 1 / 2 where trig / fall
        max_score ← max(max_score, score) where checking (NaN propagates, as torch.maximum)
        triggered ∨= trig, done ∨= finish

    A NaN score never triggers (NaN > τ is false). Rows that are done keep every value.
    """
    from .models.glad.adaptive import FALLBACK, TRIGGERED, ddim_next, decide, rows, saff_blend

    active = ~state.done
    checking = active & ~state.triggered
    trig, fall = decide(score, checking, tau, t, min_step)
    x0 = torch.where(rows(trig, x0_gen), saff_blend(x0_gen, x0_in, w), x0_gen)
    state.max_score = torch.where(checking, torch.maximum(state.max_score, score), state.max_score)
    x_next = ddim_next(x0, eps, ab_next)
    finish = fall | (active & torch.tensor(bool(last), device=active.device))
    moving = active & ~fall
    state.x_t = torch.where(rows(moving, x_next), x_next, state.x_t)
    state.recon = torch.where(rows(fall, x0_in), x0_in,
                              torch.where(rows(moving & finish, x0), x0, state.recon))
    state.steps = state.steps + active.long()
    state.trigger_step = torch.where(trig | fall, torch.full_like(state.trigger_step, k), state.trigger_step)
    state.trigger_kind = torch.where(trig, TRIGGERED, torch.where(fall, FALLBACK, state.trigger_kind))
    state.triggered = state.triggered | trig
    state.done = state.done | finish
    return state


# --------------------------------------------------------------------------- dispatch
def _check(name: str, t: torch.Tensor, shape: tuple, dtypes: tuple, device: torch.device) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in dtypes:
        raise TypeError(f"{name}: dtype {t.dtype} not in {[str(d) for d in dtypes]}")
    if t.device != device:
        raise ValueError(f"{name}: on {t.device}, expected {device} (all operands on one device)")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name}: shape {tuple(t.shape)}, expected {tuple(shape)}")
    if not t.is_contiguous():
        raise ValueError(f"{name}: must be contiguous (call .contiguous())")


def _csrc():
    from . import _C  # noqa: PLC0415

    if not hasattr(_C, "prepare"):
        raise RuntimeError("drdc_trt._C was built without the fused kernels")
    return _C


def _csrc_with(op: str):
    """``_C``, refusing by name a build that predates the kernel ``op``."""
    C = _csrc()
    if not hasattr(C, op):
        raise RuntimeError(f"drdc_trt._C was built without the {op} kernel; rebuild with `pip install .`")
    return C


def _stream(device: torch.device) -> int:
    return torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0


_NET_DTYPES = (torch.float32, torch.float16)


def _dtype_name(dtype: torch.dtype) -> str:
    return "float16" if dtype == torch.float16 else "float32"


def prepare(x, labels, num_sets, fill_noise, eps0, sqrt_ab, sqrt_1mab,
            net_dtype=torch.float32, impl: str = "torch"):
    """Dispatching ``prepare``; see :func:`reference_prepare`."""
    if impl == "torch":
        return reference_prepare(x, labels, num_sets, fill_noise, eps0, sqrt_ab, sqrt_1mab, net_dtype)
    dev, b, h, w, j, n = _loop_operands(impl, x, labels, num_sets)
    _check("fill_noise", fill_noise, (n, 3, h, w), (torch.float32,), dev)
    _check("eps0", eps0, (n, 3, h, w), (torch.float32,), dev)
    if net_dtype not in _NET_DTYPES:
        raise TypeError(f"net_dtype {net_dtype} not in {_NET_DTYPES}")
    xt = torch.empty(n, 3, h, w, dtype=torch.float32, device=dev)
    unet_in = torch.empty(n, 6, h, w, dtype=net_dtype, device=dev)
    _csrc().prepare(
        device=dev.type, stream=_stream(dev), x=x.data_ptr(), labels=labels.data_ptr(),
        fill_noise=fill_noise.data_ptr(), eps0=eps0.data_ptr(), xt=xt.data_ptr(),
        unet_in=unet_in.data_ptr(), B=b, J=j, K=num_sets, H=h, W=w,
        sqrt_ab=float(sqrt_ab), sqrt_1mab=float(sqrt_1mab), net_dtype=_dtype_name(net_dtype),
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
    _check("xt", xt, (n, 3, h, w), (torch.float32,), dev)
    _check("unet_in", unet_in, (n, 6, h, w), _NET_DTYPES, dev)
    _check("eps", eps, (n, 3, h, w), (unet_in.dtype,), dev)
    _check("noise", noise, (n, 3, h, w), (torch.float32,), dev)
    _check("heat", heat, (b, h, w), (torch.float32,), dev)
    _check_pool_factors(pool_factors, h, w)
    xt_next = torch.empty_like(xt)
    _csrc().step(
        device=dev.type, stream=_stream(dev), x=x.data_ptr(), labels=labels.data_ptr(),
        xt_in=xt.data_ptr(), eps=eps.data_ptr(), noise=noise.data_ptr(), xt_out=xt_next.data_ptr(),
        unet_in=unet_in.data_ptr(), heat=heat.data_ptr(), B=b, J=j, K=num_sets, H=h, W=w,
        sqrt_ab=float(sqrt_ab), sqrt_1mab=float(sqrt_1mab), sqrt_ab_next=float(sqrt_ab_next),
        sqrt_1mab_next=float(sqrt_1mab_next), pool_factors=[int(f) for f in pool_factors],
        clip_x0=bool(clip_x0), net_dtype=_dtype_name(unet_in.dtype),
    )
    return xt_next, unet_in, heat


def fuse(heat, count, base, mean_filter_size, stats, lam, score_window, impl: str = "torch"):
    """Dispatching ``fuse``; see :func:`reference_fuse`."""
    if impl == "torch":
        return reference_fuse(heat, count, base, mean_filter_size, stats, lam, score_window)
    _require_impl(impl)
    dev = heat.device
    if heat.dim() != 3:
        raise ValueError(f"heat: expected B×H×W, got shape {tuple(heat.shape)}")
    b, h, w = heat.shape
    if base.dim() != 3:
        raise ValueError(f"base: expected B×h×w, got shape {tuple(base.shape)}")
    _check("heat", heat, (b, h, w), (torch.float32,), dev)
    _check("base", base, (b, *base.shape[1:]), (torch.float32,), dev)
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
    _csrc().fuse(
        device=dev.type, stream=_stream(dev), heat=heat.data_ptr(), base=base.data_ptr(),
        final=final.data_ptr(), diff_map=diff_map.data_ptr(), base_up=base_up.data_ptr(),
        score=score.data_ptr(), B=b, H=h, W=w, h=base.shape[1], w=base.shape[2],
        inv_count=1.0 / count, mean_filter=int(mean_filter_size), mu_d=mu_d, sd_d=sd_d,
        mu_b=mu_b, sd_b=sd_b, lam=float(lam), score_window=int(score_window),
    )
    return final, diff_map, base_up, score


def norm_guided(x_a, e_a, x_b, e_b, ab_a: float, ab_b: float, w: float = 1.0, clamp: bool = True,
                impl: str = "torch"):
    """Dispatching ``norm_guided``; see :func:`reference_norm_guided`. Returns (x0_g, x0_b).
    The csrc kernel takes float32 operands of one shape and ᾱ_a, ᾱ_b as numbers in (0, 1]."""
    if impl == "torch":
        return reference_norm_guided(x_a, e_a, x_b, e_b, ab_a, ab_b, w, clamp)
    _require_impl(impl)
    if not isinstance(x_a, torch.Tensor):
        raise TypeError(f"x_a: expected a torch.Tensor, got {type(x_a).__name__}")
    dev, shape = x_a.device, tuple(x_a.shape)
    for name, t in (("x_a", x_a), ("e_a", e_a), ("x_b", x_b), ("e_b", e_b)):
        _check(name, t, shape, (torch.float32,), dev)
    if x_a.numel() < 1:
        raise ValueError(f"x_a: empty tensor of shape {shape}")
    for name, v in (("ab_a", ab_a), ("ab_b", ab_b), ("w", w)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{name}: expected a number, got {type(v).__name__} (the csrc kernel takes one "
                            "alpha-bar for the whole batch)")
    x0_g, x0_b = torch.empty_like(x_a), torch.empty_like(x_a)
    _csrc().norm_guided(device=dev.type, stream=_stream(dev), x_a=x_a.data_ptr(), e_a=e_a.data_ptr(),
                        x_b=x_b.data_ptr(), e_b=e_b.data_ptr(), x0_g=x0_g.data_ptr(), x0_b=x0_b.data_ptr(),
                        count=x_a.numel(), ab_a=float(ab_a), ab_b=float(ab_b), w=float(w), clamp=bool(clamp))
    return x0_g, x0_b


def _glad_image(name: str, t) -> tuple[int, int, int, int]:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 4 or t.numel() < 1:
        raise ValueError(f"{name}: expected a non-empty B×C×H×W tensor, got shape {tuple(t.shape)}")
    return tuple(t.shape)


def _alpha_bar(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{name}: expected a number, got {type(v).__name__} (one alpha-bar for the whole batch)")
    if not 0.0 < float(v) <= 1.0:  # also refuses NaN
        raise ValueError(f"{name} (alpha-bar) must lie in (0, 1], got {v}")
    return float(v)


def glad_predict(x_t, x, noise, eps, ab: float, clip: bool = True, impl: str = "torch"):
    """Dispatching ``glad_predict``; see :func:`reference_glad_predict`. Returns (x0_gen, x0_in).
    The csrc kernel takes float32 operands of one shape and ᾱ as a number in (0, 1] (its √ᾱ and
    √(1 − ᾱ) are formed here by torch, as the reference forms them)."""
    if impl == "torch":
        return reference_glad_predict(x_t, x, noise, eps, ab, clip)
    _require_impl(impl)
    shape = _glad_image("x_t", x_t)
    dev = x_t.device
    for name, t in (("x_t", x_t), ("x", x), ("noise", noise), ("eps", eps)):
        _check(name, t, shape, (torch.float32,), dev)
    # √ᾱ and √(1 − ᾱ) by torch on the operands' device, as the reference forms them
    # (target.predict_x0): torch's float32 √ on the CPU is not correctly rounded for every ᾱ
    ab_t = torch.as_tensor(_alpha_bar("ab", ab), dtype=torch.float32, device=dev)
    sqrt_ab, sqrt_1mab = float(ab_t.sqrt()), float((1 - ab_t).sqrt())
    x0_gen, x0_in = torch.empty_like(x_t), torch.empty_like(x_t)
    _csrc_with("glad_predict").glad_predict(
        device=dev.type, stream=_stream(dev), x_t=x_t.data_ptr(), x=x.data_ptr(), noise=noise.data_ptr(),
        eps=eps.data_ptr(), x0_gen=x0_gen.data_ptr(), x0_in=x0_in.data_ptr(), count=x_t.numel(),
        sqrt_ab=sqrt_ab, sqrt_1mab=sqrt_1mab, clip=bool(clip))
    return x0_gen, x0_in


def glad_update(state, x0_gen, x0_in, eps, w, score, k: int, t: int, ab_next: float, tau: float, min_step: int,
                last: bool | None = None, impl: str = "torch"):
    """Dispatching ``glad_update``; see :func:`reference_glad_update`. ``last`` (the step past
    which no timestep follows) defaults to ``ab_next >= 1``. The csrc kernel updates the state's
    tensors in place (x_t, recon float32 B×C×H×W; done, triggered bool B; steps, trigger_step,
    trigger_kind int64 B; max_score float32 B); both return ``state``."""
    if last is None:
        last = float(ab_next) >= 1.0
    if impl == "torch":
        return reference_glad_update(state, x0_gen, x0_in, eps, w, score, k, t, ab_next, tau, min_step, last)
    _require_impl(impl)
    b, c, h, wd = _glad_image("x0_gen", x0_gen)
    dev = x0_gen.device
    for name, v in (("x0_gen", x0_gen), ("x0_in", x0_in), ("eps", eps), ("state.x_t", state.x_t),
                    ("state.recon", state.recon)):
        _check(name, v, (b, c, h, wd), (torch.float32,), dev)
    _check("w", w, (b, 1, h, wd), (torch.float32,), dev)
    _check("score", score, (b,), (torch.float32,), dev)
    _check("state.max_score", state.max_score, (b,), (torch.float32,), dev)
    for name in ("done", "triggered"):
        _check(f"state.{name}", getattr(state, name), (b,), (torch.bool,), dev)
    for name in ("steps", "trigger_step", "trigger_kind"):
        _check(f"state.{name}", getattr(state, name), (b,), (torch.int64,), dev)
    ab_next = _alpha_bar("ab_next", ab_next)
    tau = float(tau)
    if tau != tau:
        raise ValueError("tau: NaN (no score would ever trigger; +inf says that explicitly)")
    for name, v in (("k", k), ("t", t), ("min_step", min_step)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
            raise ValueError(f"{name}: expected a non-negative int, got {v!r}")
    _csrc_with("glad_update").glad_update(
        device=dev.type, stream=_stream(dev), x0_gen=x0_gen.data_ptr(), x0_in=x0_in.data_ptr(),
        eps=eps.data_ptr(), w=w.data_ptr(), score=score.data_ptr(), x_t=state.x_t.data_ptr(),
        recon=state.recon.data_ptr(), done=state.done.data_ptr(), triggered=state.triggered.data_ptr(),
        steps=state.steps.data_ptr(), trigger_step=state.trigger_step.data_ptr(),
        trigger_kind=state.trigger_kind.data_ptr(), max_score=state.max_score.data_ptr(),
        B=b, C=c, H=h, W=wd, k=int(k), t=int(t), ab_next=ab_next, tau=tau, min_step=int(min_step), last=bool(last))
    return state


def _loop_operands(impl: str, x, labels, num_sets: int):
    """Checks the operands every loop op shares; returns (device, B, H, W, J, N)."""
    _require_impl(impl)
    if num_sets < 1:
        raise ValueError(f"num_sets must be >= 1, got {num_sets}")
    dev = x.device
    b, _, h, w = _image_shape(x)
    j = _num_specs(labels)
    _check("x", x, (b, 3, h, w), (torch.float32,), dev)
    _check("labels", labels, (j, h, w), (torch.int32,), dev)
    return dev, b, h, w, j, b * j * num_sets


def _require_impl(impl: str) -> None:
    if impl not in IMPLS:
        raise ValueError(f"impl={impl!r}; choose one of {IMPLS}")


def _image_shape(x) -> tuple[int, int, int, int]:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
        raise ValueError(f"x: expected B×3×H×W, got {shape}")
    return tuple(x.shape)


def _num_specs(labels) -> int:
    """J of a J×H×W label tensor; -1 (caught by the shape check) for anything else."""
    return labels.shape[0] if isinstance(labels, torch.Tensor) and labels.dim() == 3 else -1


def _check_pool_factors(pool_factors, h: int, w: int) -> None:
    if not pool_factors or len(pool_factors) > 4:
        raise ValueError(f"pool_factors: 1 to 4 factors, got {list(pool_factors)}")
    for f in pool_factors:
        if f < 1 or h % f or w % f:
            raise ValueError(f"pool factor {f} must be >= 1 and divide H={h} and W={w}")
