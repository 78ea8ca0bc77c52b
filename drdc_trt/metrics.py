"""Anomaly-detection metrics (anomalib names): image_AUROC, pixel_AUROC, AUPRO, F1Max.

numpy only (scipy for connected components); exact over all thresholds, so they
can be checked against an independent implementation.
"""

from __future__ import annotations

import numpy as np

# numpy < 2 (the serving environment: PyTriton needs it) names it trapz
_trapezoid = getattr(np, "trapezoid", None) or np.trapz

METRICS = ("image_AUROC", "pixel_AUROC", "AUPRO", "F1Max")


def _np(a) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def _desc_cumulative(scores: np.ndarray, *weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """Cumulative sums of ``weights`` over scores sorted high → low, taken at the last
    element of every group of tied scores (one point per distinct threshold)."""
    order = np.argsort(-scores, kind="mergesort")
    s = scores[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    return tuple(np.cumsum(w[order], dtype=np.float64)[last] for w in weights)


def auroc(labels, scores) -> float:
    """Area under the ROC curve (trapezoidal over every distinct threshold)."""
    y = _np(labels).ravel().astype(bool)
    s = _np(scores).ravel().astype(np.float64)
    pos, neg = y.sum(), (~y).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    tp, fp = _desc_cumulative(s, y.astype(np.float64), (~y).astype(np.float64))
    tpr = np.r_[0.0, tp / pos]
    fpr = np.r_[0.0, fp / neg]
    return float(_trapezoid(tpr, fpr))


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) points, for plotting."""
    y = _np(labels).ravel().astype(bool)
    s = _np(scores).ravel().astype(np.float64)
    tp, fp = _desc_cumulative(s, y.astype(np.float64), (~y).astype(np.float64))
    return np.r_[0.0, fp / max(1, (~y).sum())], np.r_[0.0, tp / max(1, y.sum())]


def f1_max(labels, scores) -> float:
    """Best F1 over all thresholds."""
    y = _np(labels).ravel().astype(bool)
    s = _np(scores).ravel().astype(np.float64)
    if y.sum() == 0:
        return float("nan")
    tp, fp = _desc_cumulative(s, y.astype(np.float64), (~y).astype(np.float64))
    precision = tp / np.maximum(tp + fp, 1e-12)
    recall = tp / y.sum()
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(f1.max())


def aupro(masks, maps, fpr_limit: float = 0.3) -> float:
    """Area under the per-region-overlap curve up to ``fpr_limit``, normalised to [0, 1].

    PRO(th) = mean over ground-truth connected components (8-connectivity) of the
    fraction of the component at or above th; FPR(th) over all normal pixels.
    """
    from scipy import ndimage

    gt = _np(masks).astype(bool).reshape(-1, *np.shape(_np(masks))[-2:])
    amap = _np(maps).astype(np.float64).reshape(gt.shape)
    region_w = np.zeros(gt.shape, dtype=np.float64)
    n_regions = 0
    structure = np.ones((3, 3), dtype=int)
    for i in range(gt.shape[0]):
        lab, n = ndimage.label(gt[i], structure=structure)
        if n == 0:
            continue
        sizes = np.bincount(lab.ravel())
        w = np.where(lab > 0, 1.0 / sizes[lab], 0.0)
        region_w[i] = w
        n_regions += n
    neg = ~gt
    if n_regions == 0 or neg.sum() == 0:
        return float("nan")
    pro, fpr = _desc_cumulative(amap.ravel(), region_w.ravel() / n_regions, neg.ravel() / neg.sum())
    fpr = np.r_[0.0, fpr]
    pro = np.r_[0.0, pro]
    if fpr[-1] < fpr_limit:  # every threshold below the limit (cannot happen with ≥1 negative at the lowest)
        fpr, pro = np.r_[fpr, fpr_limit], np.r_[pro, pro[-1]]
    cut = np.searchsorted(fpr, fpr_limit, side="right")
    f, p = fpr[:cut], pro[:cut]
    if f[-1] < fpr_limit:  # interpolate the curve at the limit
        f1, p1 = fpr[cut], pro[cut]
        p_lim = p[-1] + (p1 - p[-1]) * (fpr_limit - f[-1]) / max(f1 - f[-1], 1e-300)
        f, p = np.r_[f, fpr_limit], np.r_[p, p_lim]
    return float(_trapezoid(p, f) / fpr_limit)


def evaluate(labels, scores, masks, maps, pixel_subsample: int = 1) -> dict[str, float]:
    """All four metrics for one set of images. ``pixel_subsample`` > 1 takes every
    n-th pixel row and column for pixel AUROC (large sets); AUPRO uses full maps."""
    m, a = _np(masks), _np(maps)
    if pixel_subsample > 1:
        ms, as_ = m[..., ::pixel_subsample, ::pixel_subsample], a[..., ::pixel_subsample, ::pixel_subsample]
    else:
        ms, as_ = m, a
    return {
        "image_AUROC": auroc(labels, scores),
        "pixel_AUROC": auroc(ms > 0.5, as_),
        "AUPRO": aupro(m > 0.5, a),
        "F1Max": f1_max(labels, scores),
    }
