"""GLAD's per-row step without PyTorch: the two fused ops of ``drdc_trt.ops`` (``glad_predict``,
``glad_update``) on numpy buffers, compiled (``drdc_trt._C``) or as a numpy transcription.

One step of the adaptive loop is predict → [the feature network: A, score, SAFF weight w] →
update. ``NumpyGladKernels`` does the same float32 operations in the same order as the PyTorch
references (``reference_glad_predict`` / ``reference_glad_update``), so both give the same bits
on the CPU, with one caveat: √ᾱ and √(1 − ᾱ) are correctly rounded here (np.sqrt), while torch's
float32 √ on the CPU (its vectorised kernel) is off by one ulp for a few ᾱ (12 of the 1000
timesteps of the linear schedule on an AVX-512 machine); at those timesteps the two differ by that
rounding. ``CsrcGladKernels`` calls the compiled kernels on the arrays (in place for ``update``)
with the numpy kernels' coefficients: the two always agree bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drdc_trt.runtime.schedule import f32_coefficients as coefficients

GLAD_KERNELS = ("auto", "numpy", "csrc")
NONE, TRIGGERED, FALLBACK = 0, 1, 2  # trigger_kind codes (drdc_trt.methods.glad.row_rule)
FALLBACKS = ("continue", "stop")  # glad.fallback (row_rule.FALLBACKS)


@dataclass
class GladRows:
    """The loop's per-row state: B rows, fixed shapes (numpy twin of ``adaptive.RowState``)."""

    x_t: np.ndarray           # float32 B×C×H×W, the current sample (frozen once done)
    recon: np.ndarray         # float32 B×C×H×W, the reconstruction (set when a row is done)
    done: np.ndarray          # bool B
    triggered: np.ndarray     # bool B
    steps: np.ndarray         # int64 B, U-Net evaluations taken
    trigger_step: np.ndarray  # int64 B, step of the trigger or the fallback, -1 = neither
    trigger_kind: np.ndarray  # int64 B, NONE / TRIGGERED / FALLBACK
    max_score: np.ndarray     # float32 B, largest trigger score seen, -inf if none

    def looking(self) -> np.ndarray:
        """Rows still looking for their step: not done, neither triggered nor fallen back
        (row_rule.looking)."""
        return ~self.done & ~self.triggered & (self.trigger_kind != FALLBACK)

    @classmethod
    def start(cls, x_T: np.ndarray) -> "GladRows":
        x_T = _f32("x_T", x_T)
        if x_T.ndim != 4:
            raise ValueError(f"x_T: expected B×C×H×W, got shape {x_T.shape}")
        b = x_T.shape[0]
        return cls(x_T.copy(), np.zeros_like(x_T), np.zeros(b, bool), np.zeros(b, bool), np.zeros(b, np.int64),
                   np.full(b, -1, np.int64), np.zeros(b, np.int64), np.full(b, -np.inf, np.float32))


def _f32(name: str, a) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype != np.float32:
        raise TypeError(f"{name}: expected a float32 numpy array, got {getattr(a, 'dtype', type(a).__name__)}")
    return a


def _check(name: str, a, shape: tuple, dtype) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != dtype:
        raise TypeError(f"{name}: expected a {np.dtype(dtype).name} numpy array, "
                        f"got {getattr(a, 'dtype', type(a).__name__)}")
    if a.shape != tuple(shape):
        raise ValueError(f"{name}: shape {a.shape}, expected {tuple(shape)}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name}: must be C-contiguous (np.ascontiguousarray)")


def _check_alpha_bar(name: str, v) -> float:
    v = float(v)
    if not 0.0 < v <= 1.0:  # also refuses NaN
        raise ValueError(f"{name} (alpha-bar) must lie in (0, 1], got {v}")
    return v


def _check_predict(x_t, x, noise, eps, ab) -> float:
    shape = _f32("x_t", x_t).shape
    if len(shape) != 4 or x_t.size < 1:
        raise ValueError(f"x_t: expected a non-empty B×C×H×W array, got shape {shape}")
    for name, a in (("x_t", x_t), ("x", x), ("noise", noise), ("eps", eps)):
        _check(name, a, shape, np.float32)
    return _check_alpha_bar("ab", ab)


def _check_update(rows: GladRows, x0_gen, x0_in, eps, w, score, k, t, ab_next, tau, min_step,
                  fallback) -> tuple[float, float]:
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback {fallback!r}: choose one of {FALLBACKS}")
    shape = _f32("x0_gen", x0_gen).shape
    if len(shape) != 4 or x0_gen.size < 1:
        raise ValueError(f"x0_gen: expected a non-empty B×C×H×W array, got shape {shape}")
    b, _, h, wd = shape
    for name, a in (("x0_gen", x0_gen), ("x0_in", x0_in), ("eps", eps), ("rows.x_t", rows.x_t),
                    ("rows.recon", rows.recon)):
        _check(name, a, shape, np.float32)
    _check("w", w, (b, 1, h, wd), np.float32)
    _check("score", score, (b,), np.float32)
    _check("rows.max_score", rows.max_score, (b,), np.float32)
    for name in ("done", "triggered"):
        _check(f"rows.{name}", getattr(rows, name), (b,), np.bool_)
    for name in ("steps", "trigger_step", "trigger_kind"):
        _check(f"rows.{name}", getattr(rows, name), (b,), np.int64)
    for name, v in (("k", k), ("t", t), ("min_step", min_step)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name}: expected a non-negative int, got {v!r}")
    tau = float(tau)
    if tau != tau:
        raise ValueError("tau: NaN (no score would ever trigger; +inf says that explicitly)")
    return _check_alpha_bar("ab_next", ab_next), tau


class NumpyGladKernels:
    """Float32 numpy transcription of ``drdc_trt.ops.reference_glad_predict`` / ``_update``."""

    name = "numpy"

    def predict(self, x_t, x, noise, eps, ab: float, clip: bool = True) -> tuple[np.ndarray, np.ndarray]:
        ab = _check_predict(x_t, x, noise, eps, ab)
        s, sm = coefficients(ab)  # float32 √ᾱ, √(1 − ᾱ), as torch forms them from float32 ᾱ
        x0_gen = (x_t - sm * eps) / s
        x0_in = ((s * x + sm * noise) - sm * eps) / s
        if clip:
            lo, hi = np.float32(-1), np.float32(1)
            x0_gen, x0_in = np.clip(x0_gen, lo, hi), np.clip(x0_in, lo, hi)
        return x0_gen, x0_in

    def update(self, rows: GladRows, x0_gen, x0_in, eps, w, score, k: int, t: int, ab_next: float, tau: float,
               min_step: int, fallback: str = "continue") -> None:
        ab_next, tau = _check_update(rows, x0_gen, x0_in, eps, w, score, k, t, ab_next, tau, min_step, fallback)
        last = ab_next >= 1.0
        active = ~rows.done
        checking = rows.looking()
        trig = checking & (score > np.float32(tau))  # torch compares in the score's float32; NaN never triggers
        fall = checking & ~trig & (t < min_step)
        stop = fall & (fallback == "stop")
        per_row = (-1, 1, 1, 1)
        x0 = np.where(trig.reshape(per_row), w * x0_gen + (np.float32(1) - w) * x0_in,
                      np.where(fall.reshape(per_row), x0_in, x0_gen))
        if last:
            x_next = x0
        else:  # Python's float ** 0.5, then float32: how torch takes a Python-float coefficient
            x_next = np.float32(ab_next ** 0.5) * x0 + np.float32((1 - ab_next) ** 0.5) * eps
        finish = stop | (active & last)
        moving = active & ~stop
        np.copyto(rows.x_t, x_next, where=moving.reshape(per_row))
        np.copyto(rows.recon, np.where(stop.reshape(per_row), x0_in, x0),
                  where=(stop | (moving & finish)).reshape(per_row))
        rows.steps += active
        rows.trigger_step[trig | fall] = k
        rows.trigger_kind[fall] = FALLBACK
        rows.trigger_kind[trig] = TRIGGERED
        np.copyto(rows.max_score, np.maximum(rows.max_score, score), where=checking)  # NaN propagates
        rows.triggered |= trig
        rows.done |= finish


class CsrcGladKernels:
    """``drdc_trt._C.glad_predict`` / ``glad_update`` on numpy host buffers (bool rows as uint8)."""

    name = "csrc"

    def __init__(self):
        from drdc_trt import _C

        for op in ("glad_predict", "glad_update"):
            if not hasattr(_C, op):
                raise RuntimeError(f"drdc_trt._C was built without the {op} kernel; rebuild with `pip install .`")
        self._C = _C

    def predict(self, x_t, x, noise, eps, ab: float, clip: bool = True) -> tuple[np.ndarray, np.ndarray]:
        s, sm = coefficients(_check_predict(x_t, x, noise, eps, ab))  # the numpy kernels' coefficients
        x0_gen, x0_in = np.empty_like(x_t), np.empty_like(x_t)
        self._C.glad_predict(device="cpu", x_t=x_t.ctypes.data, x=x.ctypes.data, noise=noise.ctypes.data,
                             eps=eps.ctypes.data, x0_gen=x0_gen.ctypes.data, x0_in=x0_in.ctypes.data,
                             count=x_t.size, sqrt_ab=float(s), sqrt_1mab=float(sm), clip=bool(clip))
        return x0_gen, x0_in

    def update(self, rows: GladRows, x0_gen, x0_in, eps, w, score, k: int, t: int, ab_next: float, tau: float,
               min_step: int, fallback: str = "continue") -> None:
        ab_next, tau = _check_update(rows, x0_gen, x0_in, eps, w, score, k, t, ab_next, tau, min_step, fallback)
        b, c, h, wd = x0_gen.shape
        self._C.glad_update(
            device="cpu", x0_gen=x0_gen.ctypes.data, x0_in=x0_in.ctypes.data, eps=eps.ctypes.data,
            w=w.ctypes.data, score=score.ctypes.data, x_t=rows.x_t.ctypes.data, recon=rows.recon.ctypes.data,
            done=rows.done.ctypes.data, triggered=rows.triggered.ctypes.data, steps=rows.steps.ctypes.data,
            trigger_step=rows.trigger_step.ctypes.data, trigger_kind=rows.trigger_kind.ctypes.data,
            max_score=rows.max_score.ctypes.data, B=b, C=c, H=h, W=wd, k=int(k), t=int(t), ab_next=ab_next,
            tau=tau, min_step=int(min_step), last=ab_next >= 1.0, fallback_stops=fallback == "stop")


def make_glad_kernels(kind: str = "auto"):
    """``numpy``, ``csrc`` (raises if drdc_trt._C lacks the kernels) or ``auto`` (csrc when built)."""
    if kind not in GLAD_KERNELS:
        raise ValueError(f"kernels={kind!r}; choose one of {GLAD_KERNELS}")
    if kind == "numpy":
        return NumpyGladKernels()
    try:
        return CsrcGladKernels()
    except (ImportError, RuntimeError):
        if kind == "csrc":
            raise
        return NumpyGladKernels()
