"""Evaluation on an MVTec-layout test split: the base model and full DRDC side by side."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import metrics, ops, viz
from .data import Loaded, load_split
from .fusion import normalised_blend
from .pipeline import Detector, InferenceBatch

COLUMNS = ["category", "method", *metrics.METRICS]


@dataclass
class EvalResult:
    data: Loaded
    out: InferenceBatch
    rows: list[dict]          # one per (category, method), plus the means
    seconds: float

    def markdown(self) -> str:
        return viz.markdown_table(self.rows, COLUMNS)

    def mean_row(self, method: str) -> dict:
        return next(r for r in self.rows if r["category"] == "mean" and r["method"] == method)


def method_outputs(out: InferenceBatch, stats, lam: float, window: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(scores, maps) of each method from one inference pass."""
    base = normalised_blend(out.diff_map, out.base_map, stats, 0.0)
    return {
        "base (UniAD)": (ops.image_score(base, window), base),
        "DRDC": (out.pred_score, out.anomaly_map),
    }


def table(data: Loaded, methods: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> list[dict]:
    cats = sorted({s.category for s in data.samples})
    rows = []
    for name, (scores, maps) in methods.items():
        per = []
        for cat in cats:
            idx = [i for i, s in enumerate(data.samples) if s.category == cat]
            m = metrics.evaluate(data.labels[idx], scores[idx], data.masks[idx, 0], maps[idx])
            per.append(m)
            rows.append({"category": cat, "method": name, **m})
        mean = {k: float(np.nanmean([p[k] for p in per])) for k in metrics.METRICS}
        rows.append({"category": "mean", "method": name, **mean})
    return sorted(rows, key=lambda r: (r["category"] == "mean", r["category"]))


def evaluate(detector: Detector, data_root: str | Path, categories: Sequence[str] | None = None,
             batch_size: int = 8, progress: bool = True) -> EvalResult:
    import time

    data = load_split(data_root, "test", detector.cfg.image_size, categories, progress=progress)
    t0 = time.perf_counter()
    out = detector.predict(data.images, batch_size=batch_size, progress=progress)
    seconds = time.perf_counter() - t0
    methods = method_outputs(out, detector.stats, detector.cfg.fusion.lam, detector.cfg.score_window)
    return EvalResult(data, out, table(data, methods), seconds)


def save_results(result: EvalResult, out_dir: str | Path, meta: dict) -> None:
    from .checkpoint import atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in result.rows]
    atomic_write_text(out_dir / "metrics.json", json.dumps({**meta, "rows": clean,
                                                            "inference_seconds": result.seconds}, indent=2))
    atomic_write_text(out_dir / "metrics.md", result.markdown() + "\n")


def report_html(result: EvalResult, title: str, stats, notes: Sequence[str] = (), per_type: int = 4) -> str:
    """Self-contained HTML: metrics, ROC curves, and per defect type a grid of
    input / ground truth / base / diffusion / final overlays."""
    data, out = result.data, result.out
    sections = ["".join(f"<p class='note'>{n}</p>" for n in notes),
                "<h2>Metrics (%)</h2>", viz.metrics_table(result.rows, COLUMNS)]
    methods = method_outputs(out, stats, 0.0, 1)  # maps only; scores below come from result.out
    base_scores = out.base_score
    rocs = [viz.roc_svg({"base (UniAD)": metrics.roc_curve(data.labels, base_scores),
                         "DRDC": metrics.roc_curve(data.labels, out.pred_score)}, "image-level ROC")]
    step = 4 if data.masks[:, 0].numel() > 4_000_000 else 1
    gt = data.masks[:, 0, ::step, ::step]
    rocs.append(viz.roc_svg({"base (UniAD)": metrics.roc_curve(gt, methods["base (UniAD)"][1][:, ::step, ::step]),
                             "DRDC": metrics.roc_curve(gt, out.anomaly_map[:, ::step, ::step])}, "pixel-level ROC"))
    sections += ["<h2>ROC curves</h2>", f"<div class='rocs'>{''.join(rocs)}</div>"]

    # Colour ranges shared by all images of a column, from normal-image statistics.
    d_lo, d_hi = stats.diff_mean, stats.diff_mean + 6 * stats.diff_std
    b_lo, b_hi = stats.base_mean, stats.base_mean + 6 * stats.base_std
    f_lo, f_hi = 0.0, max(6.0, float(np.quantile(out.anomaly_map.numpy(), 0.999)))
    headers = ["input", "ground truth", "base map", "diffusion map", "final map"]
    scale = max(1, 128 // data.images.shape[-1])
    sections.append("<h2>Examples per defect type</h2><p class='note'>Overlays: viridis, shared colour range "
                    "per column; red outline = ground truth.</p>")
    for cat in sorted({s.category for s in data.samples}):
        for defect in sorted({s.defect for s in data.samples if s.category == cat}):
            idx = [i for i, s in enumerate(data.samples) if s.category == cat and s.defect == defect][:per_type]
            rows, caps = [], []
            for i in idx:
                img, m = data.images[i], data.masks[i, 0]
                rows.append([viz.to_uint8_image(img), viz.mask_image(m),
                             viz.overlay(img, out.base_map[i], b_lo, b_hi, mask=m),
                             viz.overlay(img, out.diff_map[i], d_lo, d_hi, mask=m),
                             viz.overlay(img, out.anomaly_map[i], f_lo, f_hi, mask=m)])
                caps.append(f"{data.samples[i].path.name} score {float(out.pred_score[i]):.2f}")
            sections.append(f"<h3>{cat} / {defect}</h3>" + viz.image_grid(rows, headers, caps, scale))
    return viz.html_page(title, sections)
