"""The fused loop ops (prepare, step, fuse): compiled kernel vs its PyTorch reference.

One group per op; in each, ``impl=torch`` (drdc_trt.ops.reference_*) and
``impl=csrc`` (drdc_trt._C through drdc_trt.ops) on the same inputs — a small
hot-loop shape: B=2 images × 2 grid specs × 2 sets = 8 rows of 64², pool
factors (1, 2). Each case first checks that the two agree.

    pytest benchmarks/test_bench_ops.py --benchmark-only -p no:cacheprovider -o addopts=""
"""

from __future__ import annotations

import pytest
import torch

from drdc_trt import ops
from drdc_trt.diffusion import Schedule, grid_labels

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


def test_prepare(benchmark, d, impl):
    benchmark.group = f"prepare N={N} {S}x{S} {d['device']}"
    a, s = d["t"]
    run = _synced(lambda: ops.prepare(d["x"], d["labels"], K, d["fill"], d["eps0"], a, s, impl=impl), d["device"])
    _close(run(), ops.prepare(d["x"], d["labels"], K, d["fill"], d["eps0"], a, s, impl="torch"))
    benchmark(run)


def test_step(benchmark, d, impl):
    benchmark.group = f"step N={N} {S}x{S} {d['device']}"
    (a, s), (an, sn) = d["t"], d["t_next"]
    _, unet_in = ops.reference_prepare(d["x"], d["labels"], K, d["fill"], d["eps0"], a, s)
    run = _synced(lambda u, h: ops.step(d["x"], d["labels"], K, d["xt"], d["eps"], d["noise"], u, h,
                                        a, s, an, sn, POOL, impl=impl), d["device"])
    # csrc updates unet_in and heat in place: compare on fresh copies
    ref = ops.step(d["x"], d["labels"], K, d["xt"], d["eps"], d["noise"], unet_in.clone(), d["heat"].clone(),
                   a, s, an, sn, POOL, impl="torch")
    _close(run(unet_in.clone(), d["heat"].clone()), ref)
    benchmark(run, unet_in.clone(), d["heat"].clone())


def test_fuse(benchmark, d, impl):
    benchmark.group = f"fuse B={B} {S}x{S} {d['device']}"
    stats = (0.1, 0.5, 0.2, 0.7)
    run = _synced(lambda: ops.fuse(d["heat"], 12, d["base"], 5, stats, 0.9, 5, impl=impl), d["device"])
    _close(run(), ops.fuse(d["heat"], 12, d["base"], 5, stats, 0.9, 5, impl="torch"))
    benchmark(run)
