"""The study commands of ``drdc``: ``eval`` (a model's metrics on a test split, the kNN baseline
beside), ``ablate`` (its inference settings varied without retraining, other models beside) and
``seeds`` (mean ± std of ablate results over seeds). Every method is reached through the registry."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from . import methods
from .cli_common import categories_of as _categories
from .cli_common import fail as _fail
from .cli_common import invocation as _invocation
from .cli_common import knn_config as _knn_config
from .cli_common import knn_options as _knn_options
from .cli_common import out_folder as _out_folder
from .cli_common import parse_factor as _parse_factor
from .cli_common import MethodChoice


@click.command(name="eval")
@click.option("--model", "model_dir", type=click.Path(), help="Checkpoint folder (scored in PyTorch).")
@click.option("--bundle", "bundle_dir", type=click.Path(),
              help="Bundle folder (`drdc export`), scored on its own engines through the torch-free runtime: "
                   "the artifact a line deploys. Give --model or --bundle.")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "openvino", "tensorrt"]), default=None,
              help="--bundle: the engine [default: auto, the fastest this machine runs the bundle on: TensorRT "
                   "with a GPU, else OpenVINO int8 where the bundle has int8 networks and the CPU has AMX or no "
                   "native bf16, else OpenVINO bf16 where the CPU has it and the bundle passes the bf16 check "
                   "here, else int8 where the bundle has it, else ONNX Runtime; `drdc info --bundle B` says "
                   "which and why].")
@click.option("--precision", type=click.Choice(["f32", "bf16", "int8"]), default=None,
              help="--bundle --backend openvino: inference precision [default: f32]; int8 runs the bundle's "
                   "int8 networks (`drdc export --int8`).")
@click.option("--data", "data_root", required=True, type=click.Path(), help="MVTec-layout dataset folder.")
@click.option("--categories", help="Comma-separated categories (default: all found).")
@click.option("--out", default="drdc_eval", show_default=True, type=click.Path(), help="Output folder.")
@click.option("--method", default=None, type=MethodChoice(extra=("knn", "all")),
              help="drdc: base model and DRDC (one inference pass); diffusionad: DiffusionAD; knn: the "
                   "PatchCore-style patch-kNN baseline on a DRDC model's frozen backbone, its bank built from the "
                   "data's train/good; all: DRDC and kNN [default: the checkpoint's method].")
@click.option("--loop", default=None, type=click.Choice(["torch", "csrc", "numpy", "auto"]),
              help="--model: torch or csrc [default: torch]; --bundle: auto, csrc or numpy [default: auto].")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--device", default="cpu", show_default=True, help="Torch device (cpu, cuda); OpenVINO's with --bundle.")
@click.option("--per-type", default=4, show_default=True, type=click.IntRange(min=1),
              help="Examples per defect type in report.html (at 224², 4 make ~6 MB; 1 keeps it near 1.5 MB).")
@_knn_options
def evaluate_cmd(model_dir, bundle_dir, backend, precision, data_root, categories, out, method, loop, batch_size,
                 seed, device, per_type, knn_bank_size, knn_sampling, knn_stride):
    """Image AUROC, pixel AUROC, AUPRO (FPR ≤ 0.3) and F1-max per category: base model vs DRDC (vs kNN),
    or the model's own method; of a checkpoint, or of a bundle on its engines (--bundle)."""
    from drdc_trt.checkpoint import CheckpointError, atomic_write_text
    from drdc_trt.export.bundle import BundleError
    from drdc_trt.loading import load_checkpoint
    from .data import DatasetError
    from .evaluate import evaluate, fit_knn, report_html, save_results
    from .study_parts import eval_sections, eval_sections_markdown

    out = _out_folder(out)
    if (model_dir is None) == (bundle_dir is None):
        raise click.UsageError("give exactly one of --model CKPT or --bundle B")
    if bundle_dir is None and (backend is not None or precision is not None):
        raise click.UsageError("--backend and --precision choose a bundle's engine: use them with --bundle B")
    knn, fit_s = None, 0.0
    try:
        if bundle_dir is not None:
            det, own, spec, cfg, stats = _bundle_detector(bundle_dir, backend, precision, method, loop, seed,
                                                          device)
        else:
            model = load_checkpoint(model_dir)
            cfg, stats, own = model.cfg, model.stats, model.cfg.method
            spec = methods.get(own, f"{model_dir}/config.json")
            method = method or own
            if method in methods.names() and method != own:
                _fail(ValueError(f"--method {method}: {model_dir} holds a {own} model"))
            if method in ("knn", "all") and not spec.knn_baseline:
                _fail(ValueError(f"--method {method}: the kNN baseline runs on a DRDC model's backbone; "
                                 f"{model_dir} holds a {spec.title} model"))
            loop = loop or "torch"
            if loop not in spec.loops:
                _fail(ValueError(f"--loop {loop}: a {spec.title} model runs --loop {' or '.join(spec.loops)}"))
            det = spec.entry("detector")(model, device, seed=seed, loop=loop) if method != "knn" else None
            if method in ("knn", "all"):
                t0 = time.perf_counter()
                knn = fit_knn(model, data_root, _categories(categories),
                              _knn_config(knn_bank_size, knn_sampling, knn_stride, seed), device, progress=True)
                fit_s = time.perf_counter() - t0
        res = evaluate(det, data_root, _categories(categories), batch_size=batch_size, knn=knn,
                       knn_fit_seconds=fit_s)
    except (CheckpointError, BundleError, DatasetError) as e:
        _fail(e)
    click.echo(res.markdown())
    source = f"model {model_dir}" if bundle_dir is None else \
        f"bundle {bundle_dir} on {det.engine}"
    meta = {"command": " ".join(sys.argv), "model": None if model_dir is None else str(model_dir),
            "bundle": None if bundle_dir is None else str(bundle_dir),
            "engine": None if bundle_dir is None else det.engine,
            "data": str(data_root), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "config": cfg.to_dict(),
            "knn_config": knn.cfg.to_dict() if knn is not None else None,
            "knn_seconds": res.knn.seconds if res.knn is not None else None}
    if res.out is not None and hasattr(res.out, "step_report"):  # adaptive steps over the test images (GLAD)
        meta[f"{own}_steps"] = res.out.step_report(getattr(cfg, own).num_steps)
    sections = eval_sections(res, stats, cfg)
    extra = eval_sections_markdown(sections, cfg.image_size)
    click.echo(extra)
    meta["sections"] = sections
    save_results(res, out, meta, extra)
    title = f"{spec.title} evaluation" + ("" if bundle_dir is None else f" (bundle, {det.engine})")
    atomic_write_text(Path(out) / "report.html", report_html(res, title, stats, [f"{source}, data {data_root}"],
                                                                 per_type=per_type))
    click.echo(f"saved {out}/metrics.json, metrics.md and report.html")


class _BundleScored:
    """A bundle's torch-free runtime seen as a detector by ``evaluate``: ``predict`` (torch tensors in
    and out, the method's result batch), the bundle's config and statistics."""

    def __init__(self, predict, cfg, stats, engine: str):
        self.predict, self.cfg, self.stats, self.engine = predict, cfg, stats, engine


def _bundle_detector(bundle_dir, backend, precision, method, loop, seed, device):
    """(detector, method name, spec, config, statistics) of a bundle scored on its engines."""
    from .predictors import detect_predictor
    from .runtime import load_bundle

    bundle = load_bundle(bundle_dir)
    spec = methods.get(bundle.method, f"bundle {bundle_dir}: manifest.json")
    if method in ("knn", "all"):
        raise click.UsageError(f"--method {method}: the kNN baseline runs on a checkpoint's backbone (--model CKPT)")
    if method is not None and method != bundle.method:
        raise click.UsageError(f"--method {method}: {bundle_dir} holds a {bundle.method} bundle")
    seed = None if seed == 0 else seed  # 0 (the option's default): the seed the bundle carries
    predict, _, stats = detect_predictor(None, bundle_dir, backend, loop or "auto", seed, device, False,
                                         precision=precision)
    engine = predict.engine
    return _BundleScored(predict, bundle.model_config(), stats, engine), bundle.method, spec, bundle.model_config(), stats


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(), help="Checkpoint folder.")
@click.option("--data", "data_root", required=True, type=click.Path(), help="MVTec-layout dataset folder.")
@click.option("--work", required=True, type=click.Path(),
              help="Folder for the cached pieces (default pass, kNN maps, one file per variant); a re-run resumes.")
@click.option("--results", "prefix", type=click.Path(),
              help="Write <RESULTS>.md, <RESULTS>.json and <RESULTS>_examples_<defect>.png "
                   "(e.g. benchmarks/results/magnetic_tile_cpu_2026-11-23).")
@click.option("--report", type=click.Path(), help="Self-contained HTML report [default: <WORK>/report.html].")
@click.option("--categories", help="Comma-separated categories (default: all found).")
@click.option("--lams", default="0,0.5,0.9,1", show_default=True, help="λ values, re-blended post hoc.")
@click.option("--factor", "factors", multiple=True, metavar="KEY=V1,V2",
              help="An inference factor and its values (repeatable; a JSON list for list settings, e.g. "
                   "'diffusion.grid_sizes=[[4,8],[8,16]]') [default: diffusion.num_sets=2,4 "
                   "diffusion.num_steps=5,10,20 diffusion.t0=150,250,400].")
@click.option("--grid", is_flag=True, help="Every combination of the factors instead of one at a time.")
@click.option("--only", multiple=True, metavar="KEY",
              help="Run only the variants of these factors in this call (the rest: cached or 'not run').")
@click.option("--no-knn", is_flag=True, help="Skip the patch-kNN baseline.")
@click.option("--no-synthetic-lambda", is_flag=True,
              help="Skip the λ chosen on held-out normal images with synthetic anomalies (two short passes).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Detector (mask and noise) and kNN seed.")
@click.option("--device", default="cpu", show_default=True, help="Torch device (cpu, cuda).")
@click.option("--title", default="DRDC on real data", show_default=True)
@click.option("--per-type", default=4, show_default=True, type=click.IntRange(min=1),
              help="Examples per defect type in the HTML report (fewer keep a 224² report small).")
@click.option("--note", "notes", multiple=True, help="A line for the notes (repeatable).")
@click.option("--command-line", "commands", multiple=True,
              help="A command to list in the results, e.g. the training command (repeatable; this one is added).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--method", type=MethodChoice(), default=None,
              help="Check that the model is of this method [default: whatever the checkpoint holds]; a "
                   "DiffusionAD model varies diffusionad.t_a / .t_b / .w (default 100,200,300 / 300,400,600 / "
                   "0,0.5,1,2); a GLAD model glad.tau_rule / glad.tau_quantile / glad.tau (τ itself, inf/-inf: the "
                   "bounds) / glad.t0 / glad.min_step / glad.fallback / glad.saff_weight (default fixed,quantile / "
                   "0.5,0.75,0.95,0.99 / inf,-inf / 500,800 / 250,450 / continue,stop / sigmoid,minmax: the values "
                   "the model does not "
                   "use), τ re-calibrated on the held-out normal training images for each variant.")
@click.option("--compare-model", "compare_models", multiple=True, type=click.Path(),
              help="DiffusionAD or GLAD: another checkpoint whose rows go beside it (repeatable): a DRDC model "
                   "brings its base, DRDC and kNN rows, a DiffusionAD or GLAD model its default pass; each read "
                   "from its --compare-work when cached there.")
@click.option("--compare-work", "compare_works", multiple=True, type=click.Path(),
              help="The ablate work folder of each --compare-model, in the same order [default: <WORK>/<its "
                   "method>].")
@_knn_options
def ablate(model_dir, data_root, work, prefix, report, categories, lams, factors, grid, only, no_knn,
           no_synthetic_lambda, batch_size, seed, device, title, per_type, notes, commands, quiet, method,
           compare_models, compare_works, knn_bank_size, knn_sampling, knn_stride):
    """Base vs DRDC vs kNN on one trained model, then λ (post hoc) and K / steps / t0 (one pass each);
    on a DiffusionAD model its t_a / t_b / w, on a GLAD model its τ / t0 / min_step, beside other
    models with --compare-model."""
    from .checkpoint import CheckpointError, load_config
    from .study_parts import machine_info
    from .data import DatasetError

    try:
        lam_values = tuple(float(v) for v in lams.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{lams!r}: comma-separated numbers", param_hint="--lams") from None
    if not lam_values or not all(0.0 <= v <= 1.0 for v in lam_values):
        raise click.BadParameter(f"{lams!r}: every λ must lie in [0, 1]", param_hint="--lams")
    try:
        own = load_config(model_dir).method
    except CheckpointError as e:
        _fail(e)
    if method is not None and method != own:
        _fail(ValueError(f"--method {method}: {model_dir} holds a {own} model"))
    spec = methods.get(own, f"{model_dir}/config.json")
    if spec.study is not None:  # a method with a study of its own settings; other models beside it
        return _ablate_method(own, model_dir, data_root, work, prefix, report, categories, factors, grid, only,
                              no_knn, no_synthetic_lambda, batch_size, seed, device, title, per_type, notes,
                              commands, quiet, compare_models, compare_works, lam_values,
                              _knn_config(knn_bank_size, knn_sampling, knn_stride, seed))
    if compare_models or compare_works:
        raise click.BadParameter("for a DiffusionAD or GLAD model only", param_hint="--compare-model")
    run_ablation, write_results = spec.entry("ablate"), spec.entry("ablate_results")
    try:
        res = run_ablation(model_dir, data_root, work, _categories(categories), lam_values, _parse_factor(factors),
                           grid, list(only) or None, _knn_config(knn_bank_size, knn_sampling, knn_stride, seed),
                           not no_knn, batch_size, device, seed, progress=not quiet, log=click.echo,
                           synthetic_lambda=not no_synthetic_lambda)
    except (CheckpointError, DatasetError, KeyError, ValueError) as e:
        _fail(e)
    click.echo(res.eval.markdown())
    train_report = Path(model_dir) / "train_report.json"
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine_info(device),
            "model": str(model_dir), "data": str(data_root),
            "commands": [*commands, _invocation(click.get_current_context())], "notes": list(notes), "seed": seed}
    if train_report.is_file():
        meta["train_seconds"] = json.loads(train_report.read_text()).get("seconds")
    report = report or str(Path(work) / "report.html")
    files = write_results(res, prefix or Path(work) / "results", meta, report, title=title, report_per_type=per_type)
    for f in files:
        click.echo(f"wrote {f}")


def _ablate_method(own, model_dir, data_root, work, prefix, report, categories, factors, grid, only, no_knn,
                   no_synthetic_lambda, batch_size, seed, device, title, per_type, notes, commands, quiet,
                   compare_models, compare_works, lams, knn_cfg):
    """drdc ablate on a DiffusionAD or GLAD model (drdc_trt.models.study), other models beside it."""
    from .checkpoint import CheckpointError, load_config
    from .data import DatasetError
    from .study import run_method_study, write_results
    from .study_parts import machine_info

    if len(compare_works) > len(compare_models):
        raise click.BadParameter(f"{len(compare_works)} work folders for {len(compare_models)} models",
                                 param_hint="--compare-work")
    compare, others, other_dirs = None, [], []
    for i, other in enumerate(compare_models):
        try:
            kind = load_config(other).method
        except CheckpointError as e:
            _fail(e)
        other_work = compare_works[i] if i < len(compare_works) else str(Path(work) / kind)
        other_spec = methods.get(kind, f"{other}/config.json")
        if other_spec.study is None:  # a full ablation (DRDC: base, DRDC and kNN rows) beside
            if compare is not None:
                raise click.BadParameter(f"one {other_spec.title} model at most", param_hint="--compare-model")
            compare = {"run": other_spec.entry("ablate"), "model_dir": other, "work": other_work, "lams": lams,
                       "knn_cfg": knn_cfg, "with_knn": not no_knn, "synthetic_lambda": not no_synthetic_lambda}
        else:
            others.append((other_spec.entry("study"), other, other_work))
            other_dirs.append(other)
    study = methods.get(own).entry("study")
    if title == "DRDC on real data":  # the option's default names DRDC
        title = f"{study.name} on real data"
    try:
        res = run_method_study(study, model_dir, data_root, work, _categories(categories),
                               _parse_factor(factors) or None, grid, list(only) or None, batch_size, device,
                               seed, progress=not quiet, log=click.echo, compare=compare, others=others)
    except (CheckpointError, DatasetError, KeyError, ValueError) as e:
        _fail(e)
    click.echo(res.eval.markdown())
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine_info(device),
            "model": str(model_dir), "data": str(data_root),
            "compare_model": compare["model_dir"] if compare else None, "other_models": other_dirs,
            "commands": [*commands, _invocation(click.get_current_context())], "notes": list(notes), "seed": seed}
    train_report = Path(model_dir) / "train_report.json"
    if train_report.is_file():
        meta["train_seconds"] = json.loads(train_report.read_text()).get("seconds")
    files = write_results(res, prefix or Path(work) / "results", meta, report or str(Path(work) / "report.html"),
                          title=title, report_per_type=per_type)
    for f in files:
        click.echo(f"wrote {f}")


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path())
@click.option("--out", "prefix", required=True, type=click.Path(),
              help="Write <OUT>.md and <OUT>.json (e.g. benchmarks/results/magnetic_tile_cpu_seeds_2026-11-30).")
@click.option("--title", default="Headline rows over seeds", show_default=True)
@click.option("--note", "notes", multiple=True, help="A line for the notes (repeatable).")
def seeds(results, prefix, title, notes):
    """Mean ± std over seeds of the headline rows of several 'drdc ablate' result .json files
    (one trained model per seed: train with --set train.seed=N, ablate with --seed N)."""
    from . import seeds as seeds_mod
    from .checkpoint import atomic_write_text

    try:
        summary = seeds_mod.summarize(seeds_mod.load(results))
    except seeds_mod.SeedSummaryError as e:
        _fail(e)
    summary.update(title=title, date=time.strftime("%Y-%m-%d %H:%M:%S %Z"), notes=list(notes),
                   command=_invocation(click.get_current_context()))
    md = [f"# {title}", "", f"- date: {summary['date']}", "- files: " + ", ".join(f"`{f}`" for f in results),
          "", "```", summary["command"], "```", "", seeds_mod.markdown(summary)]
    if notes:
        md += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(f"{prefix}.md"), "\n".join(md) + "\n")
    atomic_write_text(Path(f"{prefix}.json"), json.dumps(summary, indent=1) + "\n")
    click.echo(seeds_mod.markdown(summary))
    click.echo(f"wrote {prefix}.md, {prefix}.json")


