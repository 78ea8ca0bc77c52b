"""EMA of the U-Net weights, synthetic anomalies, λ chosen without test labels, diagnostics,
and configs written before these settings existed."""

import json

import pytest
import torch
import torch.nn as nn

from drdc_trt import diagnostics
from drdc_trt.methods.drdc import tuning
from drdc_trt.config import ModelConfig, preset
from drdc_trt.data.anomalies import paste_anomalies, perlin, perlin_mask, self_shuffled
from drdc_trt.ema import EMA
from drdc_trt.methods.drdc.fusion import FusionStats


def test_ema_update_by_hand():
    lin = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(2.0)
    ema = EMA(lin, decay=0.5)
    assert ema.rate(0) == pytest.approx(0.1) and ema.rate(8) == pytest.approx(0.5)  # min(0.5, 9/18)
    with torch.no_grad():
        lin.weight.fill_(4.0)
    ema.update(lin, 0)  # 0.1·2 + 0.9·4
    assert float(ema.shadow["weight"]) == pytest.approx(3.8)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    ema.update(lin, 100)  # rate min(0.5, 101/110) = 0.5: 0.5·3.8 + 0.5·0
    assert float(ema.shadow["weight"]) == pytest.approx(1.9)
    ema.copy_to(lin)
    assert float(lin.weight.detach()) == pytest.approx(1.9)
    with pytest.raises(ValueError, match="EMA tensors do not match"):
        ema.load({"bias": torch.zeros(1)}, "x.safetensors")


def test_perlin_and_masks_are_seeded_and_bounded():
    n = perlin(32, (4, 2), torch.Generator().manual_seed(0))
    assert n.shape == (32, 32) and float(n.abs().max()) <= 1.5
    # gradient noise is zero on the lattice points
    assert torch.allclose(n[::8, ::16], torch.zeros(4, 2), atol=1e-6)
    with pytest.raises(ValueError, match="does not divide"):
        perlin(30, (4, 4), torch.Generator())
    a = perlin_mask(64, torch.Generator().manual_seed(5))
    b = perlin_mask(64, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.sum() > 0 and set(a.unique().tolist()) <= {0.0, 1.0}


def test_self_shuffled_keeps_the_pixels():
    img = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1))
    out = self_shuffled(img, torch.Generator().manual_seed(2))
    assert not torch.equal(out, img)
    torch.testing.assert_close(out.flatten(1).sort(1).values, img.flatten(1).sort(1).values)


def test_paste_anomalies_blends_inside_the_mask_only():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    y, m = paste_anomalies(x, seed=3)
    y2, m2 = paste_anomalies(x, seed=3)
    assert torch.equal(y, y2) and torch.equal(m, m2)
    outside = (m == 0).expand_as(x)
    assert torch.equal(y[outside], x[outside])
    assert bool((m.flatten(1).sum(1) > 0).all()) and float(y.abs().max()) <= 1.0 + 1e-6
    assert float((y - x).abs()[~outside].mean()) > 0.01
    with pytest.raises(ValueError, match="B×3×S×S"):
        paste_anomalies(torch.zeros(2, 1, 8, 8))


def test_lambda_choice_follows_the_map_that_finds_the_anomalies():
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(6, 1, 16, 16)
    masks[:, :, 4:8, 4:8] = 1
    noise = lambda: torch.rand(6, 16, 16, generator=g)
    good_d, anom_d = noise(), noise() + 0.6 * masks[:, 0]  # the diffusion map marks the anomalies
    good_b, anom_b = 4 * noise(), 4 * noise()              # the base map is strong noise
    stats = FusionStats(0.5, 0.3, 0.5, 0.3)
    rows = tuning.lambda_rows((good_d, good_b), (anom_d, anom_b), masks, stats, 3)
    assert [r["lam"] for r in rows] == list(tuning.LAMBDA_GRID)
    assert tuning.choose(rows)["lam"] == 1.0 and rows[-1]["pixel_AUROC"] > rows[0]["pixel_AUROC"] + 0.2
    # swapped roles: the base map finds them, λ = 0 wins
    rows = tuning.lambda_rows((good_b, good_d), (anom_b, anom_d), masks, stats, 3)
    assert tuning.choose(rows)["lam"] == 0.0
    # ties go to the larger λ
    tie = [{"heat_norm": "none", "lam": 0.2, "objective": 0.5}, {"heat_norm": "none", "lam": 0.7, "objective": 0.5},
           {"heat_norm": "none", "lam": 0.9, "objective": 0.4}, {"heat_norm": "image_std", "lam": 1.0, "objective": 0.5}]
    assert tuning.choose(tie) == tie[1]  # the paper's heat first, then the larger λ


def test_diagnostics_known_answers():
    assert diagnostics.edge_fraction(8, 2) == pytest.approx(0.75)
    maps = torch.zeros(4, 8, 8)
    maps[0, 0, 3] = maps[1, 4, 4] = maps[2, 7, 7] = maps[3, 3, 6] = 1  # edge, inside, corner, 1 px from edge
    assert diagnostics.border_share(maps, 1) == pytest.approx(0.5)
    assert diagnostics.border_share(maps, 2) == pytest.approx(0.75)
    assert diagnostics.spearman(torch.tensor([1., 2, 3, 4]), torch.tensor([10., 20, 25, 100])) == pytest.approx(1.0)
    assert diagnostics.spearman(torch.tensor([1., 2, 3, 4]), torch.tensor([4., 3, 2, 1])) == pytest.approx(-1.0)
    images = torch.stack([torch.full((3, 8, 8), v) for v in (-0.5, 0.0, 0.5, 0.2)])
    labels = torch.tensor([0, 0, 0, 1])
    rows = diagnostics.diagnose(images, labels, {"m": (torch.tensor([1., 2, 3, 4]), maps)}, border=1)
    assert rows[0]["brightness_spearman"] == pytest.approx(1.0)   # good scores rise with brightness
    assert rows[0]["image_AUROC"] == 1.0
    assert rows[1]["image_AUROC"] == pytest.approx(2 / 3)         # brightness alone: 0.2 beats -0.5 and 0.0
    assert "pixels there: 44 %" in diagnostics.markdown(rows, 8, 1)


def test_configs_without_the_new_fields_keep_their_meaning():
    d = json.loads(preset("small").to_json())
    del d["diffusion"]["margin"], d["fusion"]["heat_norm"], d["fusion"]["select"], d["train"]["ema_decay"]
    old = ModelConfig.from_dict(d).validate()
    assert (old.diffusion.margin, old.fusion.heat_norm, old.fusion.select, old.train.ema_decay) == \
        (0, "none", "fixed", 0.0)
    assert ModelConfig().train.ema_decay == 0.9999


def test_shuffled_sources_keep_the_images_own_values():
    """Selection anomalies (tuning.SOURCES) are made of the image's own pixels: with β the blend
    of each masked pixel lies between the original and some pixel of the same image."""
    from drdc_trt.data.anomalies import SOURCES

    assert tuning.SOURCES == ("shuffled",) and set(tuning.SOURCES) <= set(SOURCES)
    x = torch.full((2, 3, 32, 32), -0.5)
    x[:, :, :, 16:] = 0.5  # a two-valued image: every blend stays inside [-0.5, 0.5]
    y, m = paste_anomalies(x, seed=0, sources=tuning.SOURCES)
    assert float(y.min()) >= -0.5 - 1e-6 and float(y.max()) <= 0.5 + 1e-6
    with pytest.raises(ValueError, match="sources"):
        paste_anomalies(x, sources=("dtd",))
