"""Evaluation on an MVTec-layout test split: the rows a method's results contribute (DRDC: its base
model and itself; ``report_maps`` of its result batch), the kNN baseline beside them."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import metrics, viz
from .data import Loaded, load_split

COLUMNS = ["category", "method", *metrics.METRICS]


KNN = "kNN (PatchCore-style)"


@dataclass
class KNNOutput:
    """Scores and maps of the patch-kNN baseline on the evaluated images."""

    scores: torch.Tensor      # B
    maps: torch.Tensor        # B×S×S
    map_mean: float = 0.0     # statistics of its maps on normal calibration images (colour range)
    map_std: float = 1.0
    seconds: float = 0.0      # fit + scoring


@dataclass
class EvalResult:
    data: Loaded
    out: object | None          # the method's result batch; None when only the kNN baseline was run
    rows: list[dict]            # one per (category, method), plus the means
    seconds: float
    knn: KNNOutput | None = None

    def markdown(self) -> str:
        return viz.markdown_table(self.rows, COLUMNS)

    def mean_row(self, method: str) -> dict:
        return next(r for r in self.rows if r["category"] == "mean" and r["method"] == method)


def method_outputs(out, stats, cfg=None, knn: KNNOutput | None = None,
                   curves: bool = False) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(scores, maps) of each row of the table: the ones the method's result batch contributes
    (``report_maps``: DRDC gives its base model's and its own) and the kNN baseline's, if given.
    ``curves``: the scores the ROC curves use (DRDC's base row: the base model's own score)."""
    methods = dict(out.report_maps(stats, cfg, curves)) if out is not None else {}
    if knn is not None:
        methods[KNN] = (knn.scores, knn.maps)
    return methods


def fit_knn(model, data_root: str | Path, categories: Sequence[str] | None = None, knn_cfg=None,
            device: str = "cpu", progress: bool = False, train_data: Loaded | None = None):
    """A ``PatchKNN`` on the model's frozen backbone, its bank built from the training
    images the model was trained on and its map statistics measured on the held-out
    calibration images (the same split as ``train.train``)."""
    from .models.knn import PatchKNN
    from drdc_trt.training import split_calibration

    cfg = model.cfg
    data = train_data or load_split(data_root, "train", cfg.image_size, categories, progress=progress)
    train_idx, calib_idx = split_calibration(len(data), cfg.train.calib_fraction, cfg.train.seed)
    calib = data.images[calib_idx] if calib_idx else None
    return PatchKNN.from_model(model, knn_cfg, device).fit(data.images[train_idx], calib)


def run_knn(knn, images: torch.Tensor, fit_seconds: float = 0.0) -> KNNOutput:
    import time

    t0 = time.perf_counter()
    scores, maps = knn.predict(images)
    return KNNOutput(scores, maps, knn.map_mean, knn.map_std, fit_seconds + time.perf_counter() - t0)


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


def evaluate(detector, data_root: str | Path, categories: Sequence[str] | None = None,
             batch_size: int = 8, progress: bool = True, knn=None, knn_fit_seconds: float = 0.0,
             data: Loaded | None = None) -> EvalResult:
    """Base model and DRDC from one pass of ``detector``; the fitted ``knn``
    (``models.knn.PatchKNN``) beside them when given. ``detector=None``: kNN only."""
    import time

    if detector is None and knn is None:
        raise ValueError("evaluate: give a detector, a kNN baseline, or both")
    size = detector.cfg.image_size if detector is not None else knn.image_size
    if data is None:
        data = load_split(data_root, "test", size, categories, progress=progress)
    out, seconds = None, 0.0
    if detector is not None:
        t0 = time.perf_counter()
        out = detector.predict(data.images, batch_size=batch_size, progress=progress)
        seconds = time.perf_counter() - t0
    knn_out = run_knn(knn, data.images, knn_fit_seconds) if knn is not None else None
    methods = method_outputs(out, detector.stats if detector is not None else None,
                             detector.cfg if detector is not None else None, knn_out)
    return EvalResult(data, out, table(data, methods), seconds, knn_out)


def save_results(result: EvalResult, out_dir: str | Path, meta: dict, extra_markdown: str = "") -> None:
    from .checkpoint import atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in result.rows]
    atomic_write_text(out_dir / "metrics.json", json.dumps({**meta, "rows": clean,
                                                            "inference_seconds": result.seconds}, indent=2))
    atomic_write_text(out_dir / "metrics.md", result.markdown() + "\n" + (f"\n{extra_markdown}\n" if extra_markdown else ""))


def example_rows(result: EvalResult, stats, idx: Sequence[int]) -> tuple[list[list[np.ndarray]], list[str], list[str]]:
    """Overlay rows for the images ``idx``: (rows of H×W×3 images, column headers, captions).

    Colour ranges are shared by all images of a column and come from normal-image
    statistics (mean … mean + 6 std of the raw map); red outline = ground truth."""
    data, out, knn = result.data, result.out, result.knn
    headers = ["input", "ground truth"]
    cells = None
    if out is not None:  # the method's own columns (DRDC: base, diffusion and final maps)
        more, cells = out.example_columns(stats)
        headers += more
    if knn is not None:
        headers.append("kNN map")
        k_lo, k_hi = knn.map_mean, knn.map_mean + 6 * knn.map_std
    rows, caps = [], []
    for i in idx:
        img, m = data.images[i], data.masks[i, 0]
        row = [viz.to_uint8_image(img), viz.mask_image(m)]
        cap = data.samples[i].path.name
        if cells is not None:
            extra, note = cells(i, img, m)
            row += extra
            cap += note
        if knn is not None:
            row.append(viz.overlay(img, knn.maps[i], k_lo, k_hi, mask=m))
            cap += f" kNN {float(knn.scores[i]):.3f}"
        rows.append(row)
        caps.append(cap)
    return rows, headers, caps


def report_html(result: EvalResult, title: str, stats, notes: Sequence[str] = (), per_type: int = 4,
                extra_sections: Sequence[str] = ()) -> str:
    """Self-contained HTML: metrics, ROC curves, ``extra_sections`` (HTML, e.g. an
    ablation table), and per defect type a grid of input / ground truth / base /
    diffusion / final (/ kNN) overlays."""
    data, out = result.data, result.out
    sections = ["".join(f"<p class='note'>{n}</p>" for n in notes),
                "<h2>Metrics (%)</h2>", viz.metrics_table(result.rows, COLUMNS)]
    methods = method_outputs(out, stats, None, result.knn, curves=True)
    image_curves, pixel_curves = {}, {}
    step = 4 if data.masks[:, 0].numel() > 4_000_000 else 1
    gt = data.masks[:, 0, ::step, ::step]
    for name, (scores, maps) in methods.items():
        image_curves[name] = metrics.roc_curve(data.labels, scores)
        pixel_curves[name] = metrics.roc_curve(gt, maps[:, ::step, ::step])
    rocs = [viz.roc_svg(image_curves, "image-level ROC"), viz.roc_svg(pixel_curves, "pixel-level ROC")]
    sections += ["<h2>ROC curves</h2>", f"<div class='rocs'>{''.join(rocs)}</div>", *extra_sections]

    scale = max(1, 128 // data.images.shape[-1])
    sections.append("<h2>Examples per defect type</h2><p class='note'>Overlays: viridis, shared colour range "
                    "per column (normal-image mean to mean + 6 std); red outline = ground truth.</p>")
    for cat in sorted({s.category for s in data.samples}):
        for defect in sorted({s.defect for s in data.samples if s.category == cat}):
            idx = [i for i, s in enumerate(data.samples) if s.category == cat and s.defect == defect][:per_type]
            rows, headers, caps = example_rows(result, stats, idx)
            sections.append(f"<h3>{cat} / {defect}</h3>" + viz.image_grid(rows, headers, caps, scale))
    return viz.html_page(title, sections)
