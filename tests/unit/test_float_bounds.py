"""drdc_trt.float_bounds against known answers: hand cases at the rounding boundary, float32
evaluations (numpy, PyTorch, with and without FMA) inside the bound, a value just outside refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drdc_trt.float_bounds import U, Bound


def test_one_rounding_is_inside_and_the_bound_is_that_rounding():
    # 1 + 2⁻²⁵ rounds to 1 in float32 (ties to even): the error 2⁻²⁵ is within u·|1 + 2⁻²⁵|
    s = Bound.exact(np.float32(1)) + Bound.exact(np.float32(2.0 ** -25))
    assert s.value == 1 + 2.0 ** -25
    assert float(s.err) == pytest.approx(U * (1 + 2.0 ** -25))
    s.check(np.float32(1) + np.float32(2.0 ** -25))
    # 1 − 2⁻²³ is two ulps (of 1) below; this is outside
    with pytest.raises(AssertionError, match="float32 bound there"):
        s.check(np.float32(1) - np.float32(2.0 ** -23))


def test_products_quotients_and_roots_hold_float32_evaluations():
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(4096).astype(np.float32) * 3 for _ in range(3))
    c = np.where(np.abs(c) < 0.1, np.float32(0.5), c).astype(np.float32)
    ab = Bound.exact(np.float32(0.37))
    want = (Bound.exact(a) * ab.sqrt() - Bound.exact(b) * (1 - ab).sqrt()) / Bound.exact(c)
    s, sm = np.sqrt(np.float32(0.37)), np.sqrt(np.float32(1) - np.float32(0.37))
    want.check((a * s - b * sm) / c, "numpy")
    want.check((a * s - b * sm) * (np.float32(1) / c), "reciprocal")
    fused = (np.float64(a) * np.float64(s) - np.float64(np.float32(b * sm))).astype(np.float32)  # one FMA
    want.check(fused / c, "fma")
    ta, tb, tc = (torch.from_numpy(v) for v in (a, b, c))
    t = torch.tensor(0.37)
    want.check((ta * t.sqrt() - tb * (1 - t).sqrt()) / tc, "torch")
    # a coefficient off by 1e-5 relative leaves the bound
    assert want.excess((a * np.float32(s * (1 + 1e-5)) - b * sm) / c) > 0


def test_clamp_keeps_the_error_and_refusals_name_the_problem():
    x = Bound.exact(np.float32([2.0, 0.5, -3.0])) * Bound.f32(0.7)
    got = np.clip(np.float32([2.0, 0.5, -3.0]) * np.float32(0.7), -1, 1)
    x.clamp(-1, 1).check(got)
    with pytest.raises(ValueError, match="divisor"):
        Bound.exact(np.float32(1)) / Bound(np.float64(1e-9), 1e-8)
    with pytest.raises(ValueError, match="negative"):
        Bound.exact(np.float32(-1)).sqrt()
    with pytest.raises(ValueError, match="shape"):
        x.check(np.zeros(2, np.float32))


def test_cosine_distance_floor_holds_the_rounding_of_identical_vectors():
    """(2C + 4)·u: 84 u at C = 40. 1 − cos of a float32 vector with itself (normalised and multiplied
    in float32 by torch, as the nearest-patch distance does) stays within it, for C up to 160."""
    from drdc_trt.float_bounds import cosine_distance_floor

    assert cosine_distance_floor(40) == 84 * U
    g = torch.Generator().manual_seed(0)
    for c in (16, 40, 112, 160):
        v = torch.randn(64, c, 49, generator=g) * torch.rand(64, 1, 1, generator=g) * 100
        q = torch.nn.functional.normalize(v, dim=1, eps=1e-12)
        d = 1 - torch.bmm(q.transpose(1, 2), q).diagonal(dim1=1, dim2=2)
        assert float(d.abs().max()) <= cosine_distance_floor(c), c
        assert cosine_distance_floor(c) < 2e-5  # far below any distance that means a difference
