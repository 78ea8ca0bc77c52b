"""The fused loop ops (prepare, step, fuse) on numpy arrays, without torch.

Two implementations behind one interface:

* ``NumpyKernels`` — a line-by-line numpy transcription of
  ``drdc_trt.ops.reference_prepare / reference_step / reference_fuse`` (same row
  layout, same float32 arithmetic order where it matters);
* ``CsrcKernels`` — the compiled CPU kernels of ``drdc_trt._C`` called on the
  numpy buffers' host pointers (after the same dtype / shape / contiguity checks
  ``drdc_trt.ops`` makes), used when ``_C`` was built with them.

Layout (shared with ``drdc_trt.ops`` and the C++ core): ``x`` B×3×H×W float32 in
[-1, 1]; ``labels`` J×H×W int32; rows N = B·J·K, row n = (b·J + j)·K + k; row
(j, k) treats set k as unknown (known mask M = labels[j] != k); ``xt`` N×3×H×W
float32; ``unet_in`` N×6×H×W net dtype; ``heat`` B×H×W float32.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from drdc_trt.runtime.common import upsample_base  # noqa: F401  (the loop's up-sampling)

KERNELS = ("auto", "numpy", "csrc")
_NET_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


# --------------------------------------------------------------------------- helpers
def known_masks(labels: np.ndarray, num_sets: int) -> np.ndarray:
    """(J·K)×1×H×W float32, row j·K + k is 1 where set k is known (labels != k)."""
    k = np.arange(num_sets, dtype=labels.dtype).reshape(1, num_sets, 1, 1)
    known = labels[:, None] != k
    return known.reshape(-1, 1, *labels.shape[-2:]).astype(np.float32)


def row_masks(labels: np.ndarray, num_sets: int, batch: int) -> np.ndarray:
    return np.tile(known_masks(labels, num_sets), (batch, 1, 1, 1))


def heat_term(d: np.ndarray, pool_factors: Sequence[int]) -> np.ndarray:
    """Σ_f up_f(‖avgpool_f(d)‖₂ over channels): N×3×H×W → N×H×W (nearest up-sampling)."""
    n, c, h, w = d.shape
    out = np.zeros((n, h, w), dtype=d.dtype)
    for f in pool_factors:
        pooled = d.reshape(n, c, h // f, f, w // f, f).mean(axis=(3, 5), dtype=np.float32) if f > 1 else d
        norm = np.sqrt(np.square(pooled).sum(axis=1))
        if f > 1:
            norm = np.repeat(np.repeat(norm, f, axis=-2), f, axis=-1)
        out = out + norm
    return out


def _window_sum(maps: np.ndarray, size: int, pad: int) -> np.ndarray:
    b, h, w = maps.shape
    p = np.pad(maps, ((0, 0), (pad, pad), (pad, pad))) if pad else maps
    oh, ow = p.shape[1] - size + 1, p.shape[2] - size + 1
    s = np.zeros((b, oh, ow), dtype=np.float32)
    for dy in range(size):
        for dx in range(size):
            s += p[:, dy:dy + oh, dx:dx + ow]
    return s


def mean_filter(maps: np.ndarray, size: int) -> np.ndarray:
    """size×size mean over the valid neighbours (border pixels average fewer values)."""
    if size <= 1:
        return maps
    r = size // 2
    _, h, w = maps.shape
    ys, xs = np.arange(h), np.arange(w)
    cy = (np.minimum(ys + r, h - 1) - np.maximum(ys - r, 0) + 1).astype(np.float32)
    cx = (np.minimum(xs + r, w - 1) - np.maximum(xs - r, 0) + 1).astype(np.float32)
    return _window_sum(maps, size, r) / (cy[:, None] * cx[None, :])


def image_score(maps: np.ndarray, window: int) -> np.ndarray:
    """Max of the window×window average-pooled map (stride 1, no padding), per image."""
    pooled = _window_sum(maps.astype(np.float32), window, 0) / np.float32(window * window)
    return pooled.reshape(pooled.shape[0], -1).max(axis=1)


def normalised(maps: np.ndarray, mean: float, std: float) -> np.ndarray:
    return (maps - mean) / std


def _lower_median(a: np.ndarray) -> np.ndarray:
    """Per row, the lower of the two middle values (torch.median's rule)."""
    k = (a.shape[1] - 1) // 2
    return np.partition(a, k, axis=1)[:, k]


def heat_divisor(x: np.ndarray, mode: str, window: int) -> np.ndarray | None:
    """numpy transcription of ``drdc_trt.methods.drdc.contrast.heat_divisor`` (B×3×H×W → B×H×W or None)."""
    from drdc_trt.methods.drdc.config import CONTRAST_FLOOR as FLOOR
    from drdc_trt.methods.drdc.config import LOCAL_FLOOR, MAD_TO_STD

    if mode == "none":
        return None
    flat = x.reshape(x.shape[0], -1).astype(np.float32)
    med = _lower_median(flat)
    rs = np.maximum(np.float32(MAD_TO_STD) * _lower_median(np.abs(flat - med[:, None])), np.float32(FLOOR))
    rs = rs[:, None, None].astype(np.float32)
    b, c, h, w = x.shape
    if mode == "image_std":
        return np.broadcast_to(rs, (b, h, w)).astype(np.float32)
    if mode == "local_std":
        chans = x.reshape(b * c, h, w).astype(np.float32)
        var = (mean_filter(chans * chans, window) - mean_filter(chans, window) ** 2).reshape(b, c, h, w).mean(1)
        return np.maximum(np.sqrt(np.maximum(var, 0.0)), np.float32(LOCAL_FLOOR) * rs).astype(np.float32)
    raise ValueError(f"heat_norm={mode!r}: choose none, image_std or local_std")


# --------------------------------------------------------------------------- numpy
class NumpyKernels:
    """numpy transcription of the PyTorch references (drdc_trt.ops.reference_*)."""

    name = "numpy"

    def prepare(self, x, labels, num_sets, fill_noise, eps0, sqrt_ab, sqrt_1mab, net_dtype=np.float32):
        b, j = x.shape[0], labels.shape[0]
        m = row_masks(labels, num_sets, b)
        xr = np.repeat(x, j * num_sets, axis=0)
        c = m * xr + (1.0 - m) * fill_noise
        xt = sqrt_ab * c + sqrt_1mab * eps0
        return xt, np.concatenate([xt, c], axis=1).astype(net_dtype)

    def step(self, x, labels, num_sets, xt, eps, noise, unet_in, heat, sqrt_ab, sqrt_1mab, sqrt_ab_next,
             sqrt_1mab_next, pool_factors, clip_x0=True):
        b, j = x.shape[0], labels.shape[0]
        rows = j * num_sets
        m = row_masks(labels, num_sets, b)
        xr = np.repeat(x, rows, axis=0)
        e = eps.astype(np.float32)
        x0 = (xt - sqrt_1mab * e) / np.float32(sqrt_ab)
        if clip_x0:
            x0 = np.clip(x0, -1.0, 1.0)
        x_unknown = sqrt_ab_next * x0 + sqrt_1mab_next * e
        x_known = sqrt_ab_next * xr + sqrt_1mab_next * noise
        known = m > 0.5  # select, as ops.reference_step: no 0·Inf leak between the regions
        xt_next = np.where(known, x_known, x_unknown)
        h = np.where(known[:, 0], np.float32(0), heat_term(xr - x0, pool_factors))
        heat = heat + h.reshape(b, rows, *h.shape[-2:]).sum(axis=1)
        unet_in = np.concatenate([xt_next.astype(unet_in.dtype), unet_in[:, 3:]], axis=1)
        return xt_next, unet_in, heat

    def fuse(self, heat, count, base, mean_filter_size, stats, lam, score_window):
        mu_d, sd_d, mu_b, sd_b = (float(s) for s in stats)
        hd = mean_filter(heat / np.float32(count), mean_filter_size)
        hb = upsample_base(base, heat.shape[-1])
        final = lam * (hd - mu_d) / sd_d + (1.0 - lam) * (hb - mu_b) / sd_b
        return final.astype(np.float32), hd, hb, image_score(final, score_window)


# --------------------------------------------------------------------------- csrc
def _require(name: str, a: np.ndarray, shape: tuple, dtypes) -> None:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(a).__name__}")
    if a.dtype not in [np.dtype(d) for d in dtypes]:
        raise TypeError(f"{name}: dtype {a.dtype} not in {[str(np.dtype(d)) for d in dtypes]}")
    if a.shape != tuple(shape):
        raise ValueError(f"{name}: shape {a.shape}, expected {tuple(shape)}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name}: must be C-contiguous (np.ascontiguousarray)")


def _ptr(a: np.ndarray) -> int:
    return int(a.ctypes.data)


class CsrcKernels:
    """The compiled CPU kernels of drdc_trt._C on numpy host buffers."""

    name = "csrc"

    def __init__(self):
        from drdc_trt import _C

        if not all(hasattr(_C, op) for op in ("prepare", "step", "fuse")):
            raise RuntimeError("drdc_trt._C was built without the fused kernels (prepare/step/fuse)")
        self._C = _C

    @staticmethod
    def _dtype_name(dtype) -> str:
        return "float16" if np.dtype(dtype) == np.float16 else "float32"

    def prepare(self, x, labels, num_sets, fill_noise, eps0, sqrt_ab, sqrt_1mab, net_dtype=np.float32):
        b, _, h, w = x.shape
        j = labels.shape[0]
        n = b * j * num_sets
        _require("x", x, (b, 3, h, w), (np.float32,))
        _require("labels", labels, (j, h, w), (np.int32,))
        _require("fill_noise", fill_noise, (n, 3, h, w), (np.float32,))
        _require("eps0", eps0, (n, 3, h, w), (np.float32,))
        if np.dtype(net_dtype) not in _NET_DTYPES:
            raise TypeError(f"net_dtype {net_dtype} not in {[str(d) for d in _NET_DTYPES]}")
        xt = np.empty((n, 3, h, w), dtype=np.float32)
        unet_in = np.empty((n, 6, h, w), dtype=net_dtype)
        self._C.prepare(device="cpu", stream=0, x=_ptr(x), labels=_ptr(labels), fill_noise=_ptr(fill_noise),
                        eps0=_ptr(eps0), xt=_ptr(xt), unet_in=_ptr(unet_in), B=b, J=j, K=num_sets, H=h, W=w,
                        sqrt_ab=float(sqrt_ab), sqrt_1mab=float(sqrt_1mab), net_dtype=self._dtype_name(net_dtype))
        return xt, unet_in

    def step(self, x, labels, num_sets, xt, eps, noise, unet_in, heat, sqrt_ab, sqrt_1mab, sqrt_ab_next,
             sqrt_1mab_next, pool_factors, clip_x0=True):
        b, _, h, w = x.shape
        j = labels.shape[0]
        n = b * j * num_sets
        _require("x", x, (b, 3, h, w), (np.float32,))
        _require("labels", labels, (j, h, w), (np.int32,))
        _require("xt", xt, (n, 3, h, w), (np.float32,))
        _require("unet_in", unet_in, (n, 6, h, w), _NET_DTYPES)
        _require("eps", eps, (n, 3, h, w), (unet_in.dtype,))
        _require("noise", noise, (n, 3, h, w), (np.float32,))
        _require("heat", heat, (b, h, w), (np.float32,))
        if not pool_factors or len(pool_factors) > 4 or any(f < 1 or h % f or w % f for f in pool_factors):
            raise ValueError(f"pool_factors {list(pool_factors)}: 1 to 4 factors, each dividing H={h} and W={w}")
        xt_next = np.empty_like(xt)
        self._C.step(device="cpu", stream=0, x=_ptr(x), labels=_ptr(labels), xt_in=_ptr(xt), eps=_ptr(eps),
                     noise=_ptr(noise), xt_out=_ptr(xt_next), unet_in=_ptr(unet_in), heat=_ptr(heat), B=b, J=j,
                     K=num_sets, H=h, W=w, sqrt_ab=float(sqrt_ab), sqrt_1mab=float(sqrt_1mab),
                     sqrt_ab_next=float(sqrt_ab_next), sqrt_1mab_next=float(sqrt_1mab_next),
                     pool_factors=[int(f) for f in pool_factors], clip_x0=bool(clip_x0),
                     net_dtype=self._dtype_name(unet_in.dtype))
        return xt_next, unet_in, heat

    def fuse(self, heat, count, base, mean_filter_size, stats, lam, score_window):
        b, h, w = heat.shape
        _require("heat", heat, (b, h, w), (np.float32,))
        if base.ndim != 3:
            raise ValueError(f"base: expected B×h×w, got shape {base.shape}")
        _require("base", base, (b, *base.shape[1:]), (np.float32,))
        if count <= 0 or mean_filter_size < 1 or mean_filter_size % 2 == 0 or not 1 <= score_window <= min(h, w):
            raise ValueError(f"fuse: count {count} > 0, odd mean filter {mean_filter_size} and score window "
                             f"{score_window} in [1, {min(h, w)}] required")
        mu_d, sd_d, mu_b, sd_b = (float(s) for s in stats)
        final, diff_map, base_up = (np.empty((b, h, w), dtype=np.float32) for _ in range(3))
        score = np.empty(b, dtype=np.float32)
        self._C.fuse(device="cpu", stream=0, heat=_ptr(heat), base=_ptr(base), final=_ptr(final),
                     diff_map=_ptr(diff_map), base_up=_ptr(base_up), score=_ptr(score), B=b, H=h, W=w,
                     h=base.shape[1], w=base.shape[2], inv_count=1.0 / count, mean_filter=int(mean_filter_size),
                     mu_d=mu_d, sd_d=sd_d, mu_b=mu_b, sd_b=sd_b, lam=float(lam), score_window=int(score_window))
        return final, diff_map, base_up, score


def csrc_available() -> bool:
    try:
        CsrcKernels()
    except (ImportError, RuntimeError):
        return False
    return True


def make_kernels(kind: str = "auto"):
    """``numpy``, ``csrc`` (raises if drdc_trt._C lacks the kernels) or ``auto`` (csrc when built)."""
    if kind not in KERNELS:
        raise ValueError(f"kernels={kind!r}; choose one of {KERNELS}")
    if kind == "numpy" or (kind == "auto" and not csrc_available()):
        return NumpyKernels()
    return CsrcKernels()
