"""Run on two processes by test_distributed.py (torchrun, gloo on the CPU): drdc_trt.distributed's
parts against what one process computes. An assertion error fails the rank, and torchrun the job;
rank 0 writes ``OUT/ok`` when every check passed on both ranks.

Usage: torchrun --standalone --nproc-per-node 2 ddp_checks.py OUT
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from drdc_trt import distributed


@dataclass
class Part:
    rows: torch.Tensor
    flags: torch.Tensor
    count: int


def check_rows(w: int, r: int) -> None:
    """Every row of a global batch belongs to exactly one rank; the weighted per-rank means average
    to the global mean (float64: exact up to one rounding), for even, uneven and too-small batches."""
    for n in (1, 2, 5, 8):
        rows, share = distributed.my_rows(n)
        values = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
        mine = values[rows].mean() * share
        seen = distributed._gather_objects((rows.start, rows.stop, share, float(mine)))
        covered = sorted(i for lo, hi, s, _ in seen if s > 0 for i in range(lo, hi))
        assert covered == list(range(n)), (n, seen)
        assert abs(sum(m for *_, m in seen) / w - float(values.mean())) <= 1e-15, (n, seen)
        assert distributed.average(mine) == sum(m for *_, m in seen) / w
    assert distributed.take_rows(Part(torch.arange(6), torch.ones(6, dtype=torch.bool), 3), slice(2, 4)).rows.tolist() == [2, 3]


def check_split_pass(w: int, r: int) -> None:
    """The ranks' parts of a pass joined in order equal the pass in one process: tensors (padded
    all-gather), a dataclass with a bool tensor and an int, tuples; a rank without a chunk."""
    items = torch.arange(7.0)
    calls = []

    def run(x):
        calls.append(x.tolist())
        return x * 2

    assert torch.equal(distributed.split_pass(run, items, 3), items * 2)
    assert calls == ([[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]] if r == 0 else [[6.0]])  # whole chunks of 3
    out = distributed.split_pass(lambda x: Part(x + 1, x > 2, 7), items, 2)
    assert torch.equal(out.rows, items + 1) and torch.equal(out.flags, items > 2) and out.count == 7
    small = distributed.split_pass(lambda x: (x, x.sum()[None]), torch.arange(2.0), 4)  # rank 1: no chunk
    assert torch.equal(small[0], torch.arange(2.0)) and small[1].tolist() == [1.0]
    flags = distributed.split_pass(lambda x: x > 3, items, 1)
    assert flags.dtype == torch.bool and torch.equal(flags, items > 3)


def check_sync_batch_norm(w: int, r: int) -> None:
    """Batch norm inside a data-parallel module trains on the global batch's statistics: outputs,
    input gradients, averaged weight gradients and running statistics against one BatchNorm2d on
    the whole batch in float64, within 64 float32 ulps of the values' scale (a few roundings in
    the normalisation and its backward; local statistics would be off by tens of percent)."""
    g = torch.Generator().manual_seed(0)
    x_all = torch.randn(6, 3, 4, 4, generator=g) * 3 + 1
    c_all = torch.randn(6, 3, 4, 4, generator=g)
    ref = nn.BatchNorm2d(3).double()
    with torch.no_grad():
        ref.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        ref.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    xr = x_all.double().requires_grad_()
    y_ref = ref(xr)
    (y_ref * c_all.double()).sum().backward()

    net = nn.Sequential(nn.BatchNorm2d(3))
    with torch.no_grad():
        net[0].weight.copy_(ref.weight.float())
        net[0].bias.copy_(ref.bias.float())
    step = distributed.data_parallel(net)
    assert type(net[0]) is distributed.CPUSyncBatchNorm2d
    rows, _ = distributed.my_rows(6)
    x = x_all[rows].clone().requires_grad_()
    y = step(x)
    (y * c_all[rows]).sum().mul(w).backward()  # DDP averages: w × this rank's part of the sum

    def close(a, b, what):
        tol = 64 * 2.0 ** -24 * float(b.abs().max())
        assert float((a.double() - b).abs().max()) <= tol, (what, float((a.double() - b).abs().max()), tol)

    close(y.detach(), y_ref[rows].detach(), "output")
    close(x.grad / w, xr.grad[rows], "input gradient")  # the all-reduce's backward sums every rank's
    close(net[0].weight.grad, ref.weight.grad, "weight gradient")
    close(net[0].bias.grad, ref.bias.grad, "bias gradient")
    close(net[0].running_mean, ref.running_mean, "running mean")
    close(net[0].running_var, ref.running_var, "running var")
    net.eval()
    close(net(x_all[rows]).detach(), ref.eval()(x_all.double())[rows].detach(), "eval output")


def check_agreement(w: int, r: int) -> None:
    same = {"a": torch.arange(4.0)}
    distributed.check_identical(same, "weights")
    try:
        distributed.check_identical({"a": torch.arange(4.0) + r}, "weights")
    except RuntimeError as e:
        assert "differ between rank 0 and rank(s) [1]" in str(e), e
    else:
        raise AssertionError("different weights on the ranks passed")
    distributed.same_on_all({"unet_iter": 4}, "snapshots")
    try:
        distributed.same_on_all({"unet_iter": 4 + r}, "snapshots")
    except ValueError as e:
        assert "different snapshots" in str(e), e
    else:
        raise AssertionError("different snapshots passed")


def check_global_batch_refused(data: str) -> None:
    from drdc_trt.config import preset
    from drdc_trt.train import train

    try:
        train(data, Path(data) / "never", preset("tiny").replace(**{"train.batch_size": 1}), progress=False)
    except ValueError as e:
        assert "train.batch_size=1 is the global batch; 2 processes" in str(e), e
    else:
        raise AssertionError("a global batch of 1 row on 2 processes was accepted")


def main() -> None:
    out = Path(sys.argv[1])
    with distributed.session("cpu"):
        w, r = distributed.world(), distributed.rank()
        assert w == 2 and distributed.is_main() == (r == 0)
        check_rows(w, r)
        check_split_pass(w, r)
        check_sync_batch_norm(w, r)
        check_agreement(w, r)
        check_global_batch_refused(str(out))
        distributed.barrier()
        if r == 0:
            (out / "ok").write_text("ok")


if __name__ == "__main__":
    main()
