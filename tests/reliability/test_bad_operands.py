"""Bad operands of the fused ops (``drdc_trt.methods.drdc.ops`` and ``_C`` directly) are refused clearly.

Rows of the bad-input table (bad_inputs.py: the contract, the row type, the table's test).
"""

from __future__ import annotations

import torch

from bad_inputs import Case, refusal_test, registrar
from drdc_trt import _C
from drdc_trt.methods.drdc import ops
from drdc_trt.methods.drdc.masks import grid_labels

CASES: list[Case] = []
case = registrar(CASES)


# --------------------------------------------------------------------------- builders
def _loop_problem(b=1, size=8, k=2):
    labels = grid_labels(size, (4,), k, seed=0)
    n = b * labels.shape[0] * k
    g = torch.Generator().manual_seed(0)
    return dict(x=torch.rand(b, 3, size, size, generator=g) * 2 - 1, labels=labels, k=k,
                fill=torch.randn(n, 3, size, size, generator=g), eps0=torch.randn(n, 3, size, size, generator=g),
                xt=torch.randn(n, 3, size, size, generator=g), eps=torch.randn(n, 3, size, size, generator=g),
                noise=torch.randn(n, 3, size, size, generator=g), unet_in=torch.zeros(n, 6, size, size),
                heat=torch.zeros(b, size, size))


def _step(p: dict, **over):
    a = {**p, **over}
    return ops.step(a["x"], a["labels"], a["k"], a["xt"], a["eps"], a["noise"], a["unet_in"], a["heat"],
                    0.8, 0.6, 0.9, 0.43, [1, 2], impl="csrc")


def _prepare(p: dict, **over):
    a = {**p, **over}
    return ops.prepare(a["x"], a["labels"], a["k"], a["fill"], a["eps0"], 0.8, 0.6, impl="csrc")


def _with_label(labels: torch.Tensor, value: int) -> torch.Tensor:
    out = labels.clone()
    out[-1, 6, 3] = value
    return out


# --------------------------------------------------------------------------- fused ops (drdc_trt.ops, _C)
# (tests/unit/test_csrc_errors.py covers dtypes, contiguity, devices, pool factors, null pointers,
# aliasing and the refiner's own checks; these are the arguments it does not)
@case("op-step-label-above-range", ValueError, "labels", "value 2", "K=2")
def _(env):
    p = _loop_problem()
    _step(p, labels=_with_label(p["labels"], 2))


@case("op-prepare-label-negative", ValueError, "labels", "value -1", "[0, 6, 3]")
def _(env):
    p = _loop_problem()
    _prepare(p, labels=_with_label(p["labels"], -1))


@case("op-direct-C-label-out-of-range", ValueError, "labels", "value 9")
def _(env):
    p = _loop_problem()
    lab = _with_label(p["labels"], 9)
    xt, unet_in = torch.empty_like(p["xt"]), torch.empty_like(p["unet_in"])
    _C.prepare(device="cpu", x=p["x"].data_ptr(), labels=lab.data_ptr(), fill_noise=p["fill"].data_ptr(),
               eps0=p["eps0"].data_ptr(), xt=xt.data_ptr(), unet_in=unet_in.data_ptr(),
               B=1, J=1, K=2, H=8, W=8, sqrt_ab=0.8, sqrt_1mab=0.6)


@case("op-prepare-zero-sets", ValueError, "num_sets", "0")
def _(env):
    _prepare(_loop_problem(), k=0)


@case("op-step-negative-sets", ValueError, "num_sets", "-2")
def _(env):
    _step(_loop_problem(), k=-2)


@case("op-fuse-zero-count", ValueError, "count", "0")
def _(env):
    ops.fuse(torch.zeros(1, 8, 8), 0, torch.rand(1, 2, 2), 3, (0, 1, 0, 1), 0.9, 2, impl="csrc")


@case("op-fuse-negative-count", ValueError, "count", "-4")
def _(env):
    ops.fuse(torch.zeros(1, 8, 8), -4, torch.rand(1, 2, 2), 3, (0, 1, 0, 1), 0.9, 2, impl="csrc")


@case("op-direct-C-fuse-zero-batch", ValueError, "B=0")
def _(env):
    t = torch.zeros(1, 8, 8)
    _C.fuse(device="cpu", heat=t.data_ptr(), base=t.data_ptr(), final=t.data_ptr(), diff_map=t.data_ptr(),
            base_up=t.data_ptr(), score=t.data_ptr(), B=0, H=8, W=8, h=2, w=2, inv_count=0.25, mean_filter=3,
            mu_d=0.0, sd_d=1.0, mu_b=0.0, sd_b=1.0, lam=0.9, score_window=2)


@case("op-step-heat-batch-mismatch", ValueError, "heat", "(2, 8, 8)", "(1, 8, 8)")
def _(env):
    _step(_loop_problem(), heat=torch.zeros(2, 8, 8))


@case("op-fuse-base-batch-mismatch", ValueError, "base", "(3, 2, 2)", "(1, 2, 2)")
def _(env):
    ops.fuse(torch.zeros(1, 8, 8), 4, torch.rand(3, 2, 2), 3, (0, 1, 0, 1), 0.9, 2, impl="csrc")


@case("op-prepare-labels-size-mismatch", ValueError, "labels", "(2, 4, 4)", "(2, 8, 8)")
def _(env):
    _prepare(_loop_problem(), labels=grid_labels(4, (2,), 2, seed=0).repeat(2, 1, 1))


@case("op-refiner-zero-batch", ValueError, "batch must be >= 1")
def _(env):
    _C.Refiner(_C.PythonRunner(lambda *a: None, device="cpu"), device="cpu", batch=0, height=8, width=8,
               num_sets=2, t0=50, num_steps=2, pool_factors=[1], labels=grid_labels(8, (4,), 2, seed=0).numpy())


@case("op-refiner-zero-steps", ValueError, "num_steps=0")
def _(env):
    _C.Refiner(_C.PythonRunner(lambda *a: None, device="cpu"), device="cpu", batch=1, height=8, width=8,
               num_sets=2, t0=50, num_steps=0, pool_factors=[1], labels=grid_labels(8, (4,), 2, seed=0).numpy())


@case("op-grid-labels-cell-does-not-divide", ValueError, "cell size 3", "image size 8")
def _(env):
    _C.grid_labels(8, [3], 2)


# --------------------------------------------------------------------------- the table
test_bad_input_is_refused_clearly = refusal_test(CASES)
