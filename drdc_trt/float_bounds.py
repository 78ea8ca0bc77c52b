"""Forward error bounds of float32 arithmetic: the tolerance of the numerical contract between two
differently written implementations of one formula (README, "Numerical contract").

Two float32 implementations of the same expression — a compiled kernel and its PyTorch reference,
the numpy transcription and the kernel — round differently on different CPUs (FMA contraction,
a vectorised reciprocal for a scalar divisor, a √ that is off by an ulp on some AVX-512 builds), so
they are compared through the exact value instead: ``Bound`` carries, element by element, the exact
result of the expression on the float32 inputs (computed in float64) and a bound on how far any
float32 evaluation of it can be from that, op by op (Higham, "Accuracy and Stability of Numerical
Algorithms", §2–3: every op's result carries a relative rounding error ≤ u = 2⁻²⁴):

    a ± b   err ≤ e_a + e_b + u·(|a ± b| + e_a + e_b)
    a · b   err ≤ |a|·e_b + |b|·e_a + e_a·e_b, then + u·(|ab| + that)
    a / b   err ≤ (e_a + |a/b|·e_b)/(|b| − e_b), then + 2u·(|a/b| + that)   (2u: a·fl(1/b) is allowed)
    √a      err ≤ min(√e_a, e_a/(2·√(a − e_a))), then + 2u·(√a + that)      (2u: one ulp off allowed)
    clamp   err unchanged (clamping is 1-Lipschitz)

An FMA rounds once where the bound allows two roundings, so it stays inside. Each side is then
checked against the exact value within the bound (``Bound.check``); two implementations that both
pass differ by at most twice the bound. A wrong coefficient or a dropped term moves the result by
far more than a few ulps of its terms and fails.
"""

from __future__ import annotations

import numpy as np

U = 2.0 ** -24  # unit roundoff of float32 (round to nearest)


def cosine_distance_floor(channels: int) -> float:
    """The float32 rounding bound of 1 − cos between two C-channel vectors normalised in float32:
    (2C + 4)·u (C for each norm's sum of squares and its division, C for the dot product, 4 for the
    square root, the subtraction and the products' last roundings). A distance at or below it is
    indistinguishable from 0."""
    return (2 * int(channels) + 4) * U


def _f64(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


class Bound:
    """An expression's exact value (float64 array) and a bound on the error of any float32
    evaluation of it, element by element. Build from ``Bound.exact(x)`` (a float32 input, taken as
    exact) and ``Bound.f32(c)`` (a constant that the implementations round to float32), then use
    + − · / and the functions below."""

    def __init__(self, value, err=0.0):
        self.value = _f64(value)
        self.err = np.broadcast_to(_f64(err), self.value.shape).copy() if np.ndim(err) else \
            np.full(self.value.shape, float(err))

    @classmethod
    def exact(cls, x) -> "Bound":
        """A float32 input: its value is exact."""
        return cls(_f64(x), 0.0)

    @classmethod
    def f32(cls, c: float) -> "Bound":
        """A Python number the implementations use as float32 (its rounding is an error)."""
        return cls(np.float64(c), U * abs(float(c)))

    @staticmethod
    def _lift(x) -> "Bound":
        return x if isinstance(x, Bound) else Bound.exact(x)

    def _rounded(self, value, err, ulps: float = 1.0) -> "Bound":
        return Bound(value, err + ulps * U * (np.abs(value) + err))

    def __add__(self, o):
        o = self._lift(o)
        return self._rounded(self.value + o.value, self.err + o.err)

    __radd__ = __add__

    def __sub__(self, o):
        o = self._lift(o)
        return self._rounded(self.value - o.value, self.err + o.err)

    def __rsub__(self, o):
        return self._lift(o) - self

    def __neg__(self):
        return Bound(-self.value, self.err)

    def __mul__(self, o):
        o = self._lift(o)
        v = self.value * o.value
        return self._rounded(v, np.abs(self.value) * o.err + np.abs(o.value) * self.err + self.err * o.err)

    __rmul__ = __mul__

    def __truediv__(self, o):
        o = self._lift(o)
        den = np.abs(o.value) - o.err
        if np.any(den <= 0):
            raise ValueError("Bound: a divisor's error bound reaches zero; the quotient is unbounded")
        q = self.value / o.value
        return self._rounded(q, (self.err + np.abs(q) * o.err) / den, ulps=2.0)

    def __rtruediv__(self, o):
        return self._lift(o) / self

    def sqrt(self) -> "Bound":
        if np.any(self.value < 0):
            raise ValueError("Bound.sqrt: a negative value")
        r = np.sqrt(self.value)
        low = np.maximum(self.value - self.err, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            lin = np.where(low > 0, self.err / (2 * np.sqrt(np.where(low > 0, low, 1.0))), np.inf)
        return self._rounded(r, np.minimum(np.sqrt(self.err), lin), ulps=2.0)

    def clamp(self, lo: float, hi: float) -> "Bound":
        return Bound(np.clip(self.value, lo, hi), self.err)

    def to_half(self) -> "Bound":
        """Rounded to float16 (u = 2⁻¹¹; 2⁻²⁵ absolute below its normal range)."""
        return Bound(self.value, self.err + 2.0 ** -11 * (np.abs(self.value) + self.err) + 2.0 ** -25)

    def where(self, cond, other) -> "Bound":
        """Element-wise choice between two bounded values (an exact, data-independent mask)."""
        other = self._lift(other)
        c = _f64(cond).astype(bool)
        return Bound(np.where(c, self.value, other.value), np.where(c, self.err, other.err))

    # ---- checks ---------------------------------------------------------------------------
    def excess(self, got) -> float:
        """max(|got − exact| − bound) over the elements: ≤ 0 when ``got`` keeps the bound."""
        g = _f64(got)
        if g.shape != self.value.shape:
            raise ValueError(f"Bound: shape {g.shape} differs from the expression's {self.value.shape}")
        # a float64 rounding allowance for the exact value itself: 2⁻⁵⁰ of the magnitude
        slack = 2.0 ** -50 * (np.abs(self.value) + 1e-300)
        return float(np.max(np.abs(g - self.value) - self.err - slack)) if g.size else 0.0

    def check(self, got, what: str = "result") -> None:
        """Raise AssertionError naming ``what`` when ``got`` leaves the bound anywhere."""
        g = _f64(got)
        ex = self.excess(g)
        if not ex <= 0:
            i = np.unravel_index(int(np.argmax(np.abs(g - self.value) - self.err)), g.shape)
            raise AssertionError(f"{what}: {g[i]!r} is {abs(g[i] - self.value[i]):.3g} from the exact "
                                 f"{self.value[i]!r} at {tuple(int(v) for v in i)}; the float32 bound there is "
                                 f"{self.err[i]:.3g}")


def decisions_agree(got, want, values, threshold: float, tol: float) -> bool:
    """Two implementations' thresholded decisions (labels, masks) agree wherever the reference's
    value lies farther than ``tol`` from the threshold; at a value within ``tol`` of it (the
    implementations' stated float tolerance), either decision is right."""
    g, w, v = (np.asarray(_f64(a)) for a in (got, want, values))
    if g.shape != w.shape or w.shape != v.shape:
        raise ValueError(f"decisions_agree: shapes {g.shape}, {w.shape}, {v.shape} differ")
    far = ~(np.abs(v - float(threshold)) <= tol)
    return bool(np.array_equal(g[far], w[far]))
