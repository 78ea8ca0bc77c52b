"""Quality study of one trained DiffusionAD model, without retraining (``drdc ablate`` on a
DiffusionAD checkpoint): the default pass on the test split (headline and per-defect rows), the
inference settings t_a, t_b and w one at a time (or as a grid), and, beside them, a DRDC model's
base / DRDC / kNN rows on the same test split (``compare``: ``drdc_trt.ablation.run_ablation`` on
that model, its passes read from its own cache when they are there).

Every pass is cached under ``work`` with a fingerprint of the model, the data and the seed
(``drdc_trt.ablation._Cache``), so an interrupted run resumes. The thresholds do not enter the
metrics (AUROC, AUPRO and F1Max sweep every threshold), so variants are not re-calibrated.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from ... import viz
from ...checkpoint import atomic_write_text, load_checkpoint
from ...data import load_split
from ...evaluate import COLUMNS, EvalResult, example_rows, method_outputs, report_html, table
from ...ablation import _pct, report_header
from ...train import split_calibration
from .detector import DiffusionADBatch, DiffusionADDetector

FACTORS: dict[str, tuple] = {
    "diffusionad.t_a": (100, 200, 300),
    "diffusionad.t_b": (300, 400, 600),
    "diffusionad.w": (0.0, 0.5, 1.0, 2.0),
}
METHOD = "DiffusionAD"
_FIELDS = ("pred_score", "pred_label", "anomaly_map", "pred_mask", "reconstruction")


@dataclass
class DiffusionADAblation:
    eval: EvalResult                      # default pass on the test split
    cfg: Any                              # the model's ModelConfig
    variants: list[dict]                  # per variant: label, changes, rows, seconds (or status)
    seconds: dict[str, float] = field(default_factory=dict)
    compare: Any = None                   # drdc_trt.ablation.AblationResult of the DRDC model, if asked


def _predict(model, cfg, images: torch.Tensor, seed: int, device: str, batch_size: int,
             progress: bool) -> tuple[DiffusionADBatch, float]:
    """One test pass with ``cfg``'s inference settings (the model reads t_a, t_b and w from its own
    config at call time, so it carries ``cfg`` for the pass)."""
    own = model.cfg
    model.cfg = cfg
    try:
        det = DiffusionADDetector(model, device, seed)
        t0 = time.perf_counter()
        out = det.predict(images, batch_size=batch_size, progress=progress)
        return out, time.perf_counter() - t0
    finally:
        model.cfg = own


def run_diffusionad_ablation(model_dir: str | Path, data_root: str | Path, work: str | Path,
                             categories: Sequence[str] | None = None, factors: Mapping[str, Sequence] | None = None,
                             grid: bool = False, only: Sequence[str] | None = None, batch_size: int = 8,
                             device: str = "cpu", seed: int = 0, progress: bool = False,
                             log: Callable[[str], None] = print, compare: Mapping[str, Any] | None = None
                             ) -> DiffusionADAblation:
    """Run (or resume) the study (module doc). ``only``: run just the variants changing these keys in
    this call (the others come from the cache or are reported as not run). ``compare``: keyword
    arguments of ``drdc_trt.ablation.run_ablation`` for a DRDC model (model_dir, work, ...)."""
    from ...ablation import _Cache, _fingerprint, _get, label, _slug, run_ablation, variant_changes

    factors = dict(FACTORS if factors is None else factors)
    model_dir = Path(model_dir)
    model = load_checkpoint(model_dir)
    cfg = model.cfg
    if cfg.method != "diffusionad":
        raise ValueError(f"{model_dir}: method {cfg.method!r}, not a DiffusionAD checkpoint")
    for k in factors:
        if not k.startswith("diffusionad."):
            raise KeyError(f"factor {k!r}: a DiffusionAD study varies diffusionad.t_a, .t_b or .w")
        _get(cfg, k)
    variants_todo = variant_changes(cfg, factors, grid)
    for changes in variants_todo:  # values the config refuses (t_a ≥ t_b, w < 0) fail before any work
        try:
            cfg.replace(**changes)
        except (TypeError, ValueError) as e:
            raise ValueError(f"factor {label(changes)}: {e}") from None
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    test = load_split(data_root, "test", cfg.image_size, categories, progress=progress)
    train_names = [s.path.name for s in load_split(data_root, "train", cfg.image_size, categories,
                                                   progress=progress).samples]
    _, calib_idx = split_calibration(len(train_names), cfg.train.calib_fraction, cfg.train.seed)
    seconds["load_data"] = time.perf_counter() - t0
    log(f"data: {len(test)} test images")
    cache = _Cache(Path(work), _fingerprint(model_dir, test, [train_names[i] for i in calib_idx],
                                            {"seed": seed, "size": cfg.image_size, "method": "diffusionad"}))

    def cached_pass(name: str, pcfg) -> tuple[DiffusionADBatch, float, bool]:
        got = cache.get_tensors(name)
        if got is not None:
            return DiffusionADBatch(*(got[f] for f in _FIELDS)), cache.get_json(name)["seconds"], True
        out, s = _predict(model, pcfg, test.images, seed, device, batch_size, progress)
        out = DiffusionADBatch(*(getattr(out, f).cpu().contiguous() for f in _FIELDS))
        cache.put_tensors(name, {f: getattr(out, f) for f in _FIELDS}, {"seconds": s})
        return out, s, False

    out, seconds["default_pass"], hit = cached_pass("default_pass", cfg)
    log("DiffusionAD default pass: " + ("from cache" if hit else f"{seconds['default_pass']:.0f} s"))
    result = EvalResult(test, out, table(test, method_outputs(out, None, 0.0, 1)), seconds["default_pass"])

    variants = []
    for changes in variants_todo:
        name = "variant_" + _slug(changes)
        entry = cache.get_json(name)
        if entry is None and (only is None or set(changes) & set(only)):
            v, s, _ = cached_pass(name + "_test", cfg.replace(**changes))
            entry = {"label": label(changes), "changes": changes, "rows": table(test, {METHOD: (v.pred_score,
                                                                                             v.anomaly_map)}),
                     "seconds": {"test": s}, "per_image_ms": 1000 * s / len(test)}
            cache.put_json(name, entry)
            for p in Path(work).glob(f"{name}_test.*"):  # the entry holds what the tables need
                p.unlink()
            log(f"{label(changes)}: image AUROC {100 * _mean(entry['rows'])['image_AUROC']:.1f} ({s:.0f} s)")
        elif entry is not None:
            log(f"{label(changes)}: from cache")
        variants.append(entry or {"label": label(changes), "changes": changes, "status": "not run"})

    other = None
    if compare is not None:
        other = run_ablation(data_root=data_root, categories=categories, factors={}, device=device, seed=seed,
                             progress=progress, log=log, batch_size=batch_size, **compare)
        if [s.path.name for s in other.eval.data.samples] != [s.path.name for s in test.samples]:
            raise ValueError(f"compare: {compare.get('model_dir')} was evaluated on other test images")
        seconds.update({f"drdc_{k}": v for k, v in other.seconds.items()})
    return DiffusionADAblation(result, cfg, variants, seconds, other)


def _mean(rows: Sequence[dict], method: str = METHOD) -> dict | None:
    return next((r for r in rows if r["category"] == "mean" and r["method"] == method), None)


def headline_rows(res: DiffusionADAblation) -> list[dict]:
    """DiffusionAD's rows (per category and mean) and, with ``compare``, the DRDC model's."""
    rows = list(res.eval.rows) + (list(res.compare.eval.rows) if res.compare is not None else [])
    return sorted(rows, key=lambda r: (r["category"] == "mean", r["category"]))


def ablation_rows(res: DiffusionADAblation) -> list[dict]:
    """One row per setting (mean over categories); ms_per_image: that test pass, one process."""
    a = res.cfg.diffusionad
    rows = [{"setting": f"default (t_a={a.t_a}, t_b={a.t_b}, w={a.w:g})", **_metrics(_mean(res.eval.rows)),
             "ms_per_image": 1000 * res.seconds["default_pass"] / len(res.eval.data)}]
    for v in res.variants:
        if "rows" not in v:
            rows.append({"setting": v["label"], "status": "not run", "ms_per_image": None})
        else:
            rows.append({"setting": v["label"], **_metrics(_mean(v["rows"])), "ms_per_image": v["per_image_ms"]})
    return rows


def _metrics(r: Mapping) -> dict:
    return {k: r[k] for k in COLUMNS[2:]}


def per_defect_rows(res: DiffusionADAblation) -> list[dict]:
    """drdc_trt.ablation.per_defect_rows for DiffusionAD, then the DRDC model's rows of each type."""
    from ...ablation import per_defect_rows as drdc_rows

    own = type("Own", (), {"eval": res.eval, "cfg": res.cfg, "stats": None})
    rows = drdc_rows(own)  # method_outputs gives a DiffusionAD batch its own row alone
    if res.compare is not None:
        rows += drdc_rows(res.compare)
    order = {m: i for i, m in enumerate(dict.fromkeys(r["method"] for r in rows))}
    return sorted(rows, key=lambda r: (r["defect"], order[r["method"]]))


def ablation_markdown(rows: Sequence[dict]) -> str:
    cols = ["setting", *COLUMNS[2:], "ms_per_image"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [str(r["setting"])] + [_pct(r.get(k)) for k in COLUMNS[2:]]
        if "status" in r:  # a variant not run yet: say so in its first metric column
            cells[1] = r["status"]
        cells.append("–" if r.get("ms_per_image") is None else f"{r['ms_per_image']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(res: DiffusionADAblation, prefix: str | Path, meta: Mapping[str, Any],
                  report: str | Path | None = None, title: str = "DiffusionAD on real data",
                  report_per_type: int = 4, png_defects: Sequence[str] = ("blowhole", "crack", "uneven"),
                  png_per_type: int = 4) -> list[Path]:
    """``<prefix>.md`` and ``<prefix>.json`` (+ example grids of DiffusionAD's maps) and the HTML report."""
    from ...ablation import pick_examples
    from ...ablation import per_defect_markdown

    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    cfg, a = res.cfg, res.cfg.diffusionad
    head = headline_rows(res)
    abl = ablation_rows(res)
    per_defect = per_defect_rows(res)
    notes = list(meta.get("notes", ()))
    md = report_header(title, meta, len(res.eval.data))
    md.append(f"- model: `{meta.get('model', '')}` (DiffusionAD), image size {cfg.image_size}, U-Net width "
              f"{cfg.unet.model_channels} (channel_mult {list(cfg.unet.channel_mult)}), segmentation width "
              f"{a.seg_base_width}; trained {cfg.train.unet_iters} joint iterations (batch {cfg.train.batch_size}, "
              f"U-Net lr {a.unet_lr:g}, segmentation lr {a.seg_lr:g} on a cosine of {a.seg_lr_t_max}, EMA "
              f"{cfg.train.ema_decay:g})")
    md.append(f"- inference: t_a={a.t_a}, t_b={a.t_b}, w={a.w:g}, image score = mean of the top {cfg.top_k} "
              f"map pixels, detector seed {meta.get('seed', 0)}")
    if res.compare is not None:
        md.append(f"- compared with: `{meta.get('compare_model', '')}` (DRDC, its base model and the patch-kNN "
                  "baseline on its backbone), from its own `drdc ablate` cache where present")
    if meta.get("train_seconds"):
        md.append("- training time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in meta["train_seconds"].items()))
    md.append("- evaluation time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in res.seconds.items()))
    if meta.get("commands"):
        md += ["", "Commands:", "", "```", *meta["commands"], "```"]
    md += ["", "## Methods on the test split (%)", "", viz.markdown_table(head, COLUMNS),
           "", "## DiffusionAD inference settings (one trained model, %)", "",
           "Mean over categories; each row its own test pass with the model's weights (no retraining). "
           "ms_per_image: that pass, one process.", "", ablation_markdown(abl),
           "", "## Per defect type (default settings, %)", "",
           "Each defect type's images against all good test images.", "", per_defect_markdown(per_defect)]
    if notes:
        md += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    pngs = []
    for defect in png_defects:
        idx = pick_examples(res.eval.data, defect, png_per_type)
        if not idx:
            continue
        rows, headers, caps = example_rows(res.eval, None, idx)
        scale = max(1, 128 // res.eval.data.images.shape[-1])
        p = prefix.with_name(f"{prefix.name}_examples_{defect}.png")
        p.write_bytes(viz.grid_png(rows, headers, caps, scale, title=f"{defect}: red outline = ground truth",
                                   max_side=128))
        pngs.append(p)
    if pngs:
        md += ["", "## Examples", ""] + [f"![{p.stem}]({p.name})" for p in pngs]
    atomic_write_text(prefix.with_suffix(".md"), "\n".join(md) + "\n")
    payload = {**meta, "method": "diffusionad", "config": cfg.to_dict(), "rows": head, "ablation": abl,
               "per_defect": per_defect, "variants": res.variants, "seconds": res.seconds}
    from ...ablation import _clean

    atomic_write_text(prefix.with_suffix(".json"), json.dumps(_clean(payload), indent=2, default=str))
    written = [prefix.with_suffix(".md"), prefix.with_suffix(".json"), *pngs]
    if report is not None:
        report = Path(report)
        report.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"{k}: {v}" for k, v in (("date", meta.get("date")), ("data", meta.get("data")),
                                           ("model", meta.get("model"))) if v]
        m = meta.get("machine", {})
        if m:
            lines.append("machine: " + ", ".join(f"{k} {v}" for k, v in m.items()))
        extra = ["<h2>DiffusionAD inference settings (%)</h2>",
                 viz.metrics_table([r for r in abl if "status" not in r], ["setting", *COLUMNS[2:]])]
        if res.compare is not None:
            extra += ["<h2>Beside DRDC, its base model and kNN (%)</h2>", viz.metrics_table(head, COLUMNS)]
        extra += ["<h2>Per defect type (default settings, %)</h2>",
                  viz.metrics_table(per_defect, ["defect", "images", "method", "image_AUROC", "pixel_AUROC", "AUPRO"])]
        atomic_write_text(report, report_html(res.eval, title, None, lines + notes, per_type=report_per_type,
                                              extra_sections=extra))
        written.append(report)
    return written
