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
from drdc_trt.methods.drdc.fusion import normalised_blend
from drdc_trt.methods.diffusionad.detector import DiffusionADBatch
from drdc_trt.methods.glad.detector import GLADBatch
from drdc_trt.methods.drdc.pipeline import Detector, InferenceBatch

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
    out: InferenceBatch | None  # None when only the kNN baseline was run
    rows: list[dict]            # one per (category, method), plus the means
    seconds: float
    knn: KNNOutput | None = None

    def markdown(self) -> str:
        return viz.markdown_table(self.rows, COLUMNS)

    def mean_row(self, method: str) -> dict:
        return next(r for r in self.rows if r["category"] == "mean" and r["method"] == method)


def method_outputs(out: InferenceBatch | None, stats, lam: float, window: int,
                   knn: KNNOutput | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(scores, maps) of each method from one inference pass (and the kNN baseline's, if given)."""
    methods = {}
    if isinstance(out, DiffusionADBatch):  # its own row: no base model behind it
        methods["DiffusionAD"] = (out.pred_score, out.anomaly_map)
    elif isinstance(out, GLADBatch):
        methods["GLAD"] = (out.pred_score, out.anomaly_map)
    elif out is not None:
        base = normalised_blend(out.diff_map, out.base_map, stats, 0.0)
        methods["base (UniAD)"] = (ops.image_score(base, window), base)
        methods["DRDC"] = (out.pred_score, out.anomaly_map)
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


def evaluate(detector: Detector | None, data_root: str | Path, categories: Sequence[str] | None = None,
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
    if detector is not None:
        methods = method_outputs(out, detector.stats, detector.cfg.fusion.lam, detector.cfg.score_window, knn_out)
    else:
        methods = method_outputs(None, None, 0.0, 1, knn_out)
    return EvalResult(data, out, table(data, methods), seconds, knn_out)


def save_results(result: EvalResult, out_dir: str | Path, meta: dict) -> None:
    from .checkpoint import atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in result.rows]
    atomic_write_text(out_dir / "metrics.json", json.dumps({**meta, "rows": clean,
                                                            "inference_seconds": result.seconds}, indent=2))
    atomic_write_text(out_dir / "metrics.md", result.markdown() + "\n")


def example_rows(result: EvalResult, stats, idx: Sequence[int]) -> tuple[list[list[np.ndarray]], list[str], list[str]]:
    """Overlay rows for the images ``idx``: (rows of H×W×3 images, column headers, captions).

    Colour ranges are shared by all images of a column and come from normal-image
    statistics (mean … mean + 6 std of the raw map); red outline = ground truth."""
    data, out, knn = result.data, result.out, result.knn
    headers = ["input", "ground truth"]
    if isinstance(out, (DiffusionADBatch, GLADBatch)):
        headers += ["reconstruction", "anomaly map"]
    elif out is not None:
        headers += ["base map", "diffusion map", "final map"]
        d_lo, d_hi = stats.diff_mean, stats.diff_mean + 6 * stats.diff_std
        b_lo, b_hi = stats.base_mean, stats.base_mean + 6 * stats.base_std
        f_lo, f_hi = 0.0, max(6.0, float(np.quantile(out.anomaly_map.cpu().numpy(), 0.999)))
    if knn is not None:
        headers.append("kNN map")
        k_lo, k_hi = knn.map_mean, knn.map_mean + 6 * knn.map_std
    rows, caps = [], []
    for i in idx:
        img, m = data.images[i], data.masks[i, 0]
        row = [viz.to_uint8_image(img), viz.mask_image(m)]
        cap = data.samples[i].path.name
        if isinstance(out, (DiffusionADBatch, GLADBatch)):  # DiffusionAD: probabilities, a fixed 0..1 range
            hi = 1.0 if isinstance(out, DiffusionADBatch) else 1.5 * float(out.anomaly_map.max())  # GLAD: distances
            row += [viz.to_uint8_image(out.reconstruction[i]), viz.overlay(img, out.anomaly_map[i], 0.0, hi, mask=m)]
            cap += f" score {float(out.pred_score[i]):.2f}"
        elif out is not None:
            row += [viz.overlay(img, out.base_map[i], b_lo, b_hi, mask=m),
                    viz.overlay(img, out.diff_map[i], d_lo, d_hi, mask=m),
                    viz.overlay(img, out.anomaly_map[i], f_lo, f_hi, mask=m)]
            cap += f" score {float(out.pred_score[i]):.2f}"
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
    methods = method_outputs(out, stats, 0.0, 1, result.knn)  # maps only; image scores below
    image_curves, pixel_curves = {}, {}
    step = 4 if data.masks[:, 0].numel() > 4_000_000 else 1
    gt = data.masks[:, 0, ::step, ::step]
    for name, (scores, maps) in methods.items():
        if name == "base (UniAD)":
            scores = out.base_score
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
