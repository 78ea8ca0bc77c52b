"""Quality study of one trained reconstruction-method model (DiffusionAD, GLAD), without
retraining (``drdc ablate`` on such a checkpoint): the default pass on the test split (headline and
per-defect rows), the method's inference settings one at a time (or as a grid), and, beside them,
other models on the same test split: a DRDC model's base / DRDC / kNN rows (``compare``:
``drdc_trt.methods.drdc.ablation.run_ablation`` on it) and other reconstruction-method models' default passes
(``others``), each read from its own cache when it is there.

What differs between methods is a :class:`StudyMethod`: which factors it varies, how one test pass
runs with a variant's settings (GLAD re-calibrates its trigger threshold τ on the held-out normal
training images for each variant; DiffusionAD has nothing to calibrate that enters the metrics),
and the extra columns of its rows. Every pass is cached under ``work`` with a fingerprint of the
model, the data and the seed (``drdc_trt.study_parts.ResultCache``), so an interrupted run resumes.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence


from drdc_trt import viz
from drdc_trt.study_parts import pct as _pct, report_header
from drdc_trt.checkpoint import atomic_write_text
from drdc_trt.loading import load_checkpoint
from drdc_trt.data import load_split
from drdc_trt.evaluate import COLUMNS, EvalResult, method_outputs, report_html, table
from drdc_trt.training import split_calibration

# run_pass(model, cfg, changes, images, calib, seed, device, batch_size, progress)
#   → (batch, seconds, info): one test pass with the variant ``cfg`` (``changes`` applied; {} for the
#   default); ``calib`` the held-out normal training images; ``info`` extra fields of its row.
PassFn = Callable[..., tuple[Any, float, dict]]


@dataclass(frozen=True)
class StudyMethod:
    key: str                                 # ModelConfig.method
    name: str                                # its row name in the tables ("DiffusionAD")
    factors: Mapping[str, tuple]             # the default variants
    fields: tuple[str, ...]                  # the batch fields a cached pass keeps
    batch_type: type
    run_pass: PassFn
    default_setting: Callable[[Any], str]    # the default row's label, from the config
    describe: Callable[[Any, Mapping], list[str]]  # the model / inference lines of the report
    extra_columns: tuple[str, ...] = ()      # per-row columns of the settings table, from ``info``
    factor_hint: str = ""                    # what the method varies (for the error on another key)
    pseudo_factors: tuple[str, ...] = ()     # factor keys run_pass reads itself (not config fields)


@dataclass
class MethodStudy:
    method: StudyMethod
    eval: EvalResult                      # default pass on the test split
    cfg: Any                              # the model's ModelConfig
    variants: list[dict]                  # per variant: label, changes, rows, seconds (or status)
    seconds: dict[str, float] = field(default_factory=dict)
    compare: Any = None                   # drdc_trt.methods.drdc.ablation.AblationResult of a DRDC model, if asked
    others: list["MethodStudy"] = field(default_factory=list)  # other methods' default passes
    default_info: dict = field(default_factory=dict)            # ``info`` of the default pass


@contextlib.contextmanager
def carrying_config(model, cfg):
    """``model`` with ``cfg`` in place of its own config inside the block (the detectors read their
    inference settings from ``model.cfg`` at call time), its own restored after."""
    own = model.cfg
    model.cfg = cfg
    try:
        yield model
    finally:
        model.cfg = own


def config_variant(cfg, changes: Mapping[str, Any], pseudo: Sequence[str] = ()):
    """``cfg`` with the config-field changes applied (pseudo factors left to the pass)."""
    real = {k: v for k, v in changes.items() if k not in pseudo}
    return cfg.replace(**real) if real else cfg


def run_method_study(method: StudyMethod, model_dir: str | Path, data_root: str | Path, work: str | Path,
                     categories: Sequence[str] | None = None, factors: Mapping[str, Sequence] | None = None,
                     grid: bool = False, only: Sequence[str] | None = None, batch_size: int = 8,
                     device: str = "cpu", seed: int = 0, progress: bool = False,
                     log: Callable[[str], None] = print, compare: Mapping[str, Any] | None = None,
                     others: Sequence[tuple[StudyMethod, str | Path, str | Path]] = ()) -> MethodStudy:
    """Run (or resume) the study (module doc). ``only``: run just the variants changing these keys in
    this call (the others come from the cache or are reported as not run). ``compare``: keyword
    arguments of ``drdc_trt.methods.drdc.ablation.run_ablation`` for a DRDC model (model_dir, work, ...);
    ``others``: (method, model_dir, work) of further models whose default pass goes beside."""
    from drdc_trt.study_parts import ResultCache as _Cache
    from drdc_trt.study_parts import config_value as _get
    from drdc_trt.study_parts import fingerprint as _fingerprint
    from drdc_trt.study_parts import label, variant_changes
    from drdc_trt.study_parts import slug as _slug

    factors = dict(method.factors if factors is None else factors)
    model_dir = Path(model_dir)
    model = load_checkpoint(model_dir)
    cfg = model.cfg
    if cfg.method != method.key:
        raise ValueError(f"{model_dir}: method {cfg.method!r}, not a {method.name} checkpoint")
    for k in factors:
        if not k.startswith(f"{method.key}."):
            raise KeyError(f"factor {k!r}: a {method.name} study varies {method.factor_hint}")
        if k not in method.pseudo_factors:
            _get(cfg, k)
    variants_todo = variant_changes(cfg, factors, grid) if not method.pseudo_factors else \
        _variants_with_pseudo(cfg, factors, grid, method.pseudo_factors)
    for changes in variants_todo:  # values the config refuses fail before any work
        try:
            config_variant(cfg, changes, method.pseudo_factors)
        except (TypeError, ValueError) as e:
            raise ValueError(f"factor {label(changes)}: {e}") from None
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    test = load_split(data_root, "test", cfg.image_size, categories, progress=progress)
    train = load_split(data_root, "train", cfg.image_size, categories, progress=progress)
    train_names = [s.path.name for s in train.samples]
    _, calib_idx = split_calibration(len(train_names), cfg.train.calib_fraction, cfg.train.seed)
    calib = train.images[calib_idx]
    seconds["load_data"] = time.perf_counter() - t0
    log(f"data: {len(test)} test images")
    cache = _Cache(Path(work), _fingerprint(model_dir, test, [train_names[i] for i in calib_idx],
                                            {"seed": seed, "size": cfg.image_size, "method": method.key}))

    def cached_pass(name: str, changes: dict) -> tuple[Any, float, dict, bool]:
        got = cache.get_tensors(name)
        if got is not None:
            meta = cache.get_json(name)
            return method.batch_type(*(got[f] for f in method.fields)), meta["seconds"], meta.get("info", {}), True
        pcfg = config_variant(cfg, changes, method.pseudo_factors)
        out, s, info = method.run_pass(model, pcfg, changes, test.images, calib, seed, device, batch_size, progress)
        out = method.batch_type(*(getattr(out, f).cpu().contiguous() for f in method.fields))
        cache.put_tensors(name, {f: getattr(out, f) for f in method.fields}, {"seconds": s, "info": info})
        return out, s, info, False

    out, seconds["default_pass"], info, hit = cached_pass("default_pass", {})
    log(f"{method.name} default pass: " + ("from cache" if hit else f"{seconds['default_pass']:.0f} s"))
    result = EvalResult(test, out, table(test, method_outputs(out, None)), seconds["default_pass"])

    variants = []
    for changes in variants_todo:
        name = "variant_" + _slug(changes)
        entry = cache.get_json(name)
        if entry is None and (only is None or set(changes) & set(only)):
            v, s, vinfo, _ = cached_pass(name + "_test", changes)
            entry = {"label": label(changes), "changes": changes, "info": vinfo,
                     "rows": table(test, {method.name: (v.pred_score, v.anomaly_map)}),
                     "seconds": {"test": s}, "per_image_ms": 1000 * s / len(test)}
            cache.put_json(name, entry)
            for p in Path(work).glob(f"{name}_test.*"):  # the entry holds what the tables need
                p.unlink()
            log(f"{label(changes)}: image AUROC {100 * _mean(entry['rows'], method.name)['image_AUROC']:.1f} "
                f"({s:.0f} s)")
        elif entry is not None:
            log(f"{label(changes)}: from cache")
        variants.append(entry or {"label": label(changes), "changes": changes, "status": "not run"})

    other = None
    if compare is not None:
        run_ablation = compare["run"]  # the compared model's method's ablation (its registered "ablate")
        other = run_ablation(data_root=data_root, categories=categories, factors={}, device=device, seed=seed,
                             progress=progress, log=log, batch_size=batch_size,
                             **{k: v for k, v in compare.items() if k != "run"})
        _same_test(compare.get("model_dir"), other.eval.data, test)
        seconds.update({f"drdc_{k}": v for k, v in other.seconds.items()})
    beside = []
    for m, o_dir, o_work in others:
        o = run_method_study(m, o_dir, data_root, o_work, categories, factors={}, batch_size=batch_size,
                             device=device, seed=seed, progress=progress, log=log)
        _same_test(o_dir, o.eval.data, test)
        seconds[f"{m.key}_default_pass"] = o.seconds["default_pass"]
        beside.append(o)
    return MethodStudy(method, result, cfg, variants, seconds, other, beside, info)


def _variants_with_pseudo(cfg, factors, grid, pseudo) -> list[dict]:
    """variant_changes for factors some of which are not config fields (every value is a variant)."""
    from drdc_trt.study_parts import variant_changes

    real = {k: v for k, v in factors.items() if k not in pseudo}
    out = variant_changes(cfg, real, grid) if real else []
    for k, values in factors.items():
        if k in pseudo:
            out += [{k: v} for v in values]
    return out


def _same_test(model_dir, data, test) -> None:
    if [s.path.name for s in data.samples] != [s.path.name for s in test.samples]:
        raise ValueError(f"compare: {model_dir} was evaluated on other test images")


def _mean(rows: Sequence[dict], method: str) -> dict | None:
    return next((r for r in rows if r["category"] == "mean" and r["method"] == method), None)


def _metrics(r: Mapping) -> dict:
    return {k: r[k] for k in COLUMNS[2:]}


def headline_rows(res: MethodStudy) -> list[dict]:
    """The method's rows (per category and mean) and those of the models beside it."""
    rows = list(res.eval.rows) + [r for o in res.others for r in o.eval.rows]
    rows += list(res.compare.eval.rows) if res.compare is not None else []
    return sorted(rows, key=lambda r: (r["category"] == "mean", r["category"]))


def ablation_rows(res: MethodStudy) -> list[dict]:
    """One row per setting (mean over categories); ms_per_image: that test pass, one process."""
    m = res.method
    extra = lambda info: {k: info.get(k) for k in m.extra_columns}  # noqa: E731
    rows = [{"setting": f"default ({m.default_setting(res.cfg)})", **_metrics(_mean(res.eval.rows, m.name)),
             **extra(res.default_info), "ms_per_image": 1000 * res.seconds["default_pass"] / len(res.eval.data)}]
    for v in res.variants:
        if "rows" not in v:
            rows.append({"setting": v["label"], "status": "not run", "ms_per_image": None})
        else:
            rows.append({"setting": v["label"], **_metrics(_mean(v["rows"], m.name)), **extra(v.get("info", {})),
                         "ms_per_image": v["per_image_ms"]})
    return rows


def per_defect_rows(res: MethodStudy) -> list[dict]:
    """drdc_trt.methods.drdc.ablation.per_defect_rows for the method, then the rows of the models beside it."""
    from drdc_trt.study_parts import per_defect_rows as drdc_rows

    def own(study):  # method_outputs gives a reconstruction-method batch its own row alone
        return drdc_rows(type("Own", (), {"eval": study.eval, "cfg": study.cfg, "stats": None}))

    rows = own(res) + [r for o in res.others for r in own(o)]
    if res.compare is not None:
        rows += drdc_rows(res.compare)
    order = {m: i for i, m in enumerate(dict.fromkeys(r["method"] for r in rows))}
    return sorted(rows, key=lambda r: (r["defect"], order[r["method"]]))


def _cell(v) -> str:
    if v is None:
        return "–"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def ablation_markdown(rows: Sequence[dict], extra_columns: Sequence[str] = ()) -> str:
    cols = ["setting", *COLUMNS[2:], *extra_columns, "ms_per_image"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [str(r["setting"])] + [_pct(r.get(k)) for k in COLUMNS[2:]]
        if "status" in r:  # a variant not run yet: say so in its first metric column
            cells[1] = r["status"]
        cells += [_cell(r.get(k)) for k in extra_columns]
        cells.append("–" if r.get("ms_per_image") is None else f"{r['ms_per_image']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(res: MethodStudy, prefix: str | Path, meta: Mapping[str, Any], report: str | Path | None = None,
                  title: str | None = None, report_per_type: int = 4,
                  png_defects: Sequence[str] = ("blowhole", "crack", "uneven"), png_per_type: int = 4) -> list[Path]:
    """``<prefix>.md`` and ``<prefix>.json`` (+ example grids of the method's maps) and the HTML report."""
    from drdc_trt.study_parts import example_pngs, per_defect_markdown
    from drdc_trt.study_parts import json_clean as _clean

    m = res.method
    title = title or f"{m.name} on real data"
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    cfg = res.cfg
    head, abl, per_defect = headline_rows(res), ablation_rows(res), per_defect_rows(res)
    notes = list(meta.get("notes", ()))
    md = report_header(title, meta, len(res.eval.data))
    md += m.describe(cfg, meta)
    beside = [f"`{o_dir}` ({o.method.name})" for o, o_dir in zip(res.others, meta.get("other_models", ()))]
    if res.compare is not None:
        beside.append(f"`{meta.get('compare_model', '')}` (DRDC, its base model and the patch-kNN baseline on its "
                      "backbone)")
    if beside:
        md.append("- compared with: " + ", ".join(beside) + ", each from its own `drdc ablate` cache where present")
    if meta.get("train_seconds"):
        md.append("- training time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in meta["train_seconds"].items()))
    md.append("- evaluation time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in res.seconds.items()))
    if meta.get("commands"):
        md += ["", "Commands:", "", "```", *meta["commands"], "```"]
    md += ["", "## Methods on the test split (%)", "", viz.markdown_table(head, COLUMNS),
           "", f"## {m.name} inference settings (one trained model, %)", "",
           "Mean over categories; each row its own test pass with the model's weights (no retraining). "
           "ms_per_image: that pass, one process.", "", ablation_markdown(abl, m.extra_columns),
           "", "## Per defect type (default settings, %)", "",
           "Each defect type's images against all good test images.", "", per_defect_markdown(per_defect)]
    if notes:
        md += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    pngs = example_pngs(res.eval, None, prefix, png_defects, png_per_type)
    if pngs:
        md += ["", "## Examples", ""] + [f"![{p.stem}]({p.name})" for p in pngs]
    atomic_write_text(prefix.with_suffix(".md"), "\n".join(md) + "\n")
    payload = {**meta, "method": m.key, "config": cfg.to_dict(), "rows": head, "ablation": abl,
               "per_defect": per_defect, "variants": res.variants, "seconds": res.seconds,
               "default_pass": res.default_info}
    atomic_write_text(prefix.with_suffix(".json"), json.dumps(_clean(payload), indent=2, default=str))
    written = [prefix.with_suffix(".md"), prefix.with_suffix(".json"), *pngs]
    if report is not None:
        report = Path(report)
        report.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"{k}: {v}" for k, v in (("date", meta.get("date")), ("data", meta.get("data")),
                                           ("model", meta.get("model"))) if v]
        mach = meta.get("machine", {})
        if mach:
            lines.append("machine: " + ", ".join(f"{k} {v}" for k, v in mach.items()))
        extra = [f"<h2>{m.name} inference settings (%)</h2>",
                 viz.metrics_table([r for r in abl if "status" not in r], ["setting", *COLUMNS[2:]])]
        if res.compare is not None or res.others:
            extra += ["<h2>Beside the other models (%)</h2>", viz.metrics_table(head, COLUMNS)]
        extra += ["<h2>Per defect type (default settings, %)</h2>",
                  viz.metrics_table(per_defect, ["defect", "images", "method", "image_AUROC", "pixel_AUROC", "AUPRO"])]
        atomic_write_text(report, report_html(res.eval, title, None, lines + notes, per_type=report_per_type,
                                              extra_sections=extra))
        written.append(report)
    return written
