"""Known answers from the input to the verdict: pixel scaling and channel order, the
calibrated thresholds, what ``pred_label`` / ``pred_mask`` mean, and the metric rows."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from drdc_trt import metrics
from drdc_trt.config import preset
from drdc_trt.data import load_image
from drdc_trt.data.folder import Loaded, Sample
from drdc_trt.methods.drdc.inpaint import LoopResult
from drdc_trt.evaluate import table
from drdc_trt.methods.drdc.fusion import FusionStats, measure_stats
from drdc_trt.methods.drdc.pipeline import Detector
from drdc_trt.methods.drdc import runtime_kernels as K
from drdc_trt.methods.drdc.runtime import BundleDetector


# --------------------------------------------------------------------------- data
def test_png_pixels_scale_to_minus_one_one_in_rgb_order(tmp_path):
    """v ∈ 0..255 becomes 2v/255 − 1, channel 0 red, 1 green, 2 blue (an 8×8 PNG, its first
    four pixels set by hand, the rest black)."""
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[0, 0], rgb[0, 1], rgb[1, 0], rgb[1, 1] = (255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 64, 255)
    Image.fromarray(rgb, "RGB").save(tmp_path / "rgb.png")
    x = load_image(tmp_path / "rgb.png", 8)
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32
    assert x[:, 0, 0].tolist() == [1.0, -1.0, -1.0]   # pure red
    assert x[:, 0, 1].tolist() == [-1.0, 1.0, -1.0]   # pure green
    assert x[:, 1, 0].tolist() == [-1.0, -1.0, 1.0]   # pure blue
    np.testing.assert_allclose(x[:, 1, 1].numpy(), [1 / 255, -127 / 255, 1.0], rtol=0, atol=1e-7)
    assert x[:, 2:].eq(-1.0).all() and x[:, :, 2:].eq(-1.0).all()  # black


def test_grey_and_palette_pngs_become_the_same_rgb(tmp_path):
    Image.fromarray(np.full((8, 8), 51, np.uint8), "L").save(tmp_path / "grey.png")
    pal = Image.new("P", (8, 8))
    pal.putpalette([255, 0, 0] + [0, 0, 0] * 255)  # index 0 = red
    pal.save(tmp_path / "pal.png")
    grey = load_image(tmp_path / "grey.png", 8)
    np.testing.assert_allclose(grey.numpy(), np.full((3, 8, 8), 102 / 255 - 1), rtol=0, atol=1e-7)  # −0.6
    red = load_image(tmp_path / "pal.png", 8)
    assert red[0].eq(1.0).all() and red[1:].eq(-1.0).all()


# --------------------------------------------------------------------------- thresholds
def test_calibration_thresholds_by_hand():
    """Two normal images, 2×2 maps, λ = 0.5, score window 2. Diffusion maps 0..3 and 4..7:
    mean 3.5, sample std √6; base maps 1 and 3: mean 2, std √(8/7). The image threshold is the
    highest image score (image 1's 2×2 mean), the pixel threshold the 0.999 quantile of the eight
    final pixels (linear between the two largest: 6 + 0.993 in diffusion units)."""
    diff = torch.arange(8, dtype=torch.float32).view(2, 2, 2)
    base = torch.tensor([1.0, 3.0]).view(2, 1, 1).expand(2, 2, 2).contiguous()
    st = measure_stats(diff, base, 0.5, 2)
    sd_d, sd_b = math.sqrt(6), math.sqrt(8 / 7)
    assert (st.diff_mean, st.base_mean, st.num_images) == (3.5, 2.0, 2)
    assert st.diff_std == pytest.approx(sd_d, rel=1e-12) and st.base_std == pytest.approx(sd_b, rel=1e-12)
    b1 = 0.5 * (3 - 2) / sd_b  # image 1's base term
    assert st.image_threshold == pytest.approx(0.5 * (5.5 - 3.5) / sd_d + b1, rel=1e-6)
    assert st.pixel_threshold == pytest.approx(0.5 * (6.993 - 3.5) / sd_d + b1, rel=1e-6)
    assert st.base_image_threshold == pytest.approx((3 - 2) / sd_b, rel=1e-6)


ABOVE_ONE = float(np.nextafter(np.float32(1), np.float32(2)))
ABOVE_TWO, BELOW_TWO = (float(np.nextafter(np.float32(2), np.float32(v))) for v in (3, 1))


def _hand_maps() -> torch.Tensor:
    """Final maps (32², score window 2) against image threshold 1 and pixel threshold 2:
    0 all exactly 1 (score = threshold), 1 all just above 1, 2 a pixel exactly at 2, one just
    above, one just below (score 0.875), 3 a 2×2 block of 2.5 (score 2.5), 4 one NaN pixel
    (score NaN: an image whose network overflowed is flagged, never passed)."""
    m = torch.full((5, 32, 32), 0.5)
    m[0], m[1] = 1.0, ABOVE_ONE
    m[2, 3, 3], m[2, 10, 10], m[2, 20, 20] = 2.0, ABOVE_TWO, BELOW_TWO
    m[3, 8:10, 16:18] = 2.5
    m[4, 5, 5] = math.nan
    return m


EXPECTED_LABEL = [False, True, False, True, True]  # strictly above the image threshold, or NaN


def _expected_mask() -> torch.Tensor:
    mask = torch.zeros(5, 32, 32, dtype=torch.bool)
    mask[2, 10, 10] = True       # strictly above the pixel threshold: at 2.0 is normal
    mask[3, 8:10, 16:18] = True
    mask[4, 5, 5] = True         # NaN: flagged
    return mask


def _check_scores(scores: list[float]) -> None:
    """At the image threshold exactly, one float above it, (2⁺ + 3·0.5)/4 ≈ 0.875 and 2.5."""
    assert scores[0] == 1.0 and scores[1] == ABOVE_ONE and scores[3] == 2.5
    assert scores[2] == pytest.approx(0.875, abs=1e-6)
    assert math.isnan(scores[4])


def _hand_stats() -> FusionStats:
    return FusionStats(0.0, 1.0, 0.0, 1.0, image_threshold=1.0, pixel_threshold=2.0)


@pytest.mark.parametrize("loop", ["torch", "csrc"])
def test_detector_labels_and_masks_are_strictly_above_the_thresholds(loop, monkeypatch):
    """λ = 1, no mean filter, μ = 0, σ = 1: the final map is the heat itself, so the score and
    the verdicts follow from the hand-made maps alone."""
    cfg = preset("tiny").replace(**{"fusion.lam": 1.0, "fusion.mean_filter": 1, "fusion.diff_norm": "global"})
    assert cfg.score_window == 2
    runner = SimpleNamespace(base=lambda x: torch.zeros(x.shape[0], 2, 2), unet=None)
    det = Detector(cfg, runner, _hand_stats(), loop=loop)
    monkeypatch.setattr(det, "heat", lambda x: LoopResult(heat=_hand_maps(), count=1, xt=None))
    out = det.predict_batch(torch.zeros(5, 3, 32, 32))
    torch.testing.assert_close(out.anomaly_map, _hand_maps(), rtol=0, atol=0, equal_nan=True)
    _check_scores(out.pred_score.tolist())
    assert out.pred_label.tolist() == EXPECTED_LABEL
    assert torch.equal(out.pred_mask, _expected_mask())


@pytest.mark.parametrize("kernels", ["numpy", "csrc"])
def test_runtime_labels_and_masks_are_strictly_above_the_thresholds(kernels):
    """The torch-free runtime's verdicts on the same maps (its engine and loop stubbed out)."""
    det = object.__new__(BundleDetector)
    det.bundle = SimpleNamespace(check_images=lambda images: None)
    det.runner = SimpleNamespace(base=lambda x: np.zeros((x.shape[0], 2, 2), np.float32))
    det.heat = lambda x: (_hand_maps().numpy(), 1)
    det.kernels = K.make_kernels(kernels)
    det.mean_filter, det.lam, det.score_window = 1, 1.0, 2
    det.stats = _hand_stats().as_tuple()
    det.image_threshold, det.pixel_threshold = 1.0, 2.0
    out = det.predict_batch(np.zeros((5, 3, 32, 32), np.float32))
    np.testing.assert_array_equal(out.anomaly_map, _hand_maps().numpy())  # NaN equals NaN here
    _check_scores(out.pred_score.tolist())
    assert out.pred_label.tolist() == EXPECTED_LABEL
    np.testing.assert_array_equal(out.pred_mask, _expected_mask().numpy())


# --------------------------------------------------------------------------- metric rows
def _hand_split():
    """Three categories of 1×4 maps.

    a: a good image (map .1 .2 .3 .4) and a defect (mask 1 1 0 0, map .9 .1 .5 .2), scores .2 / .7:
       image AUROC 1, F1Max 1; pixel AUROC: positives .9 and .1 against the six negatives
       .1 .2 .3 .4 .5 .2 win 6 + ½ (the tie) of 12 pairs = 13/24; AUPRO: the region is half
       found at FPR 0 and stays so past FPR 0.3 → 0.5.
    b: a good image (map 0) and a defect (mask 0 0 1 1, map 0 0 1 1), scores .6 / .5: image
       AUROC 0; F1Max: at ≥ .5 precision ½, recall 1 → 2/3; pixel AUROC 1, AUPRO 1.
    c: good images only: every metric is undefined (NaN) and the means skip it.
    """
    maps = torch.tensor([[.1, .2, .3, .4], [.9, .1, .5, .2], [0, 0, 0, 0], [0, 0, 1, 1], [.3, .3, .3, .3]])
    masks = torch.tensor([[0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]], dtype=torch.float32)
    scores = torch.tensor([.2, .7, .6, .5, .4])
    labels = torch.tensor([0, 1, 0, 1, 0])
    cats = ["a", "a", "b", "b", "c"]
    samples = [Sample(Path(f"{c}/{i}.png"), c, "bad" if y else "good", None) for i, (c, y) in
               enumerate(zip(cats, labels.tolist()))]
    data = Loaded(torch.zeros(5, 3, 1, 4), masks.view(5, 1, 1, 4), labels, samples)
    return data, scores, maps.view(5, 1, 4)


EXPECTED = {
    "a": {"image_AUROC": 1.0, "pixel_AUROC": 13 / 24, "AUPRO": 0.5, "F1Max": 1.0},
    "b": {"image_AUROC": 0.0, "pixel_AUROC": 1.0, "AUPRO": 1.0, "F1Max": 2 / 3},
}


def test_metrics_evaluate_one_category_by_hand():
    data, scores, maps = _hand_split()
    got = metrics.evaluate(data.labels[:2], scores[:2], data.masks[:2, 0], maps[:2])
    assert got == pytest.approx(EXPECTED["a"], abs=1e-12)


def test_per_category_and_mean_rows_by_hand():
    data, scores, maps = _hand_split()
    rows = table(data, {"m": (scores, maps)})
    assert [r["category"] for r in rows] == ["a", "b", "c", "mean"]
    by = {r["category"]: r for r in rows}
    for cat in ("a", "b"):
        assert {k: by[cat][k] for k in metrics.METRICS} == pytest.approx(EXPECTED[cat], abs=1e-12), cat
    assert all(math.isnan(by["c"][k]) for k in metrics.METRICS)
    mean = {k: (EXPECTED["a"][k] + EXPECTED["b"][k]) / 2 for k in metrics.METRICS}
    assert mean == pytest.approx({"image_AUROC": 0.5, "pixel_AUROC": 37 / 48, "AUPRO": 0.75, "F1Max": 5 / 6})
    assert {k: by["mean"][k] for k in metrics.METRICS} == pytest.approx(mean, abs=1e-12)
    assert all(r["method"] == "m" for r in rows)
