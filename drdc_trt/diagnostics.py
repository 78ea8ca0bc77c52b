"""Does a map find defects, or the image border and the lighting? Label-free checks of
normal images plus two AUROCs, for every map a study produces.

* ``border_share``: fraction of good images whose map maximum lies within ``border`` px
  of the edge, beside the fraction of pixels that lie there (what a map with no
  border bias gives).
* ``brightness_spearman``: Spearman correlation of the good images' scores with their
  mean intensity (0 for a map that ignores lighting).
* ``brightness_auroc``: image AUROC of the mean intensity alone (a score that knows
  no defect): how much lighting alone separates this test set.
"""

from __future__ import annotations

from typing import Mapping

import torch

from . import metrics


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Rank correlation (ties broken by order; the scores here are continuous)."""
    ra, rb = a.double().argsort().argsort().double(), b.double().argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def edge_fraction(size: int, border: int) -> float:
    """Share of an S×S image's pixels within ``border`` px of the edge."""
    inner = max(0, size - 2 * border)
    return 1.0 - inner * inner / (size * size)


def border_share(maps: torch.Tensor, border: int) -> float:
    """Share of maps (B×S×S) whose maximum lies within ``border`` px of the edge."""
    b, h, w = maps.shape
    arg = maps.flatten(1).argmax(1)
    ys, xs = arg // w, arg % w
    edge = (ys < border) | (ys >= h - border) | (xs < border) | (xs >= w - border)
    return float(edge.double().mean())


def brightness(images: torch.Tensor) -> torch.Tensor:
    """Mean intensity per image (B×3×S×S in [-1, 1] → B)."""
    return images.flatten(1).mean(1)


def diagnose(images: torch.Tensor, labels: torch.Tensor, methods: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
             border: int = 4) -> list[dict]:
    """One row per method (``name → (scores B, maps B×S×S)``) on a test set."""
    good = labels == 0
    bright = brightness(images)
    rows = []
    for name, (scores, maps) in methods.items():
        rows.append({
            "method": name,
            "image_AUROC": metrics.auroc(labels, scores),
            "brightness_spearman": spearman(scores[good], bright[good]),
            "border_share": border_share(maps[good], border),
        })
    rows.append({"method": "mean intensity alone (no model)", "image_AUROC": metrics.auroc(labels, bright),
                 "brightness_spearman": 1.0, "border_share": None})
    return rows


def markdown(rows: list[dict], size: int, border: int = 4) -> str:
    share = 100 * edge_fraction(size, border)
    lines = [f"| method | image_AUROC | Spearman(score, brightness), good images | good-image maxima within "
             f"{border} px of the edge (pixels there: {share:.0f} %) |", "|---|---|---|---|"]
    for r in rows:
        bs = "–" if r["border_share"] is None else f"{100 * r['border_share']:.0f} %"
        lines.append(f"| {r['method']} | {100 * r['image_AUROC']:.1f} | {r['brightness_spearman']:.2f} | {bs} |")
    return "\n".join(lines)
