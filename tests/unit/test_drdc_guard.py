"""DRDC's reliability guard (drdc_trt.methods.drdc.guard): it fires on constructed diffusion maps that
sit on the image border or follow the lighting, and on a selection whose λ > 0 barely beats λ = 0;
it stays quiet on maps that find pasted defects; the cross-fitted per-pixel statistics; calibration
stores λ = 0 with the record and a warning when it fires."""

from __future__ import annotations

import math

import pytest
import torch

from drdc_trt.config import preset
from drdc_trt.methods.drdc import guard

S, N = 64, 40


def normal_images(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    level = torch.rand(N, 1, 1, 1, generator=g) * 1.2 - 0.6  # each image its own brightness
    return (level + 0.05 * torch.randn(N, 3, S, S, generator=g)).clamp(-1, 1)


def defect_maps(seed: int = 1) -> torch.Tensor:
    """Noise with one bright blob per image at a random place away from the border (what a map
    that finds small defects looks like): no border bias, nothing to do with brightness."""
    g = torch.Generator().manual_seed(seed)
    maps = 0.1 * torch.rand(N, S, S, generator=g)
    ys = torch.randint(12, S - 12, (N,), generator=g)
    xs = torch.randint(12, S - 12, (N,), generator=g)
    for i in range(N):
        maps[i, ys[i] - 2:ys[i] + 3, xs[i] - 2:xs[i] + 3] += 1 + torch.rand(1, generator=g)
    return maps


def check(record: dict, name: str) -> dict:
    return next(c for c in record["checks"] if c["check"] == name)


def test_border_band_and_its_binomial_bound():
    assert guard.border_px(64) == 4 and guard.border_px(224) == 14 and guard.border_px(8) == 1
    rec = guard.judge(defect_maps(), normal_images(), 4, "none", 0.5)
    p = 1 - (56 / 64) ** 2  # pixels within 4 px of the edge of a 64² image
    assert check(rec, "border")["bound"] == pytest.approx(p + max(0.2, 3 * math.sqrt(p * (1 - p) / N)))
    assert check(rec, "brightness")["bound"] == pytest.approx(max(0.5, 3 / math.sqrt(N - 1)))


def test_quiet_on_a_map_that_finds_defects():
    rec = guard.judge(defect_maps(), normal_images(), 4, "none", 0.5)
    assert rec["passed"] and rec["lam"] == 0.5 and rec["lam_chosen"] == 0.5
    assert check(rec, "border")["value"] == 0.0
    assert abs(check(rec, "brightness")["value"]) < 0.5
    assert guard.warning(rec) is None


def test_fires_on_a_map_that_sits_on_the_border():
    maps = defect_maps()
    maps[:, :, :2] += 3.0  # every normal image's maximum in the left 2 columns
    rec = guard.judge(maps, normal_images(), 4, "none", 0.5)
    b = check(rec, "border")
    assert not rec["passed"] and rec["lam"] == 0.0 and b["value"] == 1.0 and not b["passed"]
    assert check(rec, "brightness")["passed"]
    line = guard.warning(rec)
    assert line.startswith("warning: the diffusion map failed the reliability guard, λ = 0 stored instead of 0.5")
    assert "100 % of the normal images' diffusion-map maxima lie within 4 px of the edge" in line


def test_fires_on_a_map_that_follows_brightness():
    images = normal_images()
    maps = defect_maps()
    maps += 2 * (images.mean((1, 2, 3)) + 1).view(-1, 1, 1)  # the score grows with the lighting
    rec = guard.judge(maps, images, 4, "none", 0.3)
    r = check(rec, "brightness")
    assert not r["passed"] and r["value"] > 0.9 and rec["lam"] == 0.0
    assert check(rec, "border")["passed"]
    # the opposite sign fails too
    assert not check(guard.judge(-maps + 10, images, 4, "none", 0.3), "brightness")["passed"]


def test_synthetic_margin_over_lambda_zero():
    def rows(gain):
        return [{"heat_norm": "none", "lam": 0.0, "objective": 0.70},
                {"heat_norm": "none", "lam": 0.4, "objective": 0.70 + gain},
                {"heat_norm": "local_std", "lam": 0.0, "objective": 0.10},  # another heat: not compared
                {"heat_norm": "local_std", "lam": 0.4, "objective": 0.99}]
    ok = guard.judge(defect_maps(), normal_images(), 4, "none", 0.4, rows(0.03))
    assert ok["passed"] and check(ok, "synthetic_margin")["value"] == pytest.approx(0.03)
    tie = guard.judge(defect_maps(), normal_images(), 4, "none", 0.4, rows(0.004))
    assert not tie["passed"] and tie["lam"] == 0.0 and not check(tie, "synthetic_margin")["passed"]
    assert "beats λ = 0 by 0.4 points" in guard.warning(tie)
    # λ = 0 chosen: nothing to guard, no margin check
    zero = guard.judge(defect_maps(), normal_images(), 4, "none", 0.0, rows(0.004))
    assert [c["check"] for c in zero["checks"]] == ["border", "brightness"] and guard.warning(zero) is None


def test_cross_fitted_pixel_statistics_use_the_other_half():
    """Each half's map is normalised by statistics measured on the other half: a pixel that varies
    only in the odd images stands out in them (its std from the even half is the floor)."""
    cfg = preset("tiny")
    assert cfg.fusion.diff_norm == "pixel"
    s = cfg.image_size
    g = torch.Generator().manual_seed(3)
    images = torch.rand(8, 3, s, s, generator=g) * 2 - 1
    heat = 1 + 0.1 * torch.rand(8, s, s, generator=g)
    heat[1::2, 10, 10] += 5.0 * (1 + torch.rand(4, generator=g))
    base = torch.rand(8, cfg.feature_size, cfg.feature_size, generator=g)
    maps = guard.diffusion_only_maps(cfg, images, heat, base, 1, "none")
    odd, even = maps[1::2], maps[0::2]
    arg = odd.flatten(1).argmax(1)  # within the mean filter's 3×3 plateau around the pixel
    assert bool(((arg // s - 10).abs() <= 1).all() and ((arg % s - 10).abs() <= 1).all()), arg
    assert float(odd.amax((1, 2)).min()) > 10 * float(even.amax((1, 2)).max())
    with pytest.raises(ValueError, match="at least 4 held-out normal images, got 3"):
        guard.diffusion_only_maps(cfg, images[:3], heat[:3], base[:3], 1, "none")


def test_markdown_and_html_name_every_check():
    maps = defect_maps()
    maps[:, :, :2] += 3.0
    rec = guard.judge(maps, normal_images(), 4, "none", 0.5)
    md, page = guard.markdown(rec), guard.html(rec)
    assert "λ = 0 stored instead of 0.5" in md and "| border | 1.000 |" in md and "| brightness |" in md
    assert "<b>no</b>" in page and "λ = 0 stored instead of 0.5" in page
