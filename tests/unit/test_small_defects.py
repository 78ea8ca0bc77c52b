"""The second synthetic-anomaly family (data/small_defects.py): areas, widths and contrasts by
construction, and the selection's mean over families (tuning.select)."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from drdc_trt.config import ModelConfig, preset
from drdc_trt.data import small_defects as sd
from drdc_trt.methods.drdc import tuning
from drdc_trt.methods.drdc.fusion import FusionStats


@pytest.mark.parametrize("size", [64, 224])
def test_spot_areas_are_exact_and_inside_the_range(size):
    g = torch.Generator().manual_seed(size)
    lo, hi = math.ceil(sd.AREA_RANGE[0] * size * size), math.floor(sd.AREA_RANGE[1] * size * size)
    areas = [int(sd.spot_mask(size, g).sum()) for _ in range(300 if size == 64 else 60)]
    assert lo <= min(areas) and max(areas) <= hi
    # log-uniform over a 20× range: both ends are drawn
    assert min(areas) < 3 * lo and max(areas) > hi / 3


def test_spot_is_one_compact_blob():
    """The n pixels nearest the centre form one 4-connected piece whose bounding box is no larger
    than a disc of that area would need (an ellipse of axis ratio ≥ 0.5)."""
    g = torch.Generator().manual_seed(1)
    for _ in range(50):
        m = sd.spot_mask(64, g)
        ys, xs = torch.nonzero(m, as_tuple=True)
        n = len(ys)
        extent = max(int(ys.max() - ys.min()), int(xs.max() - xs.min())) + 1
        assert extent <= 2 * math.sqrt(n / (math.pi * 0.5)) + 3
        # flood fill from one pixel reaches all of them
        seen, todo = set(), [(int(ys[0]), int(xs[0]))]
        pts = set(zip(ys.tolist(), xs.tolist()))
        while todo:
            p = todo.pop()
            if p in seen or p not in pts:
                continue
            seen.add(p)
            todo += [(p[0] + 1, p[1]), (p[0] - 1, p[1]), (p[0], p[1] + 1), (p[0], p[1] - 1)]
        assert seen == pts


@pytest.mark.parametrize("size", [64, 128])
def test_scratches_are_thin_lines_of_small_area(size):
    g = torch.Generator().manual_seed(2)
    w = sd.scratch_width(size)
    assert w == size // 64
    for _ in range(100):
        m = sd.scratch_mask(size, g).float()
        area = float(m.sum()) / size ** 2
        assert sd.AREA_RANGE[0] <= area <= sd.AREA_RANGE[1]
        # no pixel has a full (2w+1)² neighbourhood inside the line: it is at most ~2w wide
        k = 2 * w + 1
        interior = F.conv2d(m[None, None], torch.ones(1, 1, k, k), padding=w)[0, 0] >= k * k - 1e-3
        assert not interior.any()
        ys, xs = torch.nonzero(m, as_tuple=True)
        length = math.hypot(int(ys.max() - ys.min()), int(xs.max() - xs.min()))
        assert length >= sd.SCRATCH_LENGTH[0] * size - 2


def test_shift_moves_the_mask_only_by_the_drawn_contrast():
    g = torch.Generator().manual_seed(3)
    m = torch.zeros(16, 16, dtype=torch.bool)
    m[4:7, 5:9] = True
    signs = set()
    for _ in range(40):
        x = torch.full((3, 16, 16), 0.5)
        y = sd.shift(x, m, g)
        d = y - x
        assert torch.equal(d[:, ~m], torch.zeros_like(d[:, ~m]))
        c = float(d[0, 4, 5])
        assert torch.allclose(d[:, m], torch.full_like(d[:, m], c))   # one move for every masked pixel
        assert sd.CONTRAST_RANGE[0] <= abs(c) < sd.CONTRAST_RANGE[1] + 1e-6
        signs.add(c > 0)
    assert signs == {True, False}  # dark and bright spots
    # near white the move is dark, near black bright: the drawn contrast is kept in full
    for level, dark in ((0.95, True), (0.05, False)):
        x = torch.full((3, 16, 16), level)
        for _ in range(10):
            d = sd.shift(x, m, g) - x
            assert (float(d[0, 4, 5]) < 0) == dark and abs(float(d[0, 4, 5])) >= sd.CONTRAST_RANGE[0] - 1e-6


def test_blur_changes_the_disc_only_and_goes_where_the_texture_is():
    g = torch.Generator().manual_seed(4)
    x = torch.full((3, 64, 64), 0.4)
    x[:, 40:, 40:] = torch.rand(3, 24, 24, generator=g)  # texture in one corner only
    y, m = sd.blur_defect(x, g)
    area = float(m.sum()) / 64 ** 2
    assert sd.BLUR_AREA_RANGE[0] * 0.7 <= area <= sd.BLUR_AREA_RANGE[1] * 1.3  # a disc of the drawn area
    assert torch.equal(y[:, ~m], x[:, ~m])
    ref = sd.gaussian_blur(x, sd.blur_sigma(64))
    assert torch.equal(y[:, m], ref[:, m])
    assert float((y - x).abs()[:, m].mean()) > 0.05  # it found the textured corner (a flat disc: 0)
    # gaussian_blur by hand: a unit impulse spreads to the normalised kernel and keeps its sum
    imp = torch.zeros(3, 21, 21)
    imp[:, 10, 10] = 1
    b = sd.gaussian_blur(imp, 1.0)
    assert float(b.sum()) == pytest.approx(3.0, abs=1e-5)
    k1 = math.exp(-0.5) / sum(math.exp(-i * i / 2) for i in range(-3, 4))
    k0 = 1 / sum(math.exp(-i * i / 2) for i in range(-3, 4))
    assert float(b[0, 10, 11]) == pytest.approx(k0 * k1, rel=1e-5)


def test_paste_small_defects_is_seeded_and_labels_every_changed_pixel():
    x = torch.rand(24, 3, 64, 64, generator=torch.Generator().manual_seed(5)) * 2 - 1
    y, m, kinds = sd.paste_small_defects(x, seed=7)
    y2, m2, kinds2 = sd.paste_small_defects(x, seed=7)
    assert torch.equal(y, y2) and torch.equal(m, m2) and kinds == kinds2
    assert set(kinds) == set(sd.KINDS)
    changed = (y - x).abs().amax(1) > 1e-6
    assert not (changed & (m[:, 0] < 0.5)).any()          # nothing outside its mask changed
    assert float(y.min()) >= -1 and float(y.max()) <= 1
    frac = m.sum((1, 2, 3)) / 64 ** 2
    assert float(frac.max()) <= sd.AREA_RANGE[1] * 1.3 and float(frac.min()) >= sd.AREA_RANGE[0]
    with pytest.raises(ValueError, match="B×3×S×S"):
        sd.paste_small_defects(torch.zeros(2, 1, 8, 8))


def test_selection_scores_the_mean_over_families():
    """Rows of two families → each metric their mean; a map that wins on patches but loses on small
    defects no longer wins the selection."""
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(6, 1, 16, 16)
    masks[:, :, 4:8, 4:8] = 1
    m = masks[:, 0]
    noise = lambda: torch.rand(6, 16, 16, generator=g)
    stats = FusionStats(0.5, 0.3, 0.5, 0.3)
    good = (noise(), 4 * noise())   # (diffusion map, base map) of the normal images
    # patches: the diffusion map finds them clearly, the base weakly; small: only the base finds them
    patches = tuning.lambda_rows(good, (noise() + 0.6 * m, 4 * noise() + 1.5 * m), masks, stats, 3)
    small = tuning.lambda_rows(good, (noise(), 4 * noise() + 3 * m), masks, stats, 3)
    mean = tuning.mean_over_families([patches, small])
    for p, s, r in zip(patches, small, mean):
        assert r["lam"] == p["lam"]
        for k in ("image_AUROC", "pixel_AUROC", "AUPRO", "F1Max", "objective"):
            assert r[k] == pytest.approx((p[k] + s[k]) / 2)
    chosen = lambda rows: tuning.choose([{"heat_norm": "none", **r} for r in rows])["lam"]
    assert chosen(small) == 0.0 and chosen(patches) >= 0.8
    assert chosen(mean) < chosen(patches)   # the small defects pull λ down
    with pytest.raises(ValueError, match="same λ"):
        tuning.mean_over_families([patches, small[::-1]])


def test_synthetic_families_config_default_legacy_and_errors():
    cfg = preset("small")
    assert tuple(cfg.fusion.synthetic_families) == ("patches",)   # the measured default (config.py)
    d = json.loads(cfg.to_json())
    d["fusion"]["synthetic_families"] = ["patches", "small"]
    assert tuple(ModelConfig.from_dict(d).validate().fusion.synthetic_families) == ("patches", "small")
    del d["fusion"]["synthetic_families"]
    assert tuple(ModelConfig.from_dict(d).validate().fusion.synthetic_families) == ("patches",)
    for bad in (["edges"], [], ["small", "small"]):
        d["fusion"]["synthetic_families"] = bad
        with pytest.raises(ValueError, match="fusion.synthetic_families"):
            ModelConfig.from_dict(d).validate()
    x = torch.zeros(2, 3, 32, 32)
    for fam in ("patches", "small"):
        a, m = tuning.synthetic_set(x, fam)
        assert a.shape == x.shape and m.shape == (2, 1, 32, 32) and m.sum() > 0
    with pytest.raises(ValueError, match="synthetic family"):
        tuning.synthetic_set(x, "edges")
