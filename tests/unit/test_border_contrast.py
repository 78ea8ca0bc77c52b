"""The border margin and the contrast-normalised heat (diffusion.margin, fusion.heat_norm).

Known answers: the mirror index and labels by hand; a margin leaves the interior heat
unchanged for a network whose output at a pixel depends on that pixel alone; the
normalised heat is invariant to the image's brightness where the raw heat is not; the
numpy runtime's divisor equals the torch one.
"""

import numpy as np
import pytest
import torch

from drdc_trt.methods.drdc import contrast
from drdc_trt.config import preset
from drdc_trt.methods.drdc.inpaint import LoopNoise, inpaint_heat
from drdc_trt.schedule import Schedule
from drdc_trt.methods.drdc.margin import crop, pad_image
from drdc_trt.methods.drdc.masks import grid_labels
from drdc_trt.methods.drdc.gridsets import pad_labels, symmetric_index
from drdc_trt.methods.drdc import runtime_kernels as K


def test_symmetric_index_by_hand():
    assert symmetric_index(4, 2).tolist() == [1, 0, 0, 1, 2, 3, 3, 2]
    assert symmetric_index(3, 0).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="margin 5"):
        symmetric_index(4, 5)


def test_pad_labels_mirror_whole_cells_and_keep_sets():
    labels = np.array([[[0, 0, 1, 1],
                        [0, 0, 1, 1],
                        [1, 1, 0, 0],
                        [1, 1, 0, 0]]], dtype=np.int32)
    got = pad_labels(labels, 2)
    assert got.shape == (1, 8, 8)
    # row 0 of the padded map mirrors image row 1, whose columns mirror as [1, 0, 0, 1, 2, 3, 3, 2]
    assert got[0, 0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert got[0, 7].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    np.testing.assert_array_equal(got[:, 2:6, 2:6], labels)
    # every margin pixel carries the set of the image pixel it mirrors
    idx = symmetric_index(4, 2)
    np.testing.assert_array_equal(got[0], labels[0][idx][:, idx])


def test_pad_image_and_crop_round_trip():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    p = pad_image(x, 2)
    assert p.shape == (2, 3, 8, 8)
    assert torch.equal(p[..., 0, 0], x[..., 1, 1]) and torch.equal(p[..., 7, 7], x[..., 2, 2])
    assert torch.equal(crop(p, 2), x)
    assert pad_image(x, 0) is x and crop(x, 0) is x


def _pixelwise_eps(unet_in: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A 'network' whose output at a pixel depends on that pixel alone (and the timestep)."""
    xt, c = unet_in[:, :3], unet_in[:, 3:]
    return torch.tanh(0.7 * xt - 0.4 * c + 1e-3 * t.view(-1, 1, 1, 1))


def test_margin_leaves_the_interior_heat_unchanged():
    """With a pixelwise network the loop is pixelwise, so the heat of the margin-padded run,
    cropped, equals the heat of the plain run when both see the same noise at the image's
    pixels (pool factor 2 included: the margin is a multiple of it)."""
    s, m, grids, k, steps = 16, 4, (4, 8), 2, 3
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, s, s, generator=g) * 2 - 1
    labels = grid_labels(s, grids, k, seed=1).numpy()
    n = 2 * len(grids) * k
    noise_pad = LoopNoise.draw(n, s + 2 * m, steps, g)
    noise = LoopNoise(crop(noise_pad.fill, m), crop(noise_pad.start, m), crop(noise_pad.steps, m))
    sched = Schedule.linear()
    plain = inpaint_heat(x, torch.from_numpy(labels), k, _pixelwise_eps, sched, 250, steps, noise, (1, 2))
    padded = inpaint_heat(pad_image(x, m), torch.from_numpy(pad_labels(labels, m)), k, _pixelwise_eps, sched,
                          250, steps, noise_pad, (1, 2))
    assert plain.heat.abs().max() > 0.1  # the case is not trivial
    torch.testing.assert_close(crop(padded.heat, m), plain.heat, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(crop(padded.xt, m), plain.xt, atol=1e-6, rtol=0)


def _mean_reconstructor(x: torch.Tensor, rows: int):
    """A network whose implied x̂0 is the image's mean (what a model that cannot see the
    masked texture predicts): ε = (x_t − √ᾱ·μ)/√(1 − ᾱ)."""
    sched = Schedule.linear()
    mu = x.mean((1, 2, 3), keepdim=True).repeat_interleave(rows, 0)

    def eps(unet_in, t):
        ab = torch.tensor([sched.alpha_bar(int(v)) for v in t]).view(-1, 1, 1, 1)
        return (unet_in[:, :3] - ab.sqrt() * mu) / (1 - ab).sqrt()

    return eps


@pytest.mark.parametrize("mode", ["image_std", "local_std"])
def test_normalised_heat_is_invariant_to_brightness(mode):
    s, grids, k, steps = 16, (4, 8), 2, 2
    g = torch.Generator().manual_seed(7)
    texture = 0.3 * torch.rand(1, 3, s, s, generator=g) - 0.4   # an image in [-0.4, -0.1]
    labels = grid_labels(s, grids, k, seed=0)
    noise = LoopNoise.draw(len(grids) * k, s, steps, g)
    window = contrast.local_window(grids)
    heats = {}
    for a in (1.0, 1.6):  # intensity I = (x + 1)/2 scaled by a
        x = a * (texture + 1) - 1
        res = inpaint_heat(x, labels, k, _mean_reconstructor(x, len(grids) * k), Schedule.linear(), 250, steps,
                           noise, (1, 2))
        heats[a] = (res.heat, res.heat / contrast.heat_divisor(x, mode, window))
    raw_ratio = float(heats[1.6][0].sum() / heats[1.0][0].sum())
    assert raw_ratio == pytest.approx(1.6, rel=1e-3)  # the paper's heat follows the lighting
    torch.testing.assert_close(heats[1.6][1], heats[1.0][1], rtol=1e-4, atol=1e-5)


def test_contrast_divisor_known_values():
    x = torch.zeros(1, 3, 8, 8)
    x[:, :, :, 4:] = 1.0  # half the pixels at 0, half at 1: median 0 (lower median), MAD 0
    d = contrast.heat_divisor(x, "image_std", 3)
    assert torch.all(d == contrast.FLOOR)  # a two-valued image has a MAD of 0: the floor keeps it finite
    g = torch.Generator().manual_seed(0)
    y = torch.randn(1, 3, 64, 64, generator=g)
    assert float(contrast.robust_std(y)) == pytest.approx(1.0, abs=0.05)  # MAD·1.4826 of N(0, 1)
    flat = torch.full((1, 3, 8, 8), 0.25)
    assert torch.all(contrast.local_std(flat, 3) < 1e-6)
    assert contrast.heat_divisor(y, "none", 3) is None
    with pytest.raises(ValueError, match="heat_norm='bad'"):
        contrast.heat_divisor(y, "bad", 3)


@pytest.mark.parametrize("mode", ["none", "image_std", "local_std"])
def test_runtime_divisor_matches_torch(mode):
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    want = contrast.heat_divisor(x, mode, 9)
    got = K.heat_divisor(x.numpy(), mode, 9)
    if want is None:
        assert got is None
        return
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)


def test_config_margin_and_heat_norm_are_checked():
    cfg = preset("tiny")
    assert cfg.replace(**{"diffusion.margin": 4}).loop_size == 40
    with pytest.raises(ValueError, match="diffusion.margin=3"):
        cfg.replace(**{"diffusion.margin": 3})  # not a multiple of the pool factor 2
    with pytest.raises(ValueError, match="fusion.heat_norm='contrast'"):
        cfg.replace(**{"fusion.heat_norm": "contrast"})
    with pytest.raises(ValueError, match="train.ema_decay=1"):
        cfg.replace(**{"train.ema_decay": 1.0})


def test_pixel_stats_by_hand():
    from drdc_trt.methods.drdc.fusion import PixelStats, pixel_window

    assert pixel_window((4, 8)) == 9 and pixel_window((8, 16)) == 17 and pixel_window((5,)) == 5
    maps = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[3.0, 2.0], [5.0, 8.0]]])  # two images, 2×2
    p = PixelStats.measure(maps, 1)
    torch.testing.assert_close(p.mean, torch.tensor([[2.0, 2.0], [4.0, 6.0]]))
    # unbiased variance per pixel: (1-3)²/2 = 2, 0 → floored, 2, 8
    assert p.std[0, 0] == pytest.approx(2 ** 0.5) and p.std[1, 1] == pytest.approx(8 ** 0.5)
    assert float(p.std[0, 1]) == pytest.approx((1e-4 * 3) ** 0.5)  # no variation: 1e-4 of the mean variance (3)
    heat = torch.full((1, 2, 2), 12.0)  # a sum of 3 terms: mean 4
    z = p.apply(heat, 3) / 3
    assert float(z[0, 1, 0]) == pytest.approx(0.0) and float(z[0, 0, 0]) == pytest.approx(2 / 2 ** 0.5)
    with pytest.raises(ValueError, match="diff_pixel_std has shape"):
        PixelStats.from_tensors({"diff_pixel_mean": torch.zeros(2, 2), "diff_pixel_std": torch.ones(3, 3)}, "f", 2)


def test_pixel_normalisation_finds_an_interior_defect_that_a_noisy_border_hides():
    """Normal maps vary strongly in a 2-px frame (an edge that inpaints badly on every image);
    with one global mean/std a test map's maximum lies on that frame, with per-pixel statistics
    on the interior defect."""
    from drdc_trt.methods.drdc.fusion import PixelStats

    g = torch.Generator().manual_seed(0)
    s = 24
    frame = torch.zeros(s, s, dtype=torch.bool)
    frame[:2], frame[-2:], frame[:, :2], frame[:, -2:] = True, True, True, True
    normal = lambda n: 1 + 0.05 * torch.randn(n, s, s, generator=g) + 2.0 * frame * torch.rand(n, s, s, generator=g)
    calib = normal(40)
    test = normal(1)
    test[0, 10:13, 10:13] += 0.5  # the defect: 10 σ of the interior's variation, below the frame's swings
    glob = (test - calib.mean()) / calib.std()
    arg = int(glob[0].flatten().argmax())
    assert frame.flatten()[arg]  # the global z-score peaks on the border
    z = PixelStats.measure(calib, 1).apply(test, 1)
    arg = int(z[0].flatten().argmax())
    assert (arg // s, arg % s) in {(y, x) for y in range(10, 13) for x in range(10, 13)}
