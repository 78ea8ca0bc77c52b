"""Metrics against scikit-learn and a brute-force AUPRO."""

import numpy as np
import pytest

import sklearn.metrics as sklearn_metrics  # a dev dependency: missing is a failure, not a skip

from drdc_trt import metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_and_f1max_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 400)
    s = np.round(rng.normal(size=400) + y, 1)  # rounding makes ties
    assert metrics.auroc(y, s) == pytest.approx(sklearn_metrics.roc_auc_score(y, s), abs=1e-12)
    p, r, _ = sklearn_metrics.precision_recall_curve(y, s)
    f1 = np.max(2 * p * r / np.maximum(p + r, 1e-12))
    assert metrics.f1_max(y, s) == pytest.approx(f1, abs=1e-12)


def test_aupro_hand_computed():
    gt = np.array([[[1, 1, 0, 0]]])
    amap = np.array([[[0.9, 0.1, 0.5, 0.2]]])
    # curve (fpr, pro): (0,0) (0,.5) (.5,.5) (1,.5) (1,1) → area to 0.3 = 0.15 → / 0.3
    assert metrics.aupro(gt, amap) == pytest.approx(0.5)
    assert metrics.aupro(gt, gt * 1.0) == pytest.approx(1.0)


def _aupro_brute(gt, amap, limit=0.3):
    from scipy import ndimage

    regions = []
    for i in range(gt.shape[0]):
        lab, n = ndimage.label(gt[i], structure=np.ones((3, 3)))
        regions += [(i, lab == r) for r in range(1, n + 1)]
    neg = ~gt
    pts = [(0.0, 0.0)]
    for th in np.sort(np.unique(amap))[::-1]:
        above = amap >= th
        fpr = (above & neg).sum() / neg.sum()
        pro = np.mean([above[i][r].mean() for i, r in regions])
        pts.append((fpr, pro))
    f = np.array([p[0] for p in pts])
    p = np.array([p[1] for p in pts])
    # the curve is a step-wise linear path; sample it along fpr with the last pro at each fpr
    keep = np.r_[np.diff(f) > 0, True]
    fu, pu = f[keep], p[keep]
    # vertical jumps: trapezoid between consecutive distinct fpr uses pro just after the left point
    area, prev_f, prev_p = 0.0, 0.0, p[np.nonzero(f == 0)[0][-1]]
    for fi, pi_ in zip(fu[1:], pu[1:]):
        idx = np.nonzero(f == fi)[0]
        p_first = p[idx[0]]
        if fi >= limit:
            p_lim = prev_p + (p_first - prev_p) * (limit - prev_f) / (fi - prev_f)
            area += (prev_p + p_lim) / 2 * (limit - prev_f)
            return area / limit
        area += (prev_p + p_first) / 2 * (fi - prev_f)
        prev_f, prev_p = fi, p[idx[-1]]
    return area / limit


@pytest.mark.parametrize("seed", [0, 1])
def test_aupro_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    gt = np.zeros((3, 16, 16), bool)
    gt[0, 2:6, 3:7] = True
    gt[0, 10:12, 10:15] = True
    gt[2, 0:3, 0:16] = True
    amap = np.round(rng.random(gt.shape) + gt * 0.6, 2)
    assert metrics.aupro(gt, amap) == pytest.approx(_aupro_brute(gt, amap), abs=1e-9)
