"""DiffusionAD's parts against known answers: the norm-guided combination and its closed form,
the focal loss on hand cases, the segmentation net's shapes and widths, the training anomalies,
the loss terms of one training step, the detector's scores, config and checkpoint round trips."""

from __future__ import annotations

import json
import math

import pytest
import torch

from drdc_trt.checkpoint import CheckpointError, load_config, save_checkpoint
from drdc_trt.loading import load_checkpoint
from drdc_trt.config import ModelConfig, missing_fields, preset
from drdc_trt.data.anomalies import anomaly_batch, blend
from drdc_trt.schedule import Schedule
from drdc_trt.methods.diffusionad.detector import DiffusionADDetector
from drdc_trt.methods.diffusionad.model import DiffusionADModel, DiffusionADStats
from drdc_trt.methods.diffusionad.segmentation import SegmentationNet
from drdc_trt.methods.diffusionad.loss import focal_loss, segmentation_loss, smooth_l1
from drdc_trt.methods.diffusionad.norm_guided import closed_form, guidance_weight, norm_guided_x0
from drdc_trt.schedule import predict_x0
from drdc_trt.methods.diffusionad.train import Batch, seg_lr, training_batch, training_losses


def tiny_model(seed: int = 0) -> DiffusionADModel:
    """The tiny preset's networks with every weight perturbed (the U-Net's zero-initialised output
    layers would otherwise predict ε = 0 and hide per-sample mistakes)."""
    torch.manual_seed(seed)
    model = DiffusionADModel(preset("tiny", "diffusionad"))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.unet.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


# ----------------------------------------------------------------- norm-guided combination
def test_unclamped_norm_guided_x0_is_the_closed_form_blend():
    ab = Schedule.linear().alphas_cumprod
    ab_a, ab_b = float(ab[200]), float(ab[400])
    assert guidance_weight(ab_a) == pytest.approx(0.344, abs=5e-4)  # the λ for t_a = 200, w = 1
    g = torch.Generator().manual_seed(0)
    x_a, e_a, x_b, e_b = (torch.randn(2, 3, 8, 8, generator=g) for _ in range(4))
    for w in (1.0, 0.4):
        x0_g, x0_b = norm_guided_x0(x_a, e_a, x_b, e_b, ab_a, ab_b, w, clamp=False)
        want = closed_form(predict_x0(x_a, ab_a, e_a), x0_b, ab_a, w)
        torch.testing.assert_close(x0_g, want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(x0_b, (x_b - math.sqrt(1 - ab_b) * e_b) / math.sqrt(ab_b))


def test_per_image_timesteps_match_one_call_per_image():
    ab = Schedule.linear().alphas_cumprod
    g = torch.Generator().manual_seed(1)
    x_a, e_a, x_b, e_b = (torch.randn(2, 3, 4, 4, generator=g) for _ in range(4))
    ab_a, ab_b = torch.tensor([ab[10], ab[250]]), torch.tensor([ab[300], ab[900]])
    both, _ = norm_guided_x0(x_a, e_a, x_b, e_b, ab_a, ab_b, 1.0)
    for i in range(2):
        one, _ = norm_guided_x0(x_a[i:i + 1], e_a[i:i + 1], x_b[i:i + 1], e_b[i:i + 1], float(ab_a[i]),
                                float(ab_b[i]), 1.0)
        torch.testing.assert_close(both[i:i + 1], one)


def test_clamps_apply_to_x0_b_and_to_x0_g():
    # ᾱ_a = 0.64 (√ 0.8, √(1−ᾱ) 0.6), ᾱ_b = 0.25 (√ 0.5): λ = 1 − 0.64 = 0.36
    one = lambda v: torch.full((1, 1, 1, 1), float(v))
    x_a, e_a = one(0.5), one(0.5)                    # x̂0(x_a, e_a) = (0.5 − 0.3)/0.8 = 0.25
    x_b, e_b = one(1.5), one(0.0)                    # x̂0(x_b, e_b) = 1.5/0.5 = 3 → clamped to 1
    got, x0_b = norm_guided_x0(x_a, e_a, x_b, e_b, 0.64, 0.25, 1.0)
    assert float(x0_b) == pytest.approx(1.0)
    assert float(got) == pytest.approx(0.64 * 0.25 + 0.36 * 1.0)  # 0.52
    raw, _ = norm_guided_x0(x_a, e_a, x_b, e_b, 0.64, 0.25, 1.0, clamp=False)
    assert float(raw) == pytest.approx(0.64 * 0.25 + 0.36 * 3.0)  # 1.24
    # x̂0(x_a, e_a) = 2 (x_a = 1.6 + 0.3 = 1.9): x0_g = 0.64·2 + 0.36·1 = 1.64 → clamped to 1
    got, _ = norm_guided_x0(one(1.9), e_a, one(0.5), e_b, 0.64, 0.25, 1.0)
    assert float(got) == pytest.approx(1.0)


# ----------------------------------------------------------------- losses
def test_focal_loss_on_hand_cases():
    a, g = 0.5, 4.0
    p, y = torch.tensor([0.9, 0.2, 0.7]), torch.tensor([1.0, 0.0, 0.0])
    want = [-a * (1 - 0.9) ** g * math.log(0.9),   # y = 1: p_t = p
            -a * (1 - 0.8) ** g * math.log(0.8),   # y = 0: p_t = 1 − p
            -a * (1 - 0.3) ** g * math.log(0.3)]
    assert float(focal_loss(p, y, a, g)) == pytest.approx(sum(want) / 3, rel=1e-5)
    assert float(focal_loss(p[:1], y[:1], a, g)) == pytest.approx(want[0], rel=1e-5)
    assert float(focal_loss(p, y, 0.25, 0.0)) == pytest.approx(-0.25 * (math.log(0.9) + math.log(0.8) + math.log(0.3)) / 3,
                                                              rel=1e-5)  # γ = 0: α·BCE
    assert float(smooth_l1(p, y)) == pytest.approx(0.5 * (0.1 ** 2 + 0.2 ** 2 + 0.7 ** 2) / 3, rel=1e-5)
    cfg = preset("tiny", "diffusionad").diffusionad
    focal, sl1 = segmentation_loss(p, y, cfg)
    assert float(focal) == pytest.approx(sum(want) / 3, rel=1e-5) and float(sl1) == float(smooth_l1(p, y))


# ----------------------------------------------------------------- segmentation net
def test_segmentation_net_shapes_and_widths():
    net = SegmentationNet(base_width=4)
    with torch.no_grad():
        out = net.eval()(torch.randn(2, 6, 64, 64))
    assert out.shape == (2, 1, 64, 64) and float(out.min()) >= 0 and float(out.max()) <= 1
    assert net.widths == (4, 8, 16, 32, 32, 32)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].in_channels == 6 and convs[0].out_channels == 4 and convs[-1].out_channels == 1
    assert max(c.out_channels for c in convs) == 32
    # doubling the base width doubles every layer's width: ~4× the weights
    n = lambda w: sum(p.numel() for p in SegmentationNet(w).parameters())
    assert 3.8 < n(8) / n(4) < 4.1
    widths = {name: preset(name, "diffusionad").diffusionad.seg_base_width for name in ("tiny", "small", "fast")}
    assert widths == {"tiny": 8, "small": 16, "fast": 64}
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.randn(1, 6, 48, 48))


# ----------------------------------------------------------------- training anomalies
def test_blend_on_a_hand_case():
    x, src, m = torch.tensor([0.5, 0.5]), torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0])
    assert blend(x, src, m, 0.25).tolist() == pytest.approx([0.75 * 1.0 + 0.25 * 0.5, 0.5])


def test_anomaly_batch_clean_share_masks_and_beta():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(48, 3, 32, 32, generator=g) * 2 - 1
    out, masks, betas = anomaly_batch(x, torch.Generator().manual_seed(1), 0.5, (0.2, 0.8))
    anomalous = masks.flatten(1).amax(1) > 0
    assert 14 <= int(anomalous.sum()) <= 34  # Binomial(48, 0.5): outside this range p < 0.2 %
    assert torch.equal(out[~anomalous], x[~anomalous]) and bool((betas[~anomalous] == 1).all())
    assert set(masks.unique().tolist()) == {0.0, 1.0}
    b = betas[anomalous]
    assert float(b.min()) >= 0.2 and float(b.max()) < 0.8
    for i in anomalous.nonzero().flatten().tolist():
        m = masks[i]
        assert torch.equal(out[i] * (1 - m), x[i] * (1 - m))  # off the mask: untouched
        # on it: (1 − β)·src + β·x with a source in [0, 1]
        src = ((out[i] + 1) / 2 - betas[i] * (x[i] + 1) / 2) / (1 - betas[i])
        on = m.expand_as(src) > 0
        assert float(src[on].min()) > -1e-4 and float(src[on].max()) < 1 + 1e-4
    assert not bool(anomaly_batch(x[:8], g, 0.0)[1].any())
    assert bool((anomaly_batch(x[:8], g, 1.0)[1].flatten(1).amax(1) == 1).all())


# ----------------------------------------------------------------- the training step
def _fixed_batch(model) -> Batch:
    s = model.cfg.image_size
    g = torch.Generator().manual_seed(5)
    x = torch.rand(4, 3, s, s, generator=g) * 2 - 1
    mask = torch.zeros(4, 1, s, s)
    mask[2, :, 4:12, 4:20] = 1  # images 2 and 3 anomalous, 0 and 1 clean
    mask[3, :, 16:30, 8:14] = 1
    return Batch(x, mask, torch.tensor([0, 120, 299, 40]), torch.tensor([300, 999, 650, 410]),
                 torch.randn(4, 3, s, s, generator=g), torch.randn(4, 3, s, s, generator=g))


def test_training_step_loss_terms_by_hand():
    model = tiny_model().train()
    model.seg.eval()  # batch-independent BN, so the terms can be recomputed image by image
    b = _fixed_batch(model)
    with torch.no_grad():
        terms = training_losses(model, b)
    ab = torch.from_numpy(Schedule.linear().alphas_cumprod).float()

    @torch.no_grad()
    def eps_loss(i: int, t: int, noise: torch.Tensor) -> torch.Tensor:
        x_t = ab[t].sqrt() * b.x[i:i + 1] + (1 - ab[t]).sqrt() * noise[i:i + 1]
        return (model.unet(x_t, torch.tensor([float(t)])) - noise[i:i + 1]).pow(2).mean()

    want = sum(eps_loss(i, int(b.t_s[i]), b.noise_s) + eps_loss(i, int(b.t_b[i]), b.noise_b) for i in (0, 1)) / 2
    assert float(terms["noise"]) == pytest.approx(float(want), rel=1e-5)
    with torch.no_grad():
        seg = model.segment(b.x, terms["x0_g"])
    cfg = model.cfg.diffusionad
    assert float(terms["focal"]) == pytest.approx(float(focal_loss(seg, b.mask, 0.5, 4.0)), rel=1e-5)
    assert float(terms["smooth_l1"]) == pytest.approx(float(smooth_l1(seg, b.mask)), rel=1e-5)
    assert float(terms["loss"]) == pytest.approx(
        float(terms["noise"] + cfg.focal_weight * terms["focal"] + cfg.smooth_l1_weight * terms["smooth_l1"]), rel=1e-6)

    # An anomalous image's noise is no target of the noise loss; a clean image's is.
    other = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(9))
    for name in ("noise_s", "noise_b"):
        changed = getattr(b, name).clone()
        changed[3] = other
        kw = {**b.__dict__, name: changed}
        with torch.no_grad():
            assert float(training_losses(model, Batch(**kw))["noise"]) == pytest.approx(float(terms["noise"]), rel=1e-6)
        changed = getattr(b, name).clone()
        changed[0] = other
        kw = {**b.__dict__, name: changed}
        with torch.no_grad():
            assert abs(float(training_losses(model, Batch(**kw))["noise"]) - float(terms["noise"])) > 1e-4


def test_segmentation_loss_reaches_the_unet_and_an_all_anomalous_batch_has_no_noise_loss():
    model = tiny_model().train()
    b = _fixed_batch(model)
    b.mask[0, :, :4, :4] = 1
    b.mask[1, :, -4:, -4:] = 1
    terms = training_losses(model, b)
    assert float(terms["noise"].detach()) == 0.0
    (terms["focal"] + terms["smooth_l1"]).backward()  # x0_g not detached: the U-Net gets a gradient
    grads = [p.grad for p in model.unet.parameters() if p.grad is not None]
    assert grads and sum(float(gr.abs().sum()) for gr in grads) > 0


def test_training_batches_draw_the_configured_ranges():
    cfg = preset("tiny", "diffusionad").replace(**{"train.batch_size": 16})
    images = torch.rand(6, 3, 32, 32) * 2 - 1
    ts, tb, anomalous = [], [], []
    for it in range(8):
        b = training_batch(it, images, cfg)
        ts += b.t_s.tolist()
        tb += b.t_b.tolist()
        anomalous += (b.mask.flatten(1).amax(1) > 0).tolist()
    assert 0 <= min(ts) and max(ts) <= 299 and 300 <= min(tb) and max(tb) <= 999
    assert max(ts) > 250 and min(tb) < 350 and max(tb) > 950  # the whole ranges, not a corner
    assert 0.35 < sum(anomalous) / len(anomalous) < 0.65  # p = 0.5 over 128 images
    assert torch.equal(training_batch(3, images, cfg).x, training_batch(3, images, cfg).x)  # seeded by index


def test_segmentation_lr_is_cosine_annealed():
    cfg = preset("tiny", "diffusionad").replace(**{"diffusionad.seg_lr_t_max": 100})
    assert seg_lr(cfg, 0) == pytest.approx(1e-5)
    assert seg_lr(cfg, 50) == pytest.approx(0.5e-5)
    assert seg_lr(cfg, 25) == pytest.approx(1e-5 * (1 + math.cos(math.pi / 4)) / 2)
    assert seg_lr(cfg, 100) == pytest.approx(0.0, abs=1e-20) and seg_lr(cfg, 200) == pytest.approx(1e-5)


# ----------------------------------------------------------------- detector
def test_detector_scores_batches_and_one_unet_call_per_batch():
    model = tiny_model().eval()
    model.stats = DiffusionADStats(image_threshold=0.5, pixel_threshold=0.5)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    calls = []
    model.unet.register_forward_hook(lambda m, inp, out: calls.append((inp[0].shape[0], inp[1].tolist())))
    det = DiffusionADDetector(model, seed=4)
    out = det.predict(x, batch_size=3)
    assert calls == [(6, [200.0, 400.0] * 3)]  # 2 rows per image, one call
    singles = [det.predict(x[i:i + 1]) for i in range(3)]
    for i, s in enumerate(singles):
        torch.testing.assert_close(out.anomaly_map[i:i + 1], s.anomaly_map, rtol=1e-5, atol=1e-6)
    k = model.cfg.top_k
    assert k == 1  # 50·(32/256)² = 0.78 → 1
    torch.testing.assert_close(out.pred_score, out.anomaly_map.flatten(1).max(1).values)
    assert torch.equal(out.pred_label, out.pred_score > 0.5) and torch.equal(out.pred_mask, out.anomaly_map > 0.5)
    # another seed: other noises, another map
    assert not torch.allclose(DiffusionADDetector(model, seed=5).predict(x).anomaly_map, out.anomaly_map)
    # the map is the segmentation of cat(x, x0_g) with x0_g from the norm-guided formula
    ab = torch.from_numpy(Schedule.linear().alphas_cumprod).float()
    x_a = ab[200].sqrt() * x + (1 - ab[200]).sqrt() * det.noise_a
    x_b = ab[400].sqrt() * x + (1 - ab[400]).sqrt() * det.noise_b
    with torch.no_grad():
        e_a, e_b = model.unet(x_a, torch.full((3,), 200.0)), model.unet(x_b, torch.full((3,), 400.0))
        x0_g, _ = norm_guided_x0(x_a, e_a, x_b, e_b, float(ab[200]), float(ab[400]))
        want = model.seg(torch.cat([x, x0_g], 1))[:, 0]
    torch.testing.assert_close(out.anomaly_map, want, rtol=1e-4, atol=1e-5)


def test_top_k_scales_with_the_image_area():
    cfg = preset("tiny", "diffusionad")
    assert [cfg.replace(image_size=s).top_k for s in (256, 224, 64, 32)] == [50, 38, 3, 1]  # round(50·(S/256)²)
    maps = torch.arange(16.0).view(1, 4, 4)
    from drdc_trt.methods.diffusionad.detector import image_score

    assert float(image_score(maps, 3)) == pytest.approx((15 + 14 + 13) / 3)


# ----------------------------------------------------------------- config and checkpoints
def test_config_defaults_presets_and_old_files():
    a = ModelConfig().diffusionad
    assert (a.t_a, a.t_b, a.w, a.train_ts, a.train_tb) == (200, 400, 1.0, (0, 299), (300, 999))
    assert (a.focal_alpha, a.focal_gamma, a.focal_weight, a.smooth_l1_weight) == (0.5, 4.0, 5.0, 1.0)
    assert (a.anomaly_prob, a.beta_range, a.unet_lr, a.seg_lr) == (0.5, (0.2, 0.8), 1e-4, 1e-5)
    assert ModelConfig().method == "drdc" and preset("small").method == "drdc"
    for name in ("tiny", "small", "fast"):
        c = preset(name, "diffusionad")
        d = preset(name)
        assert c.method == "diffusionad" and c.unet.in_channels == 3 and c.image_size == d.image_size
        assert c.unet.model_channels == d.unet.model_channels and c.train.unet_iters == d.train.unet_iters
    old = preset("tiny").to_dict()
    del old["method"], old["diffusionad"]  # a config written before DiffusionAD
    assert ModelConfig.from_dict(old).method == "drdc" and missing_fields(old) == []
    new = preset("tiny", "diffusionad").to_dict()
    del new["diffusionad"]
    assert missing_fields(new) == ["diffusionad"]  # a DiffusionAD config must carry its section
    assert ModelConfig.from_dict(json.loads(preset("tiny", "diffusionad").to_json())) == preset("tiny", "diffusionad")


@pytest.mark.parametrize("change,match", [
    ({"diffusionad.t_a": 400}, "t_a=400, t_b=400"),
    ({"diffusionad.train_tb": [300, 1000]}, "train_tb"),
    ({"diffusionad.beta_range": [0.8, 0.2]}, "beta_range"),
    ({"diffusionad.anomaly_sources": ["dtd"]}, "anomaly_sources"),
    ({"unet.in_channels": 6}, "in_channels=3"),
    ({"image_size": 48}, "multiples of 32"),
    ({"method": "draem"}, "method='draem'"),
])
def test_config_refuses_bad_diffusionad_values(change, match):
    with pytest.raises(ValueError, match=match):
        preset("tiny", "diffusionad").replace(**change)


def test_checkpoint_round_trip_and_bad_stats(tmp_path):
    model = tiny_model()
    model.stats = DiffusionADStats(image_threshold=0.7, pixel_threshold=0.6, num_images=3)
    save_checkpoint(model, tmp_path / "ck")
    assert load_config(tmp_path / "ck").method == "diffusionad"
    back = load_checkpoint(tmp_path / "ck")
    assert isinstance(back, DiffusionADModel) and back.stats == model.stats
    for k, v in model.trainable_state_dict().items():
        assert torch.equal(back.trainable_state_dict()[k], v), k
    stats = tmp_path / "ck" / "stats.json"
    stats.write_text(json.dumps({"image_threshold": "high", "pixel_threshold": 0.5, "num_images": 1,
                                 "detector_seed": 0}))
    with pytest.raises(CheckpointError, match="stats.json: image_threshold must be a number"):
        load_checkpoint(tmp_path / "ck")
    stats.write_text(json.dumps({"image_threshold": 0.5}))
    with pytest.raises(CheckpointError, match="stats.json.*missing"):
        load_checkpoint(tmp_path / "ck")
