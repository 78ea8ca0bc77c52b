"""The torch-free runtime's GLAD feature arithmetic (drdc_trt.runtime.glad_features) against the
PyTorch functions it transcribes (drdc_trt.methods.glad.features / adaptive.saff_weight) on random
inputs, including the blur's replicate padding at sides its radius reaches, and hand cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drdc_trt.methods.glad import features as T
from drdc_trt.methods.glad.adaptive import saff_weight as torch_saff_weight
from drdc_trt.methods.glad import runtime_features as N

# float32 sums in another order (numpy vs PyTorch's kernels): ~1e-7 on values of order 1
ATOL = 1e-6


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("q_shape,r_shape", [((3, 24, 8, 8), (3, 24, 8, 8)), ((2, 40, 4, 4), (2, 40, 2, 3)),
                                             ((1, 5, 1, 1), (1, 5, 3, 3))])
def test_nearest_patch_distance_matches_pytorch(q_shape, r_shape):
    q, r = _rand(*q_shape, seed=1), _rand(*r_shape, seed=2)
    got = N.nearest_patch_distance(q.numpy(), r.numpy())
    assert got.dtype == np.float32 and got.shape == (q_shape[0], *q_shape[2:])
    np.testing.assert_allclose(got, T.nearest_patch_distance(q, r).numpy(), atol=ATOL, rtol=0)


def test_nearest_patch_distance_hand_case():
    # one query patch along (1, 0); reference patches along (0, 1) and (1, 1): the nearest is
    # (1, 1) at cos 1/√2, so the distance is 1 − 1/√2; a zero patch has cos 0 with everything (distance 1)
    q = np.array([[[[1.0, 0.0]], [[0.0, 0.0]]]], dtype=np.float32)          # 1×2×1×2: patches (1,0), (0,0)
    r = np.array([[[[0.0, 2.0]], [[3.0, 2.0]]]], dtype=np.float32)          # patches (0,3), (2,2)
    got = N.nearest_patch_distance(q, r)
    np.testing.assert_allclose(got, [[[1 - 2 ** -0.5, 1.0]]], atol=1e-7)
    with pytest.raises(ValueError, match="same B and C"):
        N.nearest_patch_distance(q, np.zeros((1, 3, 1, 2), np.float32))


@pytest.mark.parametrize("shape,sigma", [((2, 32, 32), 0.75),   # reflect (radius 3 < 32)
                                         ((1, 5, 7), 0.5),      # reflect, non-square (radius 2 < 5)
                                         ((2, 4, 4), 1.0),      # replicate: radius 4 reaches the side 4
                                         ((1, 3, 9), 1.5),      # replicate: radius 6 ≥ the smaller side 3
                                         ((1, 16, 16), 2.0), ((1, 8, 8), 0.0)])
def test_gaussian_blur_matches_pytorch(shape, sigma):
    m = _rand(*shape, seed=3)
    got = N.gaussian_blur(m.numpy(), sigma)
    assert got.shape == shape
    np.testing.assert_allclose(got, T.gaussian_blur(m, sigma).numpy(), atol=ATOL, rtol=0)


def test_gaussian_blur_hand_cases():
    k = N.gaussian_kernel(1.0)
    assert k.size == 9 and k.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(k[4] / k[5], np.exp(0.5), rtol=1e-6)            # exp(−x²/2) ratio of 0 and 1
    flat = np.full((1, 6, 6), 0.25, np.float32)
    np.testing.assert_allclose(N.gaussian_blur(flat, 1.0), flat, atol=1e-7)      # a constant map stays
    # reflect does not repeat the edge: a single bright corner pixel gets weight k[r]·k[r] there
    impulse = np.zeros((1, 12, 12), np.float32)
    impulse[0, 0, 0] = 1
    k = N.gaussian_kernel(0.5)  # radius 2
    assert N.gaussian_blur(impulse, 0.5)[0, 0, 0] == pytest.approx(k[2] * k[2], rel=1e-6)


def test_anomaly_map_matches_pytorch():
    fx = [_rand(2, 24, 8, 8, seed=4), _rand(2, 40, 4, 4, seed=5)]
    fr = [_rand(2, 24, 8, 8, seed=6), _rand(2, 40, 4, 4, seed=7)]
    got = N.anomaly_map([f.numpy() for f in fx], [f.numpy() for f in fr], 32, 0.75)
    np.testing.assert_allclose(got, T.anomaly_map(fx, fr, 32, 0.75).numpy(), atol=2 * ATOL, rtol=0)
    # a reconstruction equal to the input: zero distance everywhere (up to rounding)
    np.testing.assert_allclose(N.anomaly_map([f.numpy() for f in fx], [f.numpy() for f in fx], 32, 0.75), 0,
                               atol=1e-6)


def test_bilinear_matches_interpolate():
    m = _rand(3, 4, 4, seed=8)
    want = torch.nn.functional.interpolate(m.unsqueeze(1), size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    np.testing.assert_allclose(N.bilinear(m.numpy(), 32), want.numpy(), atol=ATOL, rtol=0)


@pytest.mark.parametrize("k", [1, 4, 10, 16, 5000])
def test_top_k_score_matches_pytorch(k):
    m = _rand(3, 4, 4, seed=9)
    got = N.top_k_score(m.numpy(), k)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, T.top_k_score(m, k).numpy(), atol=ATOL, rtol=0)


def test_top_k_score_hand_case():
    m = np.array([[[1, 5], [3, 2]], [[0, 0], [0, 7]]], np.float32)
    np.testing.assert_array_equal(N.top_k_score(m, 2), [4.0, 3.5])
    np.testing.assert_array_equal(N.top_k_score(m, 9), [2.75, 1.75])  # k capped at the 4 pixels


def test_saff_weight_matches_pytorch_and_a_flat_row_keeps_the_input():
    A = _rand(4, 4, 4, seed=10)
    A[1] = 0.3  # flat: min–max weight 0
    for kind in ("sigmoid", "minmax"):
        got = N.saff_weight(A.numpy(), 32, kind)
        assert got.shape == (4, 1, 32, 32) and got.dtype == np.float32
        np.testing.assert_allclose(got, torch_saff_weight(A, (32, 32), kind).numpy(), atol=ATOL, rtol=0)
    assert not N.saff_weight(A.numpy(), 32, "minmax")[1].any()
    # the default is σ(A): a flat row gets σ(0.3) everywhere
    np.testing.assert_allclose(N.saff_weight(A.numpy(), 32)[1], 1 / (1 + np.exp(-0.3)), rtol=1e-6)
    # hand case: min → 0, max → 1 at the patch centres of a 2×2 A up-sampled ×1
    np.testing.assert_allclose(N.saff_weight(np.array([[[2, 4], [3, 6]]], np.float32), 2, "minmax")[0, 0],
                               [[0, 0.5], [0.25, 1]], atol=1e-7)
    # σ(±ln 3) = 3/4, 1/4; very negative A underflows to 0 without a warning turned error
    np.testing.assert_allclose(N.saff_weight(np.array([[[np.log(3), -np.log(3)], [0, -200]]], np.float32), 2)[0, 0],
                               [[0.75, 0.25], [0.5, 0]], atol=1e-7)
