"""Fusion and scoring on hand-made maps (DESIGN §1.4)."""

import math

import pytest
import torch

from drdc_trt.methods.drdc import ops
from drdc_trt.methods.drdc.fusion import FusionStats, measure_stats


def test_mean_filter_hand_computed():
    m = torch.zeros(1, 3, 3)
    m[0, 1, 1] = 9.0
    out = ops.mean_filter(m, 3)
    assert out[0, 1, 1] == pytest.approx(1.0)       # 9 / 9 neighbours
    assert out[0, 0, 0] == pytest.approx(9.0 / 4)   # corner: 4 valid neighbours
    assert out[0, 0, 1] == pytest.approx(9.0 / 6)   # edge: 6 valid neighbours


def test_bilinear_upsampling_hand_computed():
    base = torch.tensor([[[0.0, 4.0], [8.0, 12.0]]])
    up = ops.upsample_base(base, 4)
    # source coordinate of output column c: max(0, (c + 0.5)/2 − 0.5) → 0, 0.25, 0.75, 1
    row0 = torch.tensor([0.0, 1.0, 3.0, 4.0])
    assert torch.allclose(up[0, 0], row0)
    assert torch.allclose(up[0, 1], row0 + 0.25 * 8)
    assert torch.allclose(up[0, 3], row0 + 8)


def test_image_score_is_max_of_average_pool():
    m = torch.zeros(1, 5, 5)
    m[0, 4, 4] = 8.0
    m[0, 0, 0] = 2.0
    assert ops.image_score(m, 2)[0] == pytest.approx(2.0)  # 8 / 4 at the corner window
    assert ops.image_score(m, 1)[0] == pytest.approx(8.0)


def test_fuse_hand_computed():
    heat = torch.full((1, 4, 4), 6.0)
    heat[0, 0, 0] = 18.0
    base = torch.tensor([[[1.0, 1.0], [1.0, 3.0]]])
    stats = (1.0, 2.0, 1.0, 0.5)  # μ_d, σ_d, μ_b, σ_b
    final, hd, hb, score = ops.reference_fuse(heat, 3, base, 1, stats, 0.9, 1)
    # hd = heat / 3; (hd − 1) / 2 → pixel (0,0): (6 − 1)/2 = 2.5, elsewhere (2 − 1)/2 = 0.5
    # hb at (0,0) = 1 → 0; at (3,3) = 3 → (3 − 1)/0.5 = 4
    assert final[0, 0, 0] == pytest.approx(0.9 * 2.5)
    assert final[0, 3, 3] == pytest.approx(0.9 * 0.5 + 0.1 * 4.0)
    assert score[0] == pytest.approx(max(0.9 * 2.5, 0.9 * 0.5 + 0.1 * 4.0))
    # λ = 0 leaves the base map alone
    f0, *_ = ops.reference_fuse(heat, 3, base, 1, stats, 0.0, 1)
    assert torch.allclose(f0, (hb - 1.0) / 0.5)


def test_measure_stats_normalises_to_zero_mean_unit_std():
    g = torch.Generator().manual_seed(0)
    diff = torch.rand(4, 8, 8, generator=g) * 3 + 2
    base = torch.rand(4, 8, 8, generator=g) + 10
    st = measure_stats(diff, base, 0.9, 2)
    z = (diff - st.diff_mean) / st.diff_std
    assert float(z.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(z.std()) == pytest.approx(1.0, abs=1e-5)
    final = 0.9 * z + 0.1 * (base - st.base_mean) / st.base_std
    assert st.image_threshold == pytest.approx(float(ops.image_score(final, 2).max()), rel=1e-5)


def test_stats_json_round_trip():
    st = FusionStats(1.0, 2.0, 3.0, 4.0, image_threshold=math.inf, pixel_threshold=0.5, num_images=3)
    back = FusionStats.from_dict(__import__("json").loads(st.to_json()))
    assert back == st
    with pytest.raises(ValueError, match="unknown field"):
        FusionStats.from_dict({"bogus": 1})
