"""Known answers of training and the base model: the U-Net batch, the two losses, the
backbone's input normalisation and the base heatmap ‖f − f̂‖ on hand-made cases."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

from drdc_trt.config import BackboneConfig, preset
from drdc_trt.schedule import Schedule
from drdc_trt.models.backbone import Backbone
from drdc_trt.methods.drdc.base_model import BaseModel
from drdc_trt.training import TrainReport, TrainState
from drdc_trt.methods.drdc.train import _train_base, _train_unet, _unet_batch_for, unet_batch

SIZE, CROP, N = 8, 4, 6
AB = torch.tensor([0.64, 0.36])  # √ᾱ = 0.8 / 0.6 and √(1 − ᾱ) = 0.6 / 0.8


def _coded_images() -> torch.Tensor:
    """N×3×8×8 whose every pixel names itself: (1000·i + 100·c + 10·y + x) / 8192, exact in float32."""
    i, c, y, x = torch.meshgrid(torch.arange(N), torch.arange(3), torch.arange(SIZE), torch.arange(SIZE),
                                indexing="ij")
    return ((1000 * i + 100 * c + 10 * y + x).float() / 8192).contiguous()


def _cfg(objective: str):
    d = SimpleNamespace(train_grid_sizes=(2,), grid_sizes=(2,), train_num_sets=(2,), train_t_max=2,
                        objective=objective)
    return SimpleNamespace(image_size=SIZE, diffusion=d, train=SimpleNamespace(crop_size=CROP))


@pytest.mark.parametrize("objective", ["eps", "aligned"])
def test_unet_batch_by_hand(objective):
    """Crops are windows of their own image; the condition is that window on the known cells
    (one of two sets of 2×2 cells: 8 of 16 pixels unknown); x_t = √ᾱ·(x or c) + √(1−ᾱ)·ε with
    ᾱ ∈ {0.64, 0.36} so the coefficients are 0.8/0.6 or 0.6/0.8; the target is ε ("eps") or the
    ε̂ whose implied x̂0 = (x_t − √(1−ᾱ)·target)/√ᾱ is the clean crop ("aligned")."""
    images = _coded_images()
    inp, t, target = unet_batch(images, _cfg(objective), AB, torch.Generator().manual_seed(3))
    assert inp.shape == (N, 6, CROP, CROP) and target.shape == (N, 3, CROP, CROP)
    assert t.dtype == torch.float32 and set(t.tolist()) <= {0.0, 1.0}
    xt, c = inp[:, :3], inp[:, 3:]
    offsets = set()
    for i in range(N):
        # every pixel value names its place in image i, so the window the condition shows is unique
        crops = {(oy, ox): images[i, :, oy:oy + CROP, ox:ox + CROP] for oy in range(5) for ox in range(5)}
        matches = {o: (c[i] == w).all(0) for o, w in crops.items()}
        (oy, ox), known = max(matches.items(), key=lambda kv: int(kv[1].sum()))
        assert int(known.sum()) == 8, f"sample {i}: {int(known.sum())} known pixels, expected 8 of 16"
        assert sum(int(m.any()) for m in matches.values()) == 1  # one window only
        blocks = known.view(2, 2, 2, 2)  # the 2×2 cells are all known or all unknown
        assert torch.equal(blocks, blocks[:, :1, :, :1].expand_as(blocks))
        x = crops[(oy, ox)]
        offsets.add((oy, ox))
        torch.testing.assert_close(c[i][:, known], x[:, known], rtol=0, atol=0)
        a, s = (0.8, 0.6) if t[i] == 0 else (0.6, 0.8)
        start = x if objective == "eps" else c[i]
        eps = (xt[i] - a * start) / s  # the noise x_t was made with
        assert 0.5 < float(eps.std()) < 1.6  # unit Gaussian noise
        if objective == "eps":
            torch.testing.assert_close(target[i], eps, rtol=0, atol=2e-6)
        else:
            torch.testing.assert_close((xt[i] - s * target[i]) / a, x, rtol=0, atol=2e-6)
            torch.testing.assert_close(target[i][:, known], eps[:, known], rtol=0, atol=2e-6)
    assert len(offsets) > 1  # random crops, not one fixed window


def test_unet_batch_whole_image_without_crop():
    cfg = _cfg("eps")
    cfg.train.crop_size = 0
    images = _coded_images()
    inp, _, _ = unet_batch(images, cfg, AB, torch.Generator().manual_seed(0))
    c = inp[:, 3:]
    assert c.shape[-1] == SIZE
    for i in range(N):
        known = (c[i] == images[i]).all(0)
        assert int(known.sum()) == SIZE * SIZE // 2  # 16 cells of 2×2, 8 of them unknown


class _Scale(nn.Module):
    """output = w · input with w = 0: the prediction is 0, the loss the mean square of the target."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x, t=None):
        return self.w * (x if t is None else x[:, :3])


def test_base_loss_is_the_feature_mse_averaged_over_samples():
    """Features constant per sample (1, 2, 3), reconstruction 0, batches of 2 and 1: each batch's
    loss is mean(f²) and the epoch loss weights batches by size, (1 + 4 + 9)/3 = 14/3 whatever
    the order (a plain mean of batch losses would be 5.75 or 3.25 or 4.25)."""
    feats = torch.stack([torch.full((4, 2, 2), v) for v in (1.0, 2.0, 3.0)])
    stub = _Scale()
    model = SimpleNamespace(base=SimpleNamespace(transformer=stub))
    cfg = SimpleNamespace(train=SimpleNamespace(base_epochs=3, seed=0, batch_size=2))
    state = SimpleNamespace(info={"base_epoch": 0})
    report = TrainReport()
    opt = torch.optim.SGD(stub.parameters(), lr=0.0)  # the loss stays put
    _train_base(model, feats, cfg, state, {"base": opt}, report, False, lambda: None)
    assert report.base_losses == pytest.approx([14 / 3] * 3, abs=1e-6)
    assert state.info["base_epoch"] == 3


def test_unet_loss_weights_each_sample_by_min_snr():
    """Prediction 0, so a sample's loss is mean(target²); the batch loss is the mean of those
    weighted by min(SNR_t, γ)/SNR_t, SNR_t = ᾱ_t/(1 − ᾱ_t), ᾱ_t the product of (1 − β) to t."""
    cfg = preset("tiny").replace(**{"train.unet_iters": 3, "train.checkpoint_every": 100, "train.batch_size": 8})
    gamma = cfg.diffusion.min_snr_gamma
    assert gamma == 5.0
    images = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    stub = _Scale()
    state = TrainState(Path("never-written"), cfg)  # no snapshot is saved: save is a no-op below
    report = TrainReport()
    _train_unet(SimpleNamespace(unet=stub), images, cfg, state, {"unet": torch.optim.SGD(stub.parameters(), lr=0.0)},
                report, False, lambda: None)
    betas = np.linspace(1e-4, 0.02, 1000)
    ab32 = torch.from_numpy(Schedule.from_config(cfg.diffusion).alphas_cumprod).float()
    weights_seen = []
    for it, got in enumerate(report.unet_losses):
        _, t, target = _unet_batch_for(it, images, cfg, ab32, False)
        per_sample = target.double().pow(2).mean((1, 2, 3))
        w = []
        for ti in t.long().tolist():
            ab = float(np.prod(1 - betas[: ti + 1]))
            snr = ab / (1 - ab)
            w.append(min(snr, gamma) / snr)
        weights_seen += w
        assert got == pytest.approx(float((torch.tensor(w, dtype=torch.float64) * per_sample).mean()), rel=1e-5)
    assert len(report.unet_losses) == 3
    assert min(weights_seen) < 0.5 and max(weights_seen) == 1.0  # the weighting really acts in these batches


# --------------------------------------------------------------------------- base model
def _net_input(backbone: Backbone, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = backbone.net.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    try:
        backbone.stages(x)
    finally:
        handle.remove()
    return seen[0]


def _red_and_grey() -> torch.Tensor:
    """Pure red and mid grey in [-1, 1], 32×32."""
    x = torch.zeros(2, 3, 32, 32)
    x[0, 0], x[0, 1:] = 1.0, -1.0
    return x


def test_lite0_backbone_sees_the_image_as_it_is():
    """tf_efficientnet_lite0 (the TF-Lite model) was trained on (v − 127)/128 ≈ [-1, 1] inputs:
    timm's mean = std = 0.5 turns ((x + 1)/2 − 0.5)/0.5 back into x exactly."""
    bb = Backbone(BackboneConfig(name="tf_efficientnet_lite0", weights="none"), 2)
    x = _red_and_grey()
    assert torch.equal(_net_input(bb, x), x)


def test_imagenet_backbone_input_normalisation_by_hand():
    """efficientnet_b4 takes ImageNet-normalised RGB: ((x + 1)/2 − mean)/std per channel."""
    bb = Backbone(BackboneConfig(name="efficientnet_b4", weights="none"), 2)
    got = _net_input(bb, _red_and_grey())
    red = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0 - 0.406) / 0.225]
    grey = [(0.5 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.5 - 0.406) / 0.225]
    for img, want in ((0, red), (1, grey)):
        for c in range(3):
            torch.testing.assert_close(got[img, c], torch.full((32, 32), want[c]), rtol=0, atol=1e-6)
    assert red[0] == pytest.approx(2.2489083) and red[1] == pytest.approx(-2.0357143)


def test_base_heatmap_is_the_channel_l2_norm():
    f = torch.tensor([[[[3.0, 0.5]], [[4.0, 1.0]], [[0.0, -1.0]]]])  # 1×3×1×2
    rec = torch.tensor([[[[0.0, 0.5]], [[0.0, 0.0]], [[0.0, 1.0]]]])
    # pixel 0: ‖(3, 4, 0)‖ = 5; pixel 1: ‖(0, 1, −2)‖ = √5
    torch.testing.assert_close(BaseModel.heatmap(f, rec), torch.tensor([[[5.0, math.sqrt(5)]]]))


class _PlusOne(nn.Module):
    def forward(self, feats):
        return feats + 1.0


def test_base_model_map_is_the_norm_over_all_feature_channels():
    """A reconstruction off by 1 in each of the C = 16 + 24 + 40 + 112 = 192 lite0 channels
    gives √192 at every token, on the S/16 grid."""
    model = BaseModel(preset("tiny")).eval()
    model.transformer = _PlusOne()
    out = model(_red_and_grey())
    assert out.shape == (2, 2, 2)
    torch.testing.assert_close(out, torch.full((2, 2, 2), math.sqrt(192)), rtol=1e-6, atol=0)
