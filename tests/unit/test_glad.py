"""GLAD's parts against known answers: the anomaly-aware target, the training anomalies (threshold,
grid shuffle), the feature distances and the blur, the per-row rule of the adaptive loop on a
hand-made score sequence, rows that finish early staying bit-identical, the detector's scores, config
and checkpoint round trips."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from drdc_trt.checkpoint import CheckpointError, load_config, save_checkpoint
from drdc_trt.loading import load_checkpoint
from drdc_trt.config import ModelConfig, missing_fields, preset
from drdc_trt.data.anomalies import anomaly_batch, grid_shuffled, perlin, perlin_mask
from drdc_trt.schedule import Schedule, ddim_timesteps
from drdc_trt.methods.glad.detector import GLADBatch, GLADDetector
from drdc_trt.methods.glad.model import GLADModel, GLADStats
from drdc_trt.methods.glad.adaptive import (
    FALLBACK,
    NONE,
    TRIGGERED,
    adaptive_loop,
    ddim_next,
    decide,
    saff_blend,
    saff_weight,
    steps_histogram,
)
from drdc_trt.methods.glad.features import gaussian_blur, nearest_patch_distance, top_k_score
from drdc_trt.methods.glad.target import anomaly_aware_target, mixed_source
from drdc_trt.schedule import predict_x0, q_sample
from drdc_trt.methods.glad.train import training_batch
from drdc_trt.study import carrying_config

AB = torch.from_numpy(Schedule.linear().alphas_cumprod).float()


def tiny_model(seed: int = 0, tau: float = math.inf) -> GLADModel:
    """The tiny preset with every U-Net weight perturbed (its zero-initialised output layers would
    otherwise predict ε = 0)."""
    torch.manual_seed(seed)
    model = GLADModel(preset("tiny", "glad"), GLADStats(tau=tau, image_threshold=0.5, pixel_threshold=0.5))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.unet.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


# ----------------------------------------------------------------- anomaly-aware target
def test_target_hand_case_recovers_the_normal_image():
    # ᾱ = 0.64 (√ᾱ = 0.8, √(1 − ᾱ) = 0.6), t = 500 of T = 1000: α = 0.5
    x_n, x_a, eps = torch.full((1, 1, 1, 1), 0.2), torch.full((1, 1, 1, 1), 1.0), torch.full((1, 1, 1, 1), 0.5)
    t, ab = torch.tensor([500]), torch.tensor([0.64])
    assert float(mixed_source(x_n, x_a, t, 1000)) == pytest.approx(0.6)       # 0.5·1 + 0.5·0.2
    x_t, target = anomaly_aware_target(x_n, x_a, t, ab, eps, 1000)
    assert float(x_t) == pytest.approx(0.8 * 0.6 + 0.6 * 0.5)                  # 0.78
    assert float(target) == pytest.approx(0.5 + 0.8 / 0.6 * (0.6 - 0.2))       # 1.0333…
    assert float(predict_x0(x_t, ab, target)) == pytest.approx(0.2, abs=1e-6)  # x_n, not x_s = 0.6
    # t = 0: x_s = x_n and the target is the plain noise
    x_t, target = anomaly_aware_target(x_n, x_a, torch.tensor([0]), ab, eps, 1000)
    assert torch.equal(target, eps) and float(x_t) == pytest.approx(0.8 * 0.2 + 0.6 * 0.5)


def test_target_recovers_x_n_per_image_to_float_precision():
    g = torch.Generator().manual_seed(0)
    x_n, x_a, eps = (torch.rand(6, 3, 8, 8, generator=g) * 2 - 1 for _ in range(3))
    t = torch.tensor([0, 10, 250, 500, 900, 999])
    x_t, target = anomaly_aware_target(x_n.double(), x_a.double(), t, AB[t].double(), eps.double(), 1000)
    torch.testing.assert_close(predict_x0(x_t, AB[t].double(), target), x_n.double(), rtol=0, atol=1e-12)
    x_s = mixed_source(x_n.double(), x_a.double(), t, 1000)
    torch.testing.assert_close(x_t, q_sample(x_s, AB[t].double(), eps.double()), rtol=0, atol=1e-12)


def test_training_batch_targets_lead_to_clean_crops():
    cfg = preset("tiny", "glad").replace(**{"glad.anomaly_prob": 1.0})
    images = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    b = training_batch(3, images, cfg, AB)
    assert torch.equal(training_batch(3, images, cfg, AB).x_t, b.x_t)  # seeded by the iteration
    assert bool((b.mask.flatten(1).amax(1) == 1).all())                  # p = 1: every image has one
    x0 = predict_x0(b.x_t, AB[b.t], b.target)
    # the implied x̂0 is one of the (uncropped, crop 0 = whole image) normal training images
    dist = (x0.unsqueeze(1) - images.unsqueeze(0)).abs().flatten(2).amax(2)
    assert float(dist.amin(1).max()) < 1e-3


# ----------------------------------------------------------------- training anomalies
def test_perlin_mask_threshold_is_a_parameter():
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    m = perlin_mask(32, g1, threshold=0.3)
    # the same draws by hand: lattice, rotation, then noise > 0.3
    from drdc_trt.data.anomalies import _lattice

    want = (torch.rot90(perlin(32, _lattice(32, g2), g2), int(torch.randint(0, 4, (1,), generator=g2))) > 0.3)
    assert torch.equal(m, want.float())
    assert float(perlin_mask(32, torch.Generator().manual_seed(4)).sum()) < float(m.sum())  # 0.5 covers less


def test_grid_shuffle_permutes_the_8x8_cells():
    img = torch.arange(64, dtype=torch.float32).view(8, 8).repeat_interleave(2, 0).repeat_interleave(2, 1)
    img = img.expand(3, 16, 16).clone()
    out = grid_shuffled(img, torch.Generator().manual_seed(0))
    cells = out[0].unfold(0, 2, 2).unfold(1, 2, 2)            # 8×8 cells of 2×2
    assert bool((cells == cells[..., :1, :1]).all())           # every cell moved whole
    assert sorted(cells[..., 0, 0].flatten().tolist()) == list(range(64))
    assert not torch.equal(out, img) and torch.equal(out[0], out[2])
    # a side the grid does not divide: cells of unequal size swap only among their size
    odd = torch.rand(3, 20, 20)
    got = grid_shuffled(odd, torch.Generator().manual_seed(1))
    assert sorted(got.flatten().tolist()) == sorted(odd.flatten().tolist())


def test_anomaly_batch_grid_source_and_threshold():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    out, masks, betas = anomaly_batch(x, torch.Generator().manual_seed(5), 1.0, (0.0, 0.8), ("grid",), 0.3)
    assert bool((masks.flatten(1).amax(1) == 1).all()) and bool(((betas >= 0) & (betas < 0.8)).all())
    assert torch.equal(out * (1 - masks), x * (1 - masks))       # outside the mask: untouched
    with pytest.raises(ValueError, match="sources"):
        anomaly_batch(x, torch.Generator(), 1.0, (0.0, 0.8), ("dtd",))


# ----------------------------------------------------------------- distances, blur, score
def test_nearest_patch_distance_hand_case():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).T.reshape(1, 2, 1, 2)     # patches (1, 0) and (0, 1)
    r = torch.tensor([[2.0, 0.0], [1.0, 1.0]]).T.reshape(1, 2, 1, 2)     # patches (2, 0) and (1, 1)
    got = nearest_patch_distance(q, r)
    torch.testing.assert_close(got, torch.tensor([[[0.0, 1 - 1 / math.sqrt(2)]]]))
    assert float(nearest_patch_distance(r, r).abs().max()) < 1e-6


def test_gaussian_blur_matches_scipy():
    from scipy.ndimage import gaussian_filter

    m = torch.rand(2, 24, 24, generator=torch.Generator().manual_seed(3))
    for sigma in (0.75, 1.5):
        want = np.stack([gaussian_filter(a, sigma, mode="mirror", truncate=4.0) for a in m.double().numpy()])
        np.testing.assert_allclose(gaussian_blur(m, sigma).numpy(), want, atol=1e-6)
    assert torch.equal(gaussian_blur(m, 0.0), m)


def test_top_k_score():
    maps = torch.tensor([[[1.0, 5.0], [3.0, 2.0]]])
    assert float(top_k_score(maps, 2)) == 4.0 and float(top_k_score(maps, 10)) == 2.75


# ----------------------------------------------------------------- the per-row rule
def test_saff_weight_and_blend_values():
    # default, the authors' σ(A): σ(0) = 1/2, σ(±ln 3) = 3/4, 1/4, σ(ln 9) = 9/10 (size 2: no resampling)
    ln3 = math.log(3.0)
    A = torch.tensor([[[0.0, ln3], [-ln3, 2 * ln3]]])
    torch.testing.assert_close(saff_weight(A, (2, 2)), torch.tensor([[[[0.5, 0.75], [0.25, 0.9]]]]))
    # σ is smooth: a change of A moves w by at most a quarter of it, whatever the other patches
    d = torch.full_like(A, 1e-3)
    assert float((saff_weight(A + d, (2, 2)) - saff_weight(A, (2, 2))).abs().max()) <= 0.25e-3 * (1 + 1e-3)
    with pytest.raises(ValueError, match="saff weight 'max'"):
        saff_weight(A, (2, 2), "max")
    A = torch.tensor([[[0.5, 1.0], [1.5, 2.5]]])
    w = saff_weight(A, (2, 2), "minmax")                         # min–max: (A − 0.5)/2
    torch.testing.assert_close(w, torch.tensor([[[[0.0, 0.25], [0.5, 1.0]]]]))
    got = saff_blend(torch.ones(1, 1, 2, 2), -torch.ones(1, 1, 2, 2), w)
    torch.testing.assert_close(got, torch.tensor([[[[-1.0, -0.5], [0.0, 1.0]]]]))
    assert torch.equal(saff_weight(torch.full((1, 2, 2), 0.7), (4, 4), "minmax"), torch.zeros(1, 1, 4, 4))  # flat A


def test_decide_triggers_above_tau_and_falls_back_below_min_step():
    score = torch.tensor([0.5, 0.2, 0.2, 0.9])
    checking = torch.tensor([True, True, True, False])
    trig, fall = decide(score, checking, 0.3, 400, 350)
    assert trig.tolist() == [True, False, False, False] and fall.tolist() == [False] * 4
    trig, fall = decide(score, checking, 0.3, 349, 350)
    assert trig.tolist() == [True, False, False, False] and fall.tolist() == [False, True, True, False]
    trig, _ = decide(torch.tensor([0.3]), torch.tensor([True]), 0.3, 600, 350)
    assert not bool(trig[0])                                       # strictly above τ


def _eps_stub(x, t, image):
    """Elementwise, bounded, no transcendental functions: a row's value does not depend on its batch
    (it reads its own input image, as a conditioned U-Net does: rows must stay aligned when compacted)."""
    return 1.5 * x / (1 + x.abs()) - 0.5 * x + t / 2000.0 + 0.05 * image


def _dist_stub(x0_in, x0_gen):
    return F.avg_pool2d((x0_in - x0_gen).abs().mean(1, keepdim=True), 4)[:, 0]


@pytest.mark.parametrize("fallback", ["continue", "stop"])
def test_loop_on_a_hand_made_score_sequence(fallback):
    ts = ddim_timesteps(650, 5)                                    # 650, 520, 390, 260, 130
    assert ts == [650, 520, 390, 260, 130]
    # per step, per row: the score (a constant A); row 0 triggers at step 1, row 1 never (falls back at
    # step 3, the first t < 350), row 2 triggers at step 3 (the trigger wins over the fallback)
    scores = [[0.1, 0.1, 0.1], [0.5, 0.2, 0.1], [0.0, 0.2, 0.1], [0.0, 0.2, 0.6], [0.0, 0.0, 0.0]]
    calls = []

    def dist(x0_in, x0_gen):
        k = len(calls)
        calls.append(x0_in.shape[0])
        A = torch.tensor(scores[k]).view(3, 1, 1).expand(3, 4, 4).clone()
        A[:, 0, 0] += 1.0  # not flat: the blend weight σ(A) is larger at one patch
        return A

    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 16, 16, generator=g) * 2 - 1
    noise = torch.randn(x.shape, generator=g)
    seen = {}

    def on_step(k, st):
        seen[k] = (st.x_t.clone(), st.recon.clone(), st.done.clone())

    st = adaptive_loop(x, noise, ts, AB, _eps_stub, dist, tau=0.3, min_step=350, top_k=16, on_step=on_step,
                       fallback=fallback)
    # top-16 of 4×4: the mean of A = score + 1/16
    assert st.trigger_step.tolist() == [1, 3, 3]
    assert st.trigger_kind.tolist() == [TRIGGERED, FALLBACK, TRIGGERED]
    assert st.steps.tolist() == [5, 4 if fallback == "stop" else 5, 5] and st.done.all()
    torch.testing.assert_close(st.max_score, torch.tensor([0.5, 0.2, 0.6]) + 1 / 16)
    assert len(calls) == 4  # after step 3 no row is checking: no feature distance at step 4

    def x0s(x_t, row, k):
        ab = float(AB[ts[k]])
        e = _eps_stub(x_t[row:row + 1], ts[k], x[row:row + 1])
        gen = predict_x0(x_t[row:row + 1], ab, e).clamp(-1, 1)
        inp = predict_x0(q_sample(x[row:row + 1], ab, noise[row:row + 1]), ab, e).clamp(-1, 1)
        return gen, inp, e

    # row 0 at step 1: x_{t'} = DDIM(saff blend), the weight σ(A) (σ(1.5) on the top-left patch, σ(0.5)
    # elsewhere) up-sampled
    gen, inp, e = x0s(seen[0][0], 0, 1)
    a_row = torch.full((1, 1, 4, 4), 0.5)
    a_row[0, 0, 0, 0] = 1.5
    w = F.interpolate(torch.sigmoid(a_row), size=(16, 16), mode="bilinear", align_corners=False)
    assert float(w.max()) == pytest.approx(1 / (1 + math.exp(-1.5)), abs=1e-6)
    want = ddim_next(w * gen + (1 - w) * inp, e, float(AB[ts[2]]))
    assert torch.equal(seen[1][0][0:1], want)
    _, inp, e = x0s(seen[2][0], 1, 3)
    if fallback == "stop":  # row 1: the fallback at step 3 is x0_in, and the row is frozen from then on
        assert torch.equal(st.recon[1:2], inp) and bool(seen[3][2][1])
        assert torch.equal(seen[4][0][1], seen[3][0][1])
    else:  # the authors': x̂0 = x0_in at step 3, a DDIM move from it, then x0_gen at the last step
        assert torch.equal(seen[3][0][1:2], ddim_next(inp, e, float(AB[ts[4]]))) and not bool(seen[3][2][1])
        gen, _, _ = x0s(seen[3][0], 1, 4)
        assert torch.equal(st.recon[1:2], gen) and not torch.equal(st.recon[1:2], inp)
    # row 0 after its trigger: plain DDIM, the last step's x0_gen is its reconstruction
    gen, _, _ = x0s(seen[3][0], 0, 4)
    assert torch.equal(st.recon[0:1], gen)


@pytest.mark.parametrize("fallback", ["continue", "stop"])
def test_finished_rows_stay_bit_identical_and_match_running_alone(fallback):
    ts = ddim_timesteps(650, 10)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 16, 16, generator=g) * 2 - 1
    x = x * torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9, 1.0]).view(-1, 1, 1, 1)
    noise = torch.randn(x.shape, generator=g)
    kw = dict(tau=0.43, min_step=350, top_k=3, fallback=fallback)
    snaps = []
    full = adaptive_loop(x, noise, ts, AB, _eps_stub, _dist_stub, **kw,
                         on_step=lambda k, s: snaps.append((s.x_t.clone(), s.recon.clone(), s.done.clone())))
    # a mix: three rows fall back at step 5 (and stop: 6 U-Net steps; or go on to all 10), three trigger
    # and run all 10
    n = 6 if fallback == "stop" else 10
    assert full.steps.tolist() == [n] * 3 + [10] * 3
    assert full.trigger_kind.tolist() == [FALLBACK] * 3 + [TRIGGERED] * 3
    assert steps_histogram(full.steps) == ({6: 3, 10: 3} if fallback == "stop" else {10: 6})
    for k, (x_t, recon, done) in enumerate(snaps):  # a row that is done never changes again
        for later in snaps[k:]:
            assert torch.equal(later[0][done], x_t[done]) and torch.equal(later[1][done], recon[done])
    # Same shapes, same compiled code: bit for bit. Fewer rows (compacted, or one image alone) is other
    # code: ATen runs an elementwise op's vector path (SLEEF σ, FMA) on whole pairs of vectors and its
    # scalar path (libm) on the rest, so which one a value takes depends on the call's element count
    # (on AVX-512 a 16-element σ of one row's 4×4 A is all scalar, 6 rows' 96 all vector). The two
    # differ by ≤ 1 ulp per op; values stay within |2| (ulp 2^-22), ≤ 4 such roundings a step, 10 steps:
    # ≤ 10 · 4 · 2^-22 ≈ 1e-5. The decisions (steps, trigger step) must not move at all.
    bound = 10 * 4 * 2.0 ** -22
    batch = adaptive_loop(x, noise, ts, AB, _eps_stub, _dist_stub, **kw, compact=False)
    assert torch.equal(batch.recon, full.recon) and torch.equal(batch.steps, full.steps)
    batch = adaptive_loop(x, noise, ts, AB, _eps_stub, _dist_stub, **kw, compact=True)
    assert float((batch.recon - full.recon).abs().max()) <= bound and torch.equal(batch.steps, full.steps)
    for i in range(6):
        alone = adaptive_loop(x[i:i + 1], noise[i:i + 1], ts, AB, _eps_stub, _dist_stub, **kw)
        assert float((alone.recon[0] - full.recon[i]).abs().max()) <= bound, i
        assert int(alone.steps[0]) == int(full.steps[i]) and int(alone.trigger_step[0]) == int(full.trigger_step[i])


def test_compact_loop_skips_unet_rows_of_finished_images():
    ts = ddim_timesteps(650, 10)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(6, 3, 16, 16, generator=g) * 2 - 1) * torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9, 1.0]).view(-1, 1, 1, 1)
    noise = torch.randn(x.shape, generator=g)
    rows = []

    def eps(x_t, t, image):
        rows.append(x_t.shape[0])
        return _eps_stub(x_t, t, image)

    st = adaptive_loop(x, noise, ts, AB, eps, _dist_stub, tau=0.43, min_step=350, top_k=3, compact=True,
                       fallback="stop")
    assert rows == [6] * 6 + [3] * 4 and sum(rows) == int(st.steps.sum()) == 48  # 60 − 12 rows saved
    rows.clear()
    adaptive_loop(x, noise, ts, AB, eps, _dist_stub, tau=0.43, min_step=350, top_k=3, compact=False, fallback="stop")
    assert rows == [6] * 10                                         # fixed shapes: every row, every step
    rows.clear()  # the authors' fallback: a fallen-back row goes on, so every row takes all 10 U-Net steps
    adaptive_loop(x, noise, ts, AB, eps, _dist_stub, tau=0.43, min_step=350, top_k=3, compact=True)
    assert rows == [6] * 10


# ----------------------------------------------------------------- detector
@pytest.fixture
def one_thread():
    """Batch-size comparisons of the adaptive loop on one thread: with two, the convolutions of a
    1- and a 2-image batch round differently (~1e-7) and the loop's nearest-patch choices and
    per-image rescaling of A amplify that (one score moved by 0.03 on this untrained network)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_detector_scores_maps_and_steps(one_thread):
    # τ = 0: a row triggers at the first step where A > 0 anywhere. At step 0 x0_in = x0_gen, so
    # A = 0 exactly (the distance floor: not rounding noise, which used to trigger some rows there
    # and not others, depending on the CPU and the batch); every row triggers at step 1.
    model = tiny_model(tau=0.0)
    g = torch.Generator().manual_seed(7)
    x = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    det = GLADDetector(model, compact=False)
    out = det.predict(x, batch_size=2)
    assert out.trigger_step.tolist() == [1, 1, 1] and out.steps.tolist() == [5, 5, 5]
    want_map = model.anomaly_map(x, out.reconstruction)
    torch.testing.assert_close(out.anomaly_map, want_map)
    k = model.cfg.glad_top_k
    assert k == 4  # 250 at 256², scaled by the area to 32²
    torch.testing.assert_close(out.pred_score, want_map.flatten(1).topk(k, 1).values.mean(1))
    assert out.pred_label.tolist() == (out.pred_score > 0.5).tolist()
    assert torch.equal(out.pred_mask, out.anomaly_map > 0.5)
    # one image at a time, and the compacted loop: the same results up to the U-Net's batch rounding
    one = det.predict(x, batch_size=1)
    torch.testing.assert_close(one.pred_score, out.pred_score, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(GLADDetector(model, compact=True).predict(x, batch_size=2).reconstruction,
                               out.reconstruction, rtol=1e-4, atol=1e-4)
    # τ = +inf: no trigger; every row falls back at step 3 (t = 260 < 350) and goes on to the end (the
    # authors' rule: 5 U-Net steps), or stops there with glad.fallback = "stop" (4 steps)
    inf = GLADDetector(model, tau=math.inf).predict(x)
    assert inf.trigger_kind.tolist() == [FALLBACK] * 3 and inf.steps.tolist() == [5, 5, 5]
    assert inf.trigger_step.tolist() == [3, 3, 3] and inf.step_report(5)["unet_rows_saved"] == 0
    with carrying_config(model, model.cfg.replace(**{"glad.fallback": "stop"})):
        stop = GLADDetector(model, tau=math.inf).predict(x)
    assert stop.trigger_kind.tolist() == [FALLBACK] * 3 and stop.steps.tolist() == [4, 4, 4]
    assert not torch.allclose(stop.reconstruction, inf.reconstruction, atol=1e-3)  # the last DDIM step acts
    rep = stop.step_report(5)
    assert rep["steps_histogram"] == {4: 3} and rep["unet_rows_saved"] == 3 and rep["fallback"] == 3
    assert NONE == 0 and isinstance(inf, GLADBatch)
    with pytest.raises(ValueError, match=r"B×3×32×32"):
        det.predict_batch(torch.zeros(1, 3, 16, 16))


def test_conditioned_unet_reads_each_rows_own_image():
    # fallback "stop": rows that fall back leave the U-Net batch early (the compaction under test)
    cfg = preset("tiny", "glad").replace(**{"glad.conditioned": True, "unet.in_channels": 6,
                                            "glad.fallback": "stop"})
    torch.manual_seed(0)
    model = GLADModel(cfg, GLADStats(tau=0.02, image_threshold=0.5, pixel_threshold=0.5))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.unet.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    x = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    x_t = torch.randn(3, 3, 32, 32, generator=g)
    want = model.unet(torch.cat([x_t, x], 1), torch.full((3,), 100.0))
    assert torch.equal(model.eps(x_t, 100, x), want) and not torch.allclose(model.eps(x_t, 100, -x), want)
    with pytest.raises(ValueError, match="condition"):
        model.eps(x_t, 100)
    # rows that finish early leave the batch: each image keeps its own condition. τ between the
    # images' largest scores: the image above it triggers (5 steps), the others fall back (4)
    probe = GLADDetector(model, tau=math.inf).predict(x)
    model.stats.tau = float(probe.max_score.median())
    out = GLADDetector(model, compact=True).predict(x)
    assert len(set(out.steps.tolist())) > 1, out.steps  # a mix of fallback and full-length rows
    for i in range(3):
        one = GLADDetector(model, compact=True).predict(x[i:i + 1])
        torch.testing.assert_close(one.reconstruction[0], out.reconstruction[i], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="unet.in_channels=6"):
        preset("tiny", "glad").replace(**{"glad.conditioned": True})


# ----------------------------------------------------------------- config and checkpoints
def test_presets_and_config_checks():
    for name, steps, side in (("tiny", 5, 32), ("small", 10, 64), ("fast", 25, 224)):
        cfg = preset(name, "glad")
        assert (cfg.method, cfg.glad.num_steps, cfg.image_size, cfg.unet.in_channels) == ("glad", steps, side, 3)
        assert (cfg.glad.t0, cfg.glad.min_step, cfg.glad.anomaly_threshold) == (650, 350, 0.3)
        assert ModelConfig.from_dict(json.loads(cfg.to_json())).to_dict() == cfg.to_dict()
    fast = preset("fast", "glad")
    assert fast.glad_top_k == 191 and fast.glad_blur_sigma == pytest.approx(5.25)
    with pytest.raises(ValueError, match="glad.min_step"):
        preset("tiny", "glad").replace(**{"glad.min_step": 700})
    with pytest.raises(ValueError, match="glad.anomaly_sources"):
        preset("tiny", "glad").replace(**{"glad.anomaly_sources": ["dtd"]})
    with pytest.raises(ValueError, match="unet.in_channels=3"):
        preset("tiny", "glad").replace(**{"unet.in_channels": 6})
    # the authors' fallback and gradient clipping by default; the earlier behaviours by name
    g = preset("tiny", "glad").glad
    assert (g.fallback, g.grad_clip, g.saff_weight) == ("continue", 1.0, "sigmoid")
    with pytest.raises(ValueError, match="glad.fallback='halt'"):
        preset("tiny", "glad").replace(**{"glad.fallback": "halt"})
    with pytest.raises(ValueError, match="glad.grad_clip=-1"):
        preset("tiny", "glad").replace(**{"glad.grad_clip": -1.0})
    # a GLAD config.json written before these fields describes the behaviour of that time
    before = preset("tiny", "glad").to_dict()
    for k in ("fallback", "grad_clip", "saff_weight"):
        del before["glad"][k]
    assert missing_fields(before) == []
    g = ModelConfig.from_dict(before).glad
    assert (g.fallback, g.grad_clip, g.saff_weight) == ("stop", 0.0, "minmax")
    # a config written before GLAD (no "glad" section) is complete; a GLAD config without it is not
    old = preset("tiny").to_dict()
    del old["glad"]
    assert missing_fields(old) == []
    g = preset("tiny", "glad").to_dict()
    del g["glad"]
    assert missing_fields(g) == ["glad"]


def test_checkpoint_round_trip(tmp_path):
    model = tiny_model(tau=0.25)
    save_checkpoint(model, tmp_path)
    back = load_checkpoint(tmp_path)
    assert isinstance(back, GLADModel) and back.stats == model.stats and load_config(tmp_path).method == "glad"
    for k, v in model.trainable_state_dict().items():
        assert torch.equal(v, back.trainable_state_dict()[k]), k
    stats = json.loads((tmp_path / "stats.json").read_text())
    (tmp_path / "stats.json").write_text(json.dumps({**stats, "tau": "high"}))
    with pytest.raises(CheckpointError, match=r"stats\.json.*tau"):
        load_checkpoint(tmp_path)
