"""The fused loop ops (prepare, step, fuse): compiled kernel vs its PyTorch reference.

One group per op; in each, ``impl=torch`` (drdc_trt.ops.reference_*) and
``impl=csrc`` (drdc_trt._C through drdc_trt.ops) on the same inputs — a small
hot-loop shape: B=2 images × 2 grid specs × 2 sets = 8 rows of 64², pool
factors (1, 2). Each case first checks its output against the formulas of
DESIGN §1.3–1.4 written out below (per row, with convolutions instead of
pooling), so neither implementation is checked against itself.

    pytest benchmarks/test_bench_ops.py --benchmark-only -p no:cacheprovider -o addopts=""
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from drdc_trt.methods.drdc import ops
from drdc_trt.schedule import Schedule
from drdc_trt.methods.drdc.masks import grid_labels

B, S, GRIDS, K, POOL = 2, 64, (8, 16), 2, (1, 2)
N = B * len(GRIDS) * K
IMPLS = ("torch", "csrc")


@pytest.fixture(scope="module")
def d(device):
    g = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(device)

    sched = Schedule.linear()
    return {
        "device": device,
        "x": (torch.rand(B, 3, S, S, generator=g) * 2 - 1).to(device),
        "labels": grid_labels(S, GRIDS, K, seed=0).to(device),
        "fill": randn(N, 3, S, S), "eps0": randn(N, 3, S, S), "xt": randn(N, 3, S, S),
        "eps": randn(N, 3, S, S), "noise": randn(N, 3, S, S),
        "heat": torch.rand(B, S, S, generator=g).to(device),
        "base": torch.rand(B, S // 16, S // 16, generator=g).to(device),
        "t": sched.coefficients(250), "t_next": sched.coefficients(225),
    }


@pytest.fixture(params=IMPLS)
def impl(request):
    if request.param == "csrc":
        request.getfixturevalue("need_csrc")
    return request.param


def _synced(fn, device):
    def run(*args):
        out = fn(*args)
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    return run


def _close(got, ref):
    for a, b in zip(got, ref):
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- the formulas, row by row
def _rows(d):
    """(row index n, image b, known mask M of row (j, k)) for n = (b·J + j)·K + k."""
    for b in range(B):
        for j in range(len(GRIDS)):
            for k in range(K):
                yield (b * len(GRIDS) + j) * K + k, b, (d["labels"][j] != k).float()


def _expected_prepare(d, a, s):
    c = torch.empty_like(d["fill"])
    for n, b, m in _rows(d):
        c[n] = m * d["x"][b] + (1 - m) * d["fill"][n]
    xt = a * c + s * d["eps0"]
    return xt, torch.cat([xt, c], 1)


def _block_norm(v, f):
    """‖mean of v (3×S×S) over each f×f block‖₂, repeated over the block."""
    mean = F.conv2d(v.unsqueeze(1), torch.full((1, 1, f, f), 1.0 / (f * f), device=v.device), stride=f)
    norm = mean.squeeze(1).pow(2).sum(0).sqrt()
    return norm.repeat_interleave(f, 0).repeat_interleave(f, 1)


def _expected_step(d, unet_in, a, s, an, sn):
    xt_next = torch.empty_like(d["xt"])
    heat = d["heat"].clone()
    for n, b, m in _rows(d):
        x0 = ((d["xt"][n] - s * d["eps"][n]) / a).clamp(-1, 1)
        xt_next[n] = m * (an * d["x"][b] + sn * d["noise"][n]) + (1 - m) * (an * x0 + sn * d["eps"][n])
        heat[b] += (1 - m) * sum(_block_norm(d["x"][b] - x0, f) for f in POOL)
    return xt_next, torch.cat([xt_next, unet_in[:, 3:]], 1), heat


def _bilinear_taps(src: int, dst: int, device):
    """align_corners=False: sample at (i + ½)·src/dst − ½, clamped at 0."""
    pos = ((torch.arange(dst, dtype=torch.float64) + 0.5) * src / dst - 0.5).clamp(min=0)
    i0 = pos.floor().long().clamp(max=src - 1)
    i1 = (i0 + 1).clamp(max=src - 1)
    w1 = (pos - i0).float()
    return i0.to(device), i1.to(device), w1.to(device)


def _expected_fuse(d, count, mf, stats, lam, window):
    mu_d, sd_d, mu_b, sd_b = stats
    ones = torch.ones(1, 1, mf, mf, device=d["heat"].device)
    h = (d["heat"] / count).unsqueeze(1)
    hd = (F.conv2d(h, ones, padding=mf // 2) / F.conv2d(torch.ones_like(h), ones, padding=mf // 2)).squeeze(1)
    i0, i1, w1 = _bilinear_taps(d["base"].shape[-1], S, d["base"].device)
    rows = d["base"][:, i0] * (1 - w1)[:, None] + d["base"][:, i1] * w1[:, None]
    hb = rows[:, :, i0] * (1 - w1) + rows[:, :, i1] * w1
    final = lam * (hd - mu_d) / sd_d + (1 - lam) * (hb - mu_b) / sd_b
    box = F.conv2d(final.unsqueeze(1), torch.full((1, 1, window, window), 1.0 / window ** 2, device=final.device))
    return final, hd, hb, box.flatten(1).amax(1)


def test_prepare(benchmark, d, impl):
    benchmark.group = f"prepare N={N} {S}x{S} {d['device']}"
    a, s = d["t"]
    run = _synced(lambda: ops.prepare(d["x"], d["labels"], K, d["fill"], d["eps0"], a, s, impl=impl), d["device"])
    _close(run(), _expected_prepare(d, a, s))
    benchmark(run)


def test_step(benchmark, d, impl):
    benchmark.group = f"step N={N} {S}x{S} {d['device']}"
    (a, s), (an, sn) = d["t"], d["t_next"]
    _, unet_in = ops.reference_prepare(d["x"], d["labels"], K, d["fill"], d["eps0"], a, s)
    run = _synced(lambda u, h: ops.step(d["x"], d["labels"], K, d["xt"], d["eps"], d["noise"], u, h,
                                        a, s, an, sn, POOL, impl=impl), d["device"])
    # csrc updates unet_in and heat in place: run on fresh copies
    _close(run(unet_in.clone(), d["heat"].clone()), _expected_step(d, unet_in, a, s, an, sn))
    benchmark(run, unet_in.clone(), d["heat"].clone())


def test_fuse(benchmark, d, impl):
    benchmark.group = f"fuse B={B} {S}x{S} {d['device']}"
    stats = (0.1, 0.5, 0.2, 0.7)
    run = _synced(lambda: ops.fuse(d["heat"], 12, d["base"], 5, stats, 0.9, 5, impl=impl), d["device"])
    _close(run(), _expected_fuse(d, 12, 5, stats, 0.9, 5))
    benchmark(run)
