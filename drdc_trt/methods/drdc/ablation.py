"""Quality study of one trained model: base vs DRDC vs the patch-kNN baseline, and
an ablation of the inference settings — all without retraining.

* λ (fusion weight): post hoc from the raw maps of one inference pass
  (``fusion.normalised_blend``), free.
* K (``diffusion.num_sets``), DDIM steps (``diffusion.num_steps``) and t0
  (``diffusion.t0``): one inference pass each, with a new ``Detector`` on the
  loaded model and ``cfg.replace(**{key: value})``. The normalisation statistics
  of the diffusion map depend on these settings, so each variant is first
  re-calibrated on the held-out normal images the model was calibrated on (the
  split of ``train.train``), then evaluated on the test split.
* By default one factor at a time around the model's own setting; ``grid=True``
  runs the full product.

Every finished piece (the default pass, the kNN maps, each variant) is cached
under ``work`` with a fingerprint of the model and data, so an interrupted run —
or a run split into several short commands with ``only`` — picks up where it
stopped. ``write_results`` writes the Markdown + JSON result files, the HTML
report and PNG example grids.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from drdc_trt import viz
from drdc_trt.methods.drdc import ops
from drdc_trt.methods.drdc import tuning
from drdc_trt.checkpoint import atomic_write_text
from drdc_trt.loading import load_checkpoint
from drdc_trt.data import Loaded, load_split
from drdc_trt.evaluate import COLUMNS, EvalResult, KNNOutput, fit_knn, method_outputs, report_html, table
from drdc_trt.methods.drdc.fusion import FusionStats, PixelStats, normalised_blend
from drdc_trt.methods.drdc.pipeline import Detector, InferenceBatch
from drdc_trt.study_parts import (
    FIELDS,
    ResultCache,
    config_value,
    example_pngs,
    fingerprint,
    json_clean,
    label,
    mean_row,
    pct,
    per_defect_markdown,
    per_defect_rows,
    report_header,
    slug,
    variant_changes,
)
from drdc_trt.training import split_calibration

LAMBDAS = (0.0, 0.5, 0.9, 1.0)
FACTORS: dict[str, tuple] = {
    "diffusion.num_sets": (2, 4),
    "diffusion.num_steps": (5, 10, 20),
    "diffusion.t0": (150, 250, 400),
}
DIFF_ONLY = "diffusion only (λ=1)"
SYNTH_LAM = "λ chosen on synthetic anomalies"


# ----------------------------------------------------------------- the study
@dataclass
class AblationResult:
    eval: EvalResult                      # default pass (+ kNN) on the test split
    stats: FusionStats
    cfg: Any                              # the model's ModelConfig
    lam_rows: list[dict]                  # DRDC at each λ (mean rows + per category)
    variants: list[dict]                  # per variant: label, changes, rows, stats, seconds (or status)
    seconds: dict[str, float] = field(default_factory=dict)
    knn_cfg: dict | None = None
    synthetic: dict | None = None         # λ chosen on synthetic anomalies: chosen, rows


def _predict_cached(det: Detector, images: torch.Tensor, cache: ResultCache, name: str, batch_size: int,
                    progress: bool, chunk: int = 64) -> tuple[InferenceBatch, float, int]:
    """``det.predict`` in chunks of ``chunk`` images, each cached as it finishes, so an
    interrupted pass resumes (results do not depend on batching). Returns the outputs on
    the CPU, the seconds spent on the chunks computed in this call, and their image count."""
    parts, seconds, computed = [], 0.0, 0
    for k, i in enumerate(range(0, len(images), chunk)):
        key = f"{name}.part{k:03d}"
        got = cache.get_tensors(key)
        if got is None:
            t0 = time.perf_counter()
            out = det.predict(images[i:i + chunk], batch_size=batch_size, progress=progress)
            got = {f: getattr(out, f).cpu().contiguous() for f in FIELDS}
            dt = time.perf_counter() - t0
            cache.put_tensors(key, got, {"seconds": dt, "images": len(images[i:i + chunk])})
            seconds, computed = seconds + dt, computed + len(images[i:i + chunk])
        parts.append(InferenceBatch(*(got[f] for f in FIELDS)))
    return InferenceBatch.concat(parts), seconds, computed


def _parts_seconds(cache: ResultCache, name: str) -> tuple[float, int]:
    """Seconds and images of every cached chunk of a pass (earlier calls included)."""
    total, n, k = 0.0, 0, 0
    while (meta := cache.get_json(f"{name}.part{k:03d}")) is not None:
        total, n, k = total + meta["seconds"], n + meta["images"], k + 1
    return total, n


def _lam_rows(out: InferenceBatch, stats: FusionStats, data: Loaded, lams: Sequence[float], window: int) -> list[dict]:
    methods = {}
    for lam in lams:
        m = normalised_blend(out.diff_map, out.base_map, stats, float(lam))
        methods[f"λ={lam:g}"] = (ops.image_score(m, window), m)
    return table(data, methods)


def run_ablation(model_dir: str | Path, data_root: str | Path, work: str | Path,
                 categories: Sequence[str] | None = None, lams: Sequence[float] = LAMBDAS,
                 factors: Mapping[str, Sequence] | None = None, grid: bool = False,
                 only: Sequence[str] | None = None, knn_cfg=None, with_knn: bool = True,
                 batch_size: int = 8, device: str = "cpu", seed: int = 0, progress: bool = False,
                 log: Callable[[str], None] = print, synthetic_lambda: bool = True) -> AblationResult:
    """Run (or resume) the study; see the module docstring. ``only``: run just the
    variants that change these factor keys in this call (the others are reported
    from the cache if there, else as not run)."""
    from drdc_trt.backends.torch_backend import TorchRunner
    from drdc_trt.models.knn import KNNConfig

    factors = dict(FACTORS if factors is None else factors)
    model_dir = Path(model_dir)
    model = load_checkpoint(model_dir)
    cfg, stats = model.cfg, model.stats
    for k in factors:
        config_value(cfg, k)  # unknown keys fail here, before any work
    for changes in variant_changes(cfg, factors, grid):  # and values the config refuses
        try:
            cfg.replace(**changes)
        except (TypeError, ValueError) as e:
            raise ValueError(f"factor {label(changes)}: {e}") from None
    knn_cfg = (knn_cfg or KNNConfig()) if with_knn else None
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    test = load_split(data_root, "test", cfg.image_size, categories, progress=progress)
    train_data = load_split(data_root, "train", cfg.image_size, categories, progress=progress)
    _, calib_idx = split_calibration(len(train_data), cfg.train.calib_fraction, cfg.train.seed)
    calib = train_data.images[calib_idx] if calib_idx else train_data.images
    seconds["load_data"] = time.perf_counter() - t0
    log(f"data: {len(test)} test images, {len(calib)} calibration images, {len(train_data)} train/good")
    extra = {"seed": seed, "size": cfg.image_size}
    if seed != stats.detector_seed:  # passes use statistics re-measured for this seed (below)
        extra["statistics_for_seed"] = seed
    cache = ResultCache(Path(work), fingerprint(model_dir, test, [train_data.samples[i].path.name for i in calib_idx],
                                            extra))
    runner = TorchRunner(model, device)
    if seed != stats.detector_seed:
        # another detector seed is another mask layout: measure the statistics again for it (the
        # settings chosen at calibration are kept); cached like every other piece
        got = cache.get_tensors("statistics")
        if got is None:
            det = Detector(cfg, runner, FusionStats(), device, seed=seed)
            stats, _ = tuning.statistics(cfg, calib, tuning.raw_maps(det, calib, batch_size), cfg.fusion.heat_norm,
                                         cfg.fusion.lam)
            stats.detector_seed = seed
            cache.put_tensors("statistics", stats.pixel.tensors() if stats.pixel is not None else {"none": torch.zeros(1)},
                              {"stats": json.loads(stats.to_json())})
        else:
            stats = FusionStats.from_dict(cache.get_json("statistics")["stats"])
            if cfg.fusion.diff_norm == "pixel":
                stats.pixel = PixelStats.from_tensors(got, "statistics", cfg.image_size)
        log(f"statistics re-measured for detector seed {seed} (the model was calibrated with seed "
            f"{model.stats.detector_seed})")

    # -- default pass: base model and DRDC at the model's own settings
    cached = cache.get_tensors("default_pass")
    if cached is not None:
        out = InferenceBatch(*(cached[f] for f in FIELDS))
        seconds["default_pass"] = cache.get_json("default_pass")["seconds"]
        log("default pass: from cache")
    else:
        det = Detector(cfg, runner, stats, device, seed=seed)
        out, _, _ = _predict_cached(det, test.images, cache, "default_pass", batch_size, progress)
        seconds["default_pass"] = _parts_seconds(cache, "default_pass")[0]
        cache.put_tensors("default_pass", {f: getattr(out, f).contiguous() for f in FIELDS},
                          {"seconds": seconds["default_pass"]})
        cache.drop_parts("default_pass")
        log(f"default pass: {seconds['default_pass']:.0f} s")

    # -- kNN baseline
    knn_out = None
    if knn_cfg is not None:
        name = "knn_" + hashlib.sha256(json.dumps(knn_cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
        cached = cache.get_tensors(name)
        if cached is not None:
            meta = cache.get_json(name)
            knn_out = KNNOutput(cached["scores"], cached["maps"], meta["map_mean"], meta["map_std"], meta["seconds"])
            log("kNN: from cache")
        else:
            t0 = time.perf_counter()
            knn = fit_knn(model, data_root, categories, knn_cfg, device, train_data=train_data)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            scores, maps = knn.predict(test.images)
            knn_out = KNNOutput(scores, maps, knn.map_mean, knn.map_std, fit_s + time.perf_counter() - t0)
            cache.put_tensors(name, {"scores": scores.contiguous(), "maps": maps.contiguous()},
                              {"map_mean": knn.map_mean, "map_std": knn.map_std, "seconds": knn_out.seconds,
                               "fit_seconds": fit_s, "bank_size": int(knn.bank.shape[0]),
                               "patches_seen": knn.num_patches_seen, "config": knn_cfg.to_dict()})
            log(f"kNN: bank {knn.bank.shape[0]} of {knn.num_patches_seen} patches, {knn_out.seconds:.0f} s")
        seconds["knn"] = knn_out.seconds

    methods = method_outputs(out, stats, cfg, knn_out)
    result = EvalResult(test, out, table(test, methods), seconds["default_pass"], knn_out)
    lam_rows = _lam_rows(out, stats, test, lams, cfg.score_window)

    # -- λ chosen without test labels: held-out normal images ± synthetic anomalies
    synthetic = None
    if synthetic_lambda:
        synthetic = _synthetic_lambda(cfg, runner, stats, calib, cache, device, seed, batch_size, progress, log)
        m = normalised_blend(out.diff_map, out.base_map, stats, synthetic["chosen"])
        lam_rows += table(test, {SYNTH_LAM: (ops.image_score(m, cfg.score_window), m)})
        seconds["synthetic_lambda"] = synthetic["seconds"]

    # -- inference-setting variants (each: calibration pass + test pass)
    variants = []
    for changes in variant_changes(cfg, factors, grid):
        name = "variant_" + slug(changes)
        entry = cache.get_json(name)
        if entry is None and (only is None or set(changes) & set(only)):
            vcfg = cfg.replace(**changes)
            det = Detector(vcfg, runner, FusionStats(), device, seed=seed)
            t0 = time.perf_counter()
            det.stats, _ = tuning.statistics(vcfg, calib, tuning.raw_maps(det, calib, batch_size),
                                             vcfg.fusion.heat_norm, vcfg.fusion.lam)
            t_cal = time.perf_counter() - t0
            v, _, _ = _predict_cached(det, test.images, cache, name + "_test", batch_size, progress)
            t_test = _parts_seconds(cache, name + "_test")[0]
            diff_only = normalised_blend(v.diff_map, v.base_map, det.stats, 1.0)
            rows = table(test, {"DRDC": (v.pred_score, v.anomaly_map),
                                DIFF_ONLY: (ops.image_score(diff_only, vcfg.score_window), diff_only)})
            entry = {"label": label(changes), "changes": changes, "rows": rows,
                     "stats": json.loads(det.stats.to_json()),
                     "seconds": {"calibration": t_cal, "test": t_test},
                     "per_image_ms": 1000 * t_test / len(test)}
            cache.put_json(name, entry)
            cache.drop_parts(name + "_test")
            log(f"{label(changes)}: DRDC image AUROC {100 * mean_row(rows, 'DRDC')['image_AUROC']:.1f} "
                f"({t_cal + t_test:.0f} s)")
        elif entry is not None:
            log(f"{label(changes)}: from cache")
        variants.append(entry or {"label": label(changes), "changes": changes, "status": "not run"})
    return AblationResult(result, stats, cfg, lam_rows, variants, seconds,
                          knn_cfg.to_dict() if knn_cfg is not None else None, synthetic)


def _synthetic_lambda(cfg, runner, stats, calib, cache, device, seed, batch_size, progress, log) -> dict:
    """λ chosen as ``fusion.select = "synthetic"`` would choose it (drdc_trt.tuning), at the
    model's own heat normalisation and synthetic families, on its calibration images; cached."""
    families = list(cfg.fusion.synthetic_families)
    entry = cache.get_json("synthetic_lambda")
    if entry is not None and entry.get("families", ["patches"]) != families:
        entry = None
    if entry is None:
        det = Detector(cfg, runner, stats, device, seed=seed)
        good, _, _ = _predict_cached(det, calib, cache, "synthetic_good", batch_size, progress)
        per, names = [], ["synthetic_good"]
        for fam in families:
            anomalous, masks = tuning.synthetic_set(calib, fam)
            name = "synthetic_anomalous" if fam == "patches" else f"synthetic_anomalous_{fam}"
            anom, _, _ = _predict_cached(det, anomalous, cache, name, batch_size, progress)
            per.append(tuning.lambda_rows((good.diff_map, good.base_map), (anom.diff_map, anom.base_map), masks,
                                          stats, cfg.score_window))
            names.append(name)
        rows = tuning.mean_over_families(per)
        entry = {"chosen": tuning.choose(rows)["lam"], "rows": rows, "images": len(calib), "families": families,
                 "family_rows": dict(zip(families, per)),
                 "seconds": sum(_parts_seconds(cache, n)[0] for n in names)}
        cache.put_json("synthetic_lambda", entry)
        for n in names:
            cache.drop_parts(n)
    log(f"λ chosen on {entry['images']} held-out normal images with synthetic anomalies "
        f"({', '.join(entry.get('families', ['patches']))}): {entry['chosen']:g}")
    return entry


def diagnostic_rows(res: AblationResult, border: int = 4) -> list[dict]:
    """drdc_trt.diagnostics on the default pass: base, diffusion map alone, DRDC (and λ chosen
    on synthetic anomalies)."""
    from drdc_trt import diagnostics

    out, stats, cfg = res.eval.out, res.stats, res.cfg
    methods = out.diagnostic_maps(stats, cfg)
    if res.synthetic is not None:
        m = normalised_blend(out.diff_map, out.base_map, stats, res.synthetic["chosen"])
        methods[f"DRDC ({SYNTH_LAM})"] = (ops.image_score(m, cfg.score_window), m)
    return diagnostics.diagnose(res.eval.data.images, res.eval.data.labels, methods, border)


def ablation_rows(res: AblationResult) -> list[dict]:
    """One row per setting (mean over categories): DRDC and the diffusion map alone."""
    cfg = res.cfg
    d = cfg.diffusion
    default = f"default (K={d.num_sets}, steps={d.num_steps}, t0={d.t0}, λ={cfg.fusion.lam:g})"
    rows = []
    drdc = mean_row(res.eval.rows, "DRDC")
    lam1 = mean_row(res.lam_rows, "λ=1")
    ms = 1000 * res.seconds["default_pass"] / len(res.eval.data)
    rows.append({"setting": default, "method": "DRDC", **{k: drdc[k] for k in COLUMNS[2:]}, "ms_per_image": ms})
    if lam1:
        rows.append({"setting": default, "method": DIFF_ONLY, **{k: lam1[k] for k in COLUMNS[2:]},
                     "ms_per_image": ms})
    for lam in [r for r in res.lam_rows if r["category"] == "mean"]:
        setting = (f"{SYNTH_LAM} (λ={res.synthetic['chosen']:g})" if lam["method"] == SYNTH_LAM
                   else f"λ={lam['method'][2:]} (post hoc)")
        rows.append({"setting": setting, "method": "DRDC",
                     **{k: lam[k] for k in COLUMNS[2:]}, "ms_per_image": None})
    for v in res.variants:
        if "rows" not in v:
            rows.append({"setting": v["label"], "method": "not run", "ms_per_image": None})
            continue
        for method in ("DRDC", DIFF_ONLY):
            r = mean_row(v["rows"], method)
            rows.append({"setting": v["label"], "method": method, **{k: r[k] for k in COLUMNS[2:]},
                         "ms_per_image": v["per_image_ms"]})
    return rows


ABL_COLUMNS = ["setting", "method", *COLUMNS[2:], "ms_per_image"]


def ablation_markdown(rows: Sequence[dict]) -> str:
    lines = ["| " + " | ".join(ABL_COLUMNS) + " |", "|" + "---|" * len(ABL_COLUMNS)]
    for r in rows:
        cells = [str(r["setting"]), str(r["method"])] + [pct(r.get(k)) for k in COLUMNS[2:]]
        cells.append("–" if r.get("ms_per_image") is None else f"{r['ms_per_image']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ablation_html(rows: Sequence[dict]) -> str:
    import html

    head = "".join(f"<th>{html.escape(c)}</th>" for c in ABL_COLUMNS)
    body = []
    for r in rows:
        cells = [html.escape(str(r["setting"])), html.escape(str(r["method"]))]
        cells += [pct(r.get(k)) for k in COLUMNS[2:]]
        cells.append("–" if r.get("ms_per_image") is None else f"{r['ms_per_image']:.0f}")
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def write_results(res: AblationResult, prefix: str | Path, meta: Mapping[str, Any],
                  report: str | Path | None = None, png_defects: Sequence[str] = ("blowhole", "crack", "uneven"),
                  png_per_type: int = 4, title: str = "DRDC on real data", report_per_type: int = 4) -> list[Path]:
    """``<prefix>.md`` and ``<prefix>.json`` (+ ``<prefix>_examples_<defect>.png``, tiles at most
    128 px), and the self-contained HTML report at ``report`` (``report_per_type`` examples per
    defect type). Returns the files written."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    written = []
    abl = ablation_rows(res)
    cfg = res.cfg
    notes = list(meta.get("notes", ()))
    main_md = res.eval.markdown()
    md = report_header(title, meta, len(res.eval.data))
    md.append(f"- model: `{meta.get('model', '')}`, image size {cfg.image_size}, U-Net width "
              f"{cfg.unet.model_channels} (channel_mult {list(cfg.unet.channel_mult)}), transformer "
              f"{cfg.transformer.hidden_dim}-d {cfg.transformer.num_encoder_layers}+{cfg.transformer.num_decoder_layers} "
              f"layers, backbone {cfg.backbone.name}; trained {cfg.train.base_epochs} base epochs + "
              f"{cfg.train.unet_iters} U-Net iterations (batch {cfg.train.batch_size}, crop {cfg.train.crop_size or 'none'}, "
              f"objective {cfg.diffusion.objective})")
    md.append(f"- inference: K={cfg.diffusion.num_sets}, grids {list(cfg.diffusion.grid_sizes)}, "
              f"{cfg.diffusion.num_steps} DDIM steps from t0={cfg.diffusion.t0}, pool factors "
              f"{list(cfg.fusion.pool_factors)}, mean filter {cfg.fusion.mean_filter}, λ={cfg.fusion.lam:g}, "
              f"score window {cfg.score_window}")
    if res.knn_cfg:
        k = res.knn_cfg
        md.append(f"- kNN baseline: same frozen backbone, stages at strides {list(k['layers'])}, "
                  f"{k['local']}×{k['local']} local average, grid S/{k['stride']}, "
                  f"{k['sampling']} bank of {k['bank_size']} patches (seed {k['seed']})")
    if meta.get("train_seconds"):
        md.append("- training time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in meta["train_seconds"].items()))
    md.append("- evaluation time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in res.seconds.items()))
    if meta.get("commands"):
        md += ["", "Commands:", "", "```", *meta["commands"], "```"]
    md += ["", "## Base vs DRDC vs kNN (%)", "", main_md, "", "## Ablation (one trained model, %)", "",
           "Mean over categories. λ rows re-blend the raw maps of the default pass (free); every other row is "
           "its own inference pass, re-calibrated on the held-out normal images before the test pass. "
           "`diffusion only (λ=1)` scores the diffusion map alone. ms_per_image: test pass, one process.", "",
           ablation_markdown(abl)]
    per_defect = per_defect_rows(res) if res.eval.out is not None else []
    if per_defect:
        md += ["", "## Per defect type (default settings, %)", "",
               "Each defect type's images against all good test images.", "", per_defect_markdown(per_defect)]
    from drdc_trt import diagnostics

    diag = diagnostic_rows(res) if res.eval.out is not None else []
    if diag:
        md += ["", "## Diagnostics: border and lighting", "",
               "Default pass on the test split. A map that finds defects, not the image edge or the lighting, "
               "has a border share near the share of pixels there and a brightness correlation near 0.", "",
               diagnostics.markdown(diag, cfg.image_size)]
    if res.synthetic is not None:
        md += ["", "## λ chosen without test labels", "",
               f"{res.synthetic['images']} held-out normal training images, scored as they are and with one "
               "synthetic anomaly each per family (" + ", ".join(res.synthetic.get("families", ["patches"]))
               + "; patches: Perlin mask, the image's own pixels shuffled in strips; small: spots, thin scratches, "
               "local blur of 0.05–1 % of the image); each metric the mean over families, best mean of the three "
               "metrics (%), at the model's heat normalisation.", "",
               tuning.markdown(res.synthetic["rows"], {"lam": res.synthetic["chosen"]})]
    from drdc_trt.methods.drdc import guard

    guard_record = guard.stored_record(meta.get("model"))
    if guard_record:
        md += ["", "## Reliability guard (calibration)", "", guard.markdown(guard_record)]
    if notes:
        md += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    pngs = example_pngs(res.eval, res.stats, prefix, png_defects, png_per_type)
    if pngs:
        md += ["", "## Examples", ""] + [f"![{p.stem}]({p.name})" for p in pngs]
    atomic_write_text(prefix.with_suffix(".md"), "\n".join(md) + "\n")
    payload = {**{k: v for k, v in meta.items()}, "config": cfg.to_dict(), "knn_config": res.knn_cfg,
               "stats": json.loads(res.stats.to_json()), "rows": res.eval.rows, "lambda_rows": res.lam_rows,
               "ablation": abl, "per_defect": per_defect, "variants": res.variants, "seconds": res.seconds,
               "diagnostics": diag, "synthetic_lambda": res.synthetic, "reliability_guard": guard_record}
    atomic_write_text(prefix.with_suffix(".json"), json.dumps(json_clean(payload), indent=2, default=str))
    written += [prefix.with_suffix(".md"), prefix.with_suffix(".json"), *pngs]
    if report is not None:
        report = Path(report)
        report.parent.mkdir(parents=True, exist_ok=True)
        head = [f"{k}: {v}" for k, v in (("date", meta.get("date")), ("data", meta.get("data")),
                                          ("model", meta.get("model"))) if v]
        m = meta.get("machine", {})
        if m:
            head.append("machine: " + ", ".join(f"{k} {v}" for k, v in m.items()))
        extra = ["<h2>Ablation (one trained model, %)</h2><p class='note'>λ rows re-blend the default pass; "
                 "other rows are separate inference passes, each re-calibrated.</p>", ablation_html(abl)]
        if diag:
            extra += ["<h2>Diagnostics: border and lighting</h2>",
                      viz.metrics_table([{"method": r["method"], "image_AUROC": r["image_AUROC"],
                                          "Spearman(score, brightness) ×100": r["brightness_spearman"],
                                          "good maxima within 4 px of the edge (%)": float("nan")
                                          if r["border_share"] is None else r["border_share"]} for r in diag],
                                        ["method", "image_AUROC", "Spearman(score, brightness) ×100",
                                         "good maxima within 4 px of the edge (%)"])]
        if guard_record:
            extra += ["<h2>Reliability guard (calibration)</h2>", guard.html(guard_record)]
        if per_defect:
            extra += ["<h2>Per defect type (default settings, %)</h2>",
                      viz.metrics_table(per_defect, ["defect", "images", "method", "image_AUROC", "pixel_AUROC",
                                                     "AUPRO"])]
        atomic_write_text(report, report_html(res.eval, title, res.stats, head + notes, per_type=report_per_type,
                                              extra_sections=extra))
        written.append(report)
    return written
