"""The compiled kernels (ops.* with impl="csrc") against their PyTorch references.

Random shapes, label maps, schedules and pool factors; fp32 and fp16 network
buffers; CPU always, CUDA when a GPU and a CUDA build are present. Both sides
get identical inputs, so the outputs must agree to float rounding.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from drdc_trt.methods.drdc import ops
from drdc_trt.float_bounds import Bound
from drdc_trt.schedule import Schedule
from drdc_trt.methods.drdc.masks import grid_labels

from drdc_trt import _C  # a required part of the package: missing is a failure, not a skip


def _cuda_ready() -> tuple[bool, str]:
    if not torch.cuda.is_available():
        return False, "needs a CUDA GPU (torch.cuda.is_available() is False)"
    if not _C.build_info["cuda"]:
        return False, "drdc_trt._C was built without CUDA"
    return True, ""


_ok, _why = _cuda_ready()
if os.environ.get("DRDC_REQUIRE_CUDA") == "1" and not _ok:  # set by scripts/gpu_check.sh
    raise RuntimeError(f"DRDC_REQUIRE_CUDA=1 but the CUDA cases cannot run: {_why}")
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not _ok, reason=_why or "n/a")]),
]
NET_DTYPES = [pytest.param(torch.float32, id="fp32"), pytest.param(torch.float16, id="fp16")]
SCHEDULE = Schedule.linear()

# The kernels and the references evaluate the same formulas with other float32 code (compiled
# loops vs ATen's kernels: FMA contraction, a reciprocal for a scalar divisor, vector widths differ
# by CPU), so no bits are promised between them: on the CPU each must lie within the float32 bound
# of the exact value (drdc_trt.float_bounds, op by op; `_exact_prepare` / `_exact_step`). On CUDA
# the same tolerances as before: a float ulp (fp16: half an ulp of the half). The heat and the fused
# maps sum in another order than avg_pool2d/sum: a few ulps of their sums.
ATOL, RTOL = 2e-6, 2e-6


def _assert_elementwise(got, ref, device, exact: Bound | None = None, what: str = "result"):
    if device == "cpu":
        exact.check(got.float(), f"csrc {what}")
        exact.check(ref.float(), f"reference {what}")
    elif got.dtype == torch.float16:  # one float ulp may move the half rounding by one half ulp
        torch.testing.assert_close(got.float(), ref.float(), atol=1e-3, rtol=1e-3)
    else:
        torch.testing.assert_close(got, ref, atol=ATOL, rtol=RTOL)


def _known(labels, k, b):
    return ops.known_masks(labels, k).repeat(b, 1, 1, 1).cpu().numpy() > 0.5  # N×1×H×W, rows b-major


def _exact_prepare(d, k, a0, s0, net_dtype):
    """x_t = √ᾱ·c + √(1−ᾱ)·ε with c = x on known cells, the fill noise elsewhere (a selection:
    exact), and the network input's x_t channels rounded to net_dtype."""
    n = d["fill"].shape[0]
    xr = d["x"].cpu().repeat_interleave(n // d["x"].shape[0], dim=0)
    c = torch.where(torch.from_numpy(_known(d["labels"], k, d["x"].shape[0])), xr, d["fill"].cpu())
    xt = Bound.f32(a0) * Bound.exact(c) + Bound.f32(s0) * Bound.exact(d["eps0"])
    return xt, (xt.to_half() if net_dtype == torch.float16 else xt)


def _exact_step(d, k, eps, a, s, an, sn, clip_x0, net_dtype):
    """x̂0 = (x_t − √(1−ᾱ)·ε̂)/√ᾱ (clamped), x_t' = √ᾱ'·x + √(1−ᾱ')·ε' on known cells and
    √ᾱ'·x̂0 + √(1−ᾱ')·ε̂ elsewhere; the network input's x_t channels rounded to net_dtype."""
    n = eps.shape[0]
    e = Bound.exact(eps.float())
    x0 = (Bound.exact(d["xt"]) - Bound.f32(s) * e) / Bound.f32(a)
    if clip_x0:
        x0 = x0.clamp(-1, 1)
    xr = Bound.exact(d["x"].cpu().repeat_interleave(n // d["x"].shape[0], dim=0))
    known = np.broadcast_to(_known(d["labels"], k, d["x"].shape[0]), e.value.shape)
    xt = (Bound.f32(an) * xr + Bound.f32(sn) * Bound.exact(d["noise"])).where(known, Bound.f32(an) * x0 + Bound.f32(sn) * e)
    return xt, (xt.to_half() if net_dtype == torch.float16 else xt)


def _case(seed: int, device: str):
    """Random problem: sizes, grid specs, K, pool factors dividing every cell, a timestep pair."""
    rng = random.Random(seed)
    size = rng.choice([8, 16, 24, 32])
    cells = [g for g in (2, 4, 8, 16) if size % g == 0 and g < size]
    grids = sorted(rng.sample(cells, rng.randint(1, min(3, len(cells)))))
    k = rng.randint(1, 3)
    b = rng.randint(1, 3)
    gmin = min(grids)
    pool = sorted(rng.sample([f for f in (1, 2, 4, 8) if gmin % f == 0], rng.randint(1, 2)))
    t = rng.randint(20, 999)
    t_next = rng.choice([-1, rng.randint(0, t - 1)])
    gen = torch.Generator().manual_seed(seed)
    n = b * len(grids) * k
    x = (torch.rand(b, 3, size, size, generator=gen) * 2 - 1)
    labels = grid_labels(size, grids, k, seed=seed)
    data = {
        "x": x, "labels": labels,
        "fill": torch.randn(n, 3, size, size, generator=gen),
        "eps0": torch.randn(n, 3, size, size, generator=gen),
        "xt": torch.randn(n, 3, size, size, generator=gen),
        "eps": torch.randn(n, 3, size, size, generator=gen),
        "noise": torch.randn(n, 3, size, size, generator=gen),
        "heat": torch.rand(b, size, size, generator=gen),
    }
    data = {key: v.to(device) for key, v in data.items()}
    return data, k, pool, SCHEDULE.coefficients(t), SCHEDULE.coefficients(t_next)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("net_dtype", NET_DTYPES)
@pytest.mark.parametrize("seed", range(6))
def test_prepare_matches_reference(device, net_dtype, seed):
    d, k, _, (a0, s0), _ = _case(seed, device)
    ref_xt, ref_in = ops.reference_prepare(d["x"], d["labels"], k, d["fill"], d["eps0"], a0, s0, net_dtype)
    xt, unet_in = ops.prepare(d["x"], d["labels"], k, d["fill"], d["eps0"], a0, s0, net_dtype, impl="csrc")
    assert unet_in.dtype == net_dtype and unet_in.shape == ref_in.shape
    want_xt, want_in = _exact_prepare(d, k, a0, s0, net_dtype) if device == "cpu" else (None, None)
    _assert_elementwise(xt, ref_xt, device, want_xt, "x_t")
    _assert_elementwise(unet_in[:, :3], ref_in[:, :3], device, want_in, "network input")
    # the condition channels are copies of x / fill: identical on every device
    assert torch.equal(unet_in[:, 3:], ref_in[:, 3:])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("net_dtype", NET_DTYPES)
@pytest.mark.parametrize("clip_x0", [True, False], ids=["clip", "noclip"])
@pytest.mark.parametrize("seed", range(8))
def test_step_matches_reference(device, net_dtype, clip_x0, seed):
    d, k, pool, (a, s), (an, sn) = _case(seed, device)
    _, unet_in = ops.reference_prepare(d["x"], d["labels"], k, d["fill"], d["eps0"], 0.8, 0.6, net_dtype)
    eps = d["eps"].to(net_dtype)
    ref = ops.reference_step(d["x"], d["labels"], k, d["xt"], eps, d["noise"], unet_in.clone(), d["heat"].clone(),
                             a, s, an, sn, pool, clip_x0)
    unet_c, heat_c = unet_in.clone(), d["heat"].clone()
    xt_c, unet_out, heat_out = ops.step(d["x"], d["labels"], k, d["xt"], eps, d["noise"], unet_c, heat_c,
                                        a, s, an, sn, pool, clip_x0, impl="csrc")
    assert unet_out is unet_c and heat_out is heat_c  # updated in place
    want_xt, want_in = _exact_step(d, k, eps, a, s, an, sn, clip_x0, net_dtype) if device == "cpu" else (None, None)
    _assert_elementwise(xt_c, ref[0], device, want_xt, "x_t'")
    _assert_elementwise(unet_out[:, :3], ref[1][:, :3], device, want_in, "network input")
    assert torch.equal(unet_out[:, 3:], ref[1][:, 3:])  # the condition is left alone
    torch.testing.assert_close(heat_out, ref[2], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", ["torch", "csrc"])
def test_step_heat_only_on_unknown_cells(device, impl):
    """The heat and the unknown part of x_t' depend on ε̂ in the unknown cells of each row only:
    a huge change of ε̂ inside the known cells leaves them bit for bit as they were, while a
    small change inside the unknown cells moves the heat at every pixel (each pixel is unknown
    in one row of every spec). ε̂ is arbitrary, not the true noise, so the heat is far from 0."""
    d, k, pool, (a, s), (an, sn) = _case(3, device)
    m = ops.known_masks(d["labels"], k).repeat(d["x"].shape[0], 1, 1, 1)  # N×1×H×W, 1 = known
    _, unet_in = ops.reference_prepare(d["x"], d["labels"], k, d["fill"], d["eps0"], a, s)

    def run(eps):
        return ops.step(d["x"], d["labels"], k, d["xt"], eps.contiguous(), d["noise"], unet_in.clone(),
                        torch.zeros_like(d["heat"]), a, s, an, sn, pool, False, impl=impl)

    xt0, _, heat0 = run(d["eps"])
    assert heat0.min().item() > 0.05  # every pixel gets a real term
    xt1, _, heat1 = run(d["eps"] + 1e3 * m)  # known cells only
    assert torch.equal(heat1, heat0)
    assert torch.equal(xt1 * (1 - m), xt0 * (1 - m))
    xt2, _, heat2 = run(d["eps"] + 0.5 * (1 - m))  # unknown cells only
    assert bool(((heat2 - heat0).abs() > 1e-4).all())
    assert torch.equal(xt2 * m, xt0 * m)  # the known cells never see ε̂


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(8))
def test_fuse_matches_reference(device, seed):
    rng = random.Random(100 + seed)
    b = rng.randint(1, 3)
    size = rng.choice([16, 28, 32, 56])
    low = rng.choice([2, 4, 7, size // 4])
    gen = torch.Generator().manual_seed(seed)
    heat = (torch.rand(b, size, size, generator=gen) * 20).to(device)
    base = torch.rand(b, low, low, generator=gen).to(device)
    count = rng.randint(1, 40)
    mf = rng.choice([1, 3, 5, 7])
    window = rng.randint(1, size // 2)
    stats = (rng.uniform(0, 1), rng.uniform(0.5, 2), rng.uniform(0, 1), rng.uniform(0.5, 2))
    lam = rng.choice([0.0, 0.5, 0.9, 1.0])
    ref = ops.reference_fuse(heat, count, base, mf, stats, lam, window)
    got = ops.fuse(heat, count, base, mf, stats, lam, window, impl="csrc")
    names = ("final", "diff_map", "base_up", "score")
    for name, r, g in zip(names, ref, got):
        assert g.shape == r.shape, name
        torch.testing.assert_close(g, r, atol=2e-5, rtol=2e-5, msg=lambda m, n=name: f"{n}: {m}")


def test_fuse_nonsquare_base():
    """Bilinear up-sampling follows F.interpolate for h != w too (direct _C call)."""
    heat = torch.rand(2, 24, 40)
    base = torch.rand(2, 3, 5)
    ref_up = torch.nn.functional.interpolate(base.unsqueeze(1), size=(24, 40), mode="bilinear",
                                             align_corners=False).squeeze(1)
    out = [torch.empty(2, 24, 40) for _ in range(3)]
    score = torch.empty(2)
    _C.fuse(device="cpu", heat=heat.data_ptr(), base=base.data_ptr(), final=out[0].data_ptr(),
            diff_map=out[1].data_ptr(), base_up=out[2].data_ptr(), score=score.data_ptr(), B=2, H=24, W=40, h=3,
            w=5, inv_count=1.0, mean_filter=1, mu_d=0.0, sd_d=1.0, mu_b=0.0, sd_b=1.0, lam=0.0, score_window=3)
    torch.testing.assert_close(out[2], ref_up, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out[1], heat)
    ref_score = torch.nn.functional.avg_pool2d(ref_up.unsqueeze(1), 3, stride=1).amax(dim=(1, 2, 3))
    torch.testing.assert_close(score, ref_score, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_cpu_kernels_independent_of_thread_count(threads):
    """Each thread count gives the one-thread answer bit for bit where element-wise (the same
    compiled code), and the PyTorch reference's within float rounding, on a problem large enough
    that every kernel splits its work over all the threads."""
    torch.manual_seed(5)
    b, size, grids, k, pool = 3, 32, (4, 8), 2, (1, 2)
    n = b * len(grids) * k
    x = torch.rand(b, 3, size, size) * 2 - 1
    labels = grid_labels(size, grids, k, seed=5)
    fill, eps0, eps, noise = (torch.randn(n, 3, size, size) for _ in range(4))
    heat = torch.rand(b, size, size)
    (a, s), (an, sn) = SCHEDULE.coefficients(200), SCHEDULE.coefficients(150)
    ref_xt, ref_in = ops.reference_prepare(x, labels, k, fill, eps0, a, s)
    ref_step = ops.reference_step(x, labels, k, ref_xt, eps, noise, ref_in.clone(), heat.clone(), a, s, an, sn, pool)
    base = torch.rand(b, 4, 4)
    ref_fuse = ops.reference_fuse(ref_step[2], 6, base, 3, (0.2, 0.9, 0.1, 1.1), 0.7, 4)
    before = _C.num_threads()

    def run(n):
        try:
            _C.set_num_threads(n)
            assert _C.num_threads() == n
            xt, unet_in = ops.prepare(x, labels, k, fill, eps0, a, s, impl="csrc")
            out = ops.step(x, labels, k, xt, eps, noise, unet_in.clone(), heat.clone(), a, s, an, sn, pool,
                           impl="csrc")  # updates its unet_in in place: a copy
            fused = ops.fuse(out[2], 6, base, 3, (0.2, 0.9, 0.1, 1.1), 0.7, 4, impl="csrc")
        finally:
            _C.set_num_threads(before)
        return xt, unet_in, out, fused

    xt, unet_in, out, fused = run(threads)
    one = run(1)
    assert torch.equal(xt, one[0]) and torch.equal(unet_in, one[1])
    assert torch.equal(out[0], one[2][0]) and torch.equal(out[1], one[2][1])
    for t, r, what in ((xt, ref_xt, "x_t"), (unet_in, ref_in, "network input"), (out[0], ref_step[0], "x_t'"),
                       (out[1], ref_step[1], "network input after the step")):
        torch.testing.assert_close(t, r, atol=ATOL, rtol=RTOL, msg=lambda m, w=what: f"{w}: {m}")
    torch.testing.assert_close(out[2], ref_step[2], atol=1e-5, rtol=1e-5)
    for g, r in zip(fused, ref_fuse):
        torch.testing.assert_close(g, r, atol=2e-5, rtol=2e-5)
