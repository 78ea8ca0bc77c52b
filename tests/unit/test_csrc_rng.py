"""The C++ label maps, schedule and Gaussian generator against their definitions.

Labels and schedule must equal the Python ones exactly (the C++ refiner draws
its masks and coefficients itself); the Gaussian generator is checked against
Random123's Philox known answers and an independent Python implementation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from drdc_trt.schedule import Schedule, ddim_timesteps
from drdc_trt.methods.drdc.masks import grid_labels
from drdc_trt.methods.drdc.masks import cell_sets, spec_seed

from drdc_trt import _C  # a required part of the package: missing is a failure, not a skip

M32 = 0xFFFFFFFF


@pytest.mark.parametrize("size,grids,k,seed", [
    (32, (4, 8), 2, 0), (64, (8, 16, 32), 3, 7), (48, (16,), 4, 123456789), (224, (8, 16), 2, 0),
    (30, (1, 2, 3, 5), 5, 2**64 - 1), (16, (16,), 1, 42),
])
def test_grid_labels_equal_python(size, grids, k, seed):
    got = torch.from_numpy(_C.grid_labels(size, list(grids), k, seed))
    assert got.dtype == torch.int32
    assert torch.equal(got, grid_labels(size, grids, k, seed=seed))


@pytest.mark.parametrize("cells,k,seed", [(1, 1, 0), (2, 2, 5), (97, 3, 2**63 + 11), (784, 2, 1)])
def test_cell_sets_and_spec_seed_equal_python(cells, k, seed):
    assert _C.cell_sets(cells, k, seed) == cell_sets(cells, k, seed)
    for j in range(4):
        assert _C.spec_seed(seed, j) == spec_seed(seed, j)


@pytest.mark.parametrize("T,b0,b1", [(1000, 1e-4, 0.02), (7, 1e-3, 0.3), (1, 1e-4, 0.02), (4000, 1e-5, 0.05)])
def test_schedule_equals_numpy_bit_for_bit(T, b0, b1):
    assert np.array_equal(_C.linear_alphas_cumprod(T, b0, b1), Schedule.linear(T, b0, b1).alphas_cumprod)


def test_ddim_timesteps_equal_python():
    for t0 in (1, 7, 100, 250, 999, 1000):
        for n in sorted({1, 3, 10, t0}):
            if n <= t0:
                assert _C.ddim_timesteps(t0, n) == ddim_timesteps(t0, n)
    with pytest.raises(ValueError, match="num_steps"):
        _C.ddim_timesteps(10, 11)


def test_philox_known_answers():
    # Random123 kat_vectors, philox4x32-10
    assert _C.philox4x32([0, 0, 0, 0], [0, 0]) == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    assert _C.philox4x32([M32] * 4, [M32] * 2) == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]
    assert _C.philox4x32([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0]) == \
        [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]


def _philox(ctr, key):
    c, k = list(ctr), list(key)
    for r in range(10):
        if r:
            k = [(k[0] + 0x9E3779B9) & M32, (k[1] + 0xBB67AE85) & M32]
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [((p1 >> 32) ^ c[1] ^ k[0]) & M32, p1 & M32, ((p0 >> 32) ^ c[3] ^ k[1]) & M32, p0 & M32]
    return c


def _gaussian(seed, offset, i):
    pair = i >> 1
    r = _philox([pair & M32, pair >> 32, offset & M32, offset >> 32], [seed & M32, seed >> 32])
    a = ((r[1] << 32) | r[0]) >> 11
    b = ((r[3] << 32) | r[2]) >> 11
    u1, u2 = (a + 1) * 2.0**-53, b * 2.0**-53
    radius, theta = math.sqrt(-2.0 * math.log(u1)), 2.0 * math.pi * u2
    return np.float32(radius * (math.sin(theta) if i & 1 else math.cos(theta)))


@pytest.mark.parametrize("seed,offset", [(0, 0), (7, 3), (2**64 - 1, 2**40 + 5)])
def test_gaussian_equals_definition(seed, offset):
    got = _C.gaussian(64, seed, offset)
    want = np.array([_gaussian(seed, offset, i) for i in range(64)], dtype=np.float32)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_gaussian_statistics_and_independence():
    g = _C.gaussian(1 << 20, 3, 0).astype(np.float64)
    assert abs(g.mean()) < 5e-3 and abs(g.var() - 1.0) < 5e-3
    assert abs(np.mean(g**3)) < 2e-2 and abs(np.mean(g**4) - 3.0) < 3e-2  # skew 0, kurtosis 3
    assert abs(np.corrcoef(g[:-1], g[1:])[0, 1]) < 5e-3  # neighbours (cos/sin pairs) uncorrelated
    other = _C.gaussian(1 << 10, 3, 1)
    assert abs(np.corrcoef(g[: 1 << 10], other)[0, 1]) < 0.1  # streams differ
