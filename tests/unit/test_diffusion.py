"""Known answers of the schedule, the grid masks and the DDIM inpainting loop."""

import math

import pytest
import torch

from drdc_trt.methods.drdc import ops
from drdc_trt.methods.drdc.inpaint import LoopNoise, inpaint_heat
from drdc_trt.schedule import Schedule, ddim_timesteps, min_snr_weight
from drdc_trt.methods.drdc.masks import cell_sets, grid_labels
from drdc_trt.methods.drdc.masks import random_known_masks


def test_linear_schedule_hand_values():
    s = Schedule.linear(1000, 1e-4, 0.02)
    beta1 = 1e-4 + (0.02 - 1e-4) / 999
    assert s.alpha_bar(0) == pytest.approx(1 - 1e-4, abs=1e-15)
    assert s.alpha_bar(1) == pytest.approx((1 - 1e-4) * (1 - beta1), abs=1e-15)
    assert s.alpha_bar(-1) == 1.0
    a, b = s.coefficients(250)
    assert a * a + b * b == pytest.approx(1.0, abs=1e-12)


def test_min_snr_weight_hand_values():
    import numpy as np

    # SNR = ᾱ/(1−ᾱ): ᾱ = 0.99 → 99, 0.8 → 4, 0.5 → 1, 5/6 → 5 (exactly γ)
    ab = np.array([0.99, 0.8, 0.5, 5 / 6])
    np.testing.assert_allclose(min_snr_weight(ab, 5.0), [5 / 99, 1.0, 1.0, 1.0], rtol=1e-12)
    np.testing.assert_array_equal(min_snr_weight(ab, 0.0), np.ones(4))
    # on the linear schedule the weight only ever lowers the near-clean end, monotonically
    w = min_snr_weight(Schedule.linear().alphas_cumprod, 5.0)
    assert w[0] < 1e-3 and np.all(np.diff(w) >= 0) and w[-1] == 1.0


def test_ddim_timesteps():
    assert ddim_timesteps(250, 10) == [250, 225, 200, 175, 150, 125, 100, 75, 50, 25]
    assert ddim_timesteps(100, 3) == [100, 66, 33]
    with pytest.raises(ValueError):
        ddim_timesteps(10, 11)


@pytest.mark.parametrize("size,grids,k", [(32, (4, 8), 2), (64, (8, 16, 32), 3), (48, (16,), 4)])
def test_sets_partition_the_image(size, grids, k):
    labels = grid_labels(size, grids, k, seed=3)
    assert labels.shape == (len(grids), size, size) and labels.dtype == torch.int32
    known = ops.known_masks(labels, k).view(len(grids), k, size, size)
    # every pixel is unknown in exactly one set of every spec
    assert torch.equal((1 - known).sum(1), torch.ones(len(grids), size, size))
    for j, g in enumerate(grids):
        cells = labels[j].view(size // g, g, size // g, g)
        assert torch.equal(cells, cells[:, :1, :, :1].expand_as(cells)), "labels not constant within a cell"
        counts = torch.bincount(cells[:, 0, :, 0].flatten().long(), minlength=k)
        assert counts.max() - counts.min() <= 1, "sets are not balanced"


def test_cell_sets_seeded():
    assert cell_sets(49, 2, 7) == cell_sets(49, 2, 7)
    assert cell_sets(49, 2, 7) != cell_sets(49, 2, 8)
    assert sorted(set(cell_sets(10, 4, 0))) == [0, 1, 2, 3]


def test_random_training_masks_are_grid_aligned():
    """Each mask is one of the draws the docstring names: for some g in grid_sizes and K in
    set_counts, constant on every g×g cell, with exactly one of the K balanced sets unknown
    (⌊n/K⌋ or ⌈n/K⌉ of the n cells); every g and every K occurs in the batch."""
    g = torch.Generator().manual_seed(0)
    size, grids, counts = 32, (4, 8), (2, 3)
    m = random_known_masks(64, size, grids, counts, g)
    assert m.shape == (64, 1, size, size)
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    seen = set()
    for i in range(m.shape[0]):
        unknown = 1 - m[i, 0]
        fits = []
        for cell in grids:
            n = size // cell
            blocks = unknown.view(n, cell, n, cell)
            if not torch.equal(blocks, blocks[:, :1, :, :1].expand_as(blocks)):
                continue  # not constant on this grid's cells
            cells_unknown = int(blocks[:, 0, :, 0].sum())
            fits += [(cell, k) for k in counts if cells_unknown in (n * n // k, -(-n * n // k))]
        assert fits, f"mask {i} is not one set of a grid split: {unknown.sum()} unknown pixels"
        seen.update(fits)
    assert {c for c, _ in seen} == set(grids) and {k for _, k in seen} == set(counts)


def _oracle(x_rows, schedule):
    """A 'network' that returns the true noise of x_t relative to the clean image."""
    def eps_fn(unet_in, t):
        a, s = schedule.coefficients(int(t[0]))
        return (unet_in[:, :3] - a * x_rows) / s
    return eps_fn


@pytest.mark.parametrize("pool", [(1,), (1, 2)])
def test_oracle_network_reproduces_input_exactly(pool):
    torch.manual_seed(1)
    b, size, grids, k, steps = 2, 32, (4, 8), 2, 5
    x = torch.rand(b, 3, size, size) * 2 - 1
    labels = grid_labels(size, grids, k, seed=0)
    sched = Schedule.linear()
    n = b * len(grids) * k
    noise = LoopNoise.draw(n, size, steps, torch.Generator().manual_seed(0))
    res = inpaint_heat(x, labels, k, _oracle(x.repeat_interleave(len(grids) * k, 0), sched), sched,
                       250, steps, noise, pool)
    assert torch.allclose(res.xt, x.repeat_interleave(len(grids) * k, 0), atol=1e-5)
    assert res.heat.abs().max() < 1e-4
    assert res.count == steps * len(grids) * len(pool)


def test_known_region_is_the_renoised_input_every_step():
    torch.manual_seed(2)
    b, size, grids, k, steps = 1, 16, (4,), 2, 4
    x = torch.rand(b, 3, size, size) * 2 - 1
    labels = grid_labels(size, grids, k, seed=1)
    sched = Schedule.linear()
    n = b * len(grids) * k
    noise = LoopNoise.draw(n, size, steps, torch.Generator().manual_seed(5))
    m = ops.known_masks(labels, k).repeat(b, 1, 1, 1)
    xr = x.repeat_interleave(len(grids) * k, 0)
    ts = ddim_timesteps(250, steps)
    a0, s0 = sched.coefficients(ts[0])
    xt, unet_in = ops.prepare(x, labels, k, noise.fill, noise.start, a0, s0)
    # the start is the noise-filled condition taken forward: no pixel of an unknown cell leaks in
    c = unet_in[:, 3:]
    assert torch.equal(c * (1 - m), noise.fill * (1 - m))
    heat = torch.zeros(b, size, size)
    for i, t in enumerate(ts):
        tn = ts[i + 1] if i + 1 < steps else -1
        eps = torch.randn(n, 3, size, size)  # any network output
        a, s = sched.coefficients(t)
        an, sn = sched.coefficients(tn)
        xt, unet_in, heat = ops.step(x, labels, k, xt, eps, noise.steps[i], unet_in, heat, a, s, an, sn, (1,))
        expected_known = an * xr + sn * noise.steps[i]
        assert torch.allclose(xt * m, expected_known * m, atol=1e-6)
        assert torch.equal(unet_in[:, :3], xt)
    assert torch.allclose(xt * m, xr * m, atol=1e-6)  # last step: ᾱ = 1


def test_heat_term_hand_computed():
    # one row, d = 1 in channel 0 on a 2×2 block, 0 elsewhere
    d = torch.zeros(1, 3, 4, 4)
    d[0, 0, :2, :2] = 1.0
    d[0, 1, 0, 0] = 2.0
    h1 = ops.heat_term(d, (1,))
    assert h1[0, 0, 0] == pytest.approx(math.sqrt(5))
    assert h1[0, 1, 1] == pytest.approx(1.0)
    assert h1[0, 3, 3] == 0
    h2 = ops.heat_term(d, (2,))
    # block mean: channel 0 → 1, channel 1 → 0.5 → norm √1.25, nearest up-sampled over the block
    assert torch.allclose(h2[0, :2, :2], torch.full((2, 2), math.sqrt(1.25)))
    assert torch.equal(h2[0, 2:, :], torch.zeros(2, 4))
