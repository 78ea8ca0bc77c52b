"""``drdc``: train, detect, eval and the demo from the command line."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import click

from .config import METHODS, PRESETS
from .predictors import detect_predictor


def _parse_sets(values: tuple[str, ...]) -> dict:
    out = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE, e.g. diffusion.t0=150", param_hint="--set")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _config(preset: str, config_file: str | None, sets: tuple[str, ...], method: str | None = None):
    """A preset's config for ``method`` (default drdc), or a config file's (whose method ``method``,
    when given, must be); then the --set overrides."""
    from drdc_trt.settings import ModelConfig
    from drdc_trt.config import preset as make_preset

    cfg = make_preset(preset, method or "drdc")
    if config_file:
        try:
            cfg = ModelConfig.from_dict(json.loads(Path(config_file).read_text()))
        except (OSError, json.JSONDecodeError, ValueError) as e:
            raise click.BadParameter(f"{config_file}: {e}", param_hint="--config") from None
        if method is not None and cfg.method != method:
            raise click.BadParameter(f"{config_file} has method={cfg.method!r}, not {method!r}", param_hint="--method")
    try:
        return cfg.replace(**_parse_sets(sets)) if sets else cfg.validate()
    except (KeyError, ValueError, TypeError) as e:
        raise click.BadParameter(str(e), param_hint="--set") from None


def _categories(value: str | None):
    return [c for c in value.split(",") if c] if value else None


def _fail(e: Exception) -> None:
    click.echo(f"error: {e}", err=True)
    sys.exit(2)


def _out_folder(out) -> Path:
    """--out as the folder a command writes into, checked before any work: an existing file there,
    or a file where one of its parent folders should be, is refused in one line (exit 2)."""
    path = Path(out)
    for q in (path, *path.parents):
        if q.exists() and not q.is_dir():
            _fail(ValueError(f"--out {path}: {q} is a file, not a folder; give a folder to write the results into"))
    return path


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="drdc_trt")
def main() -> None:
    """DRDC: diffusion-refined multi-class anomaly detection.

    Typical use: `drdc train --data DIR --out CKPT`, then `drdc eval --model CKPT --data DIR`
    or `drdc detect --model CKPT images/`. `drdc demo` does all of it on a generated data set.
    """


@main.command()
@click.option("--data", "data_root", required=True, type=click.Path(), help="MVTec-layout dataset folder.")
@click.option("--out", required=True, type=click.Path(), help="Checkpoint folder (resumes if it holds a run).")
@click.option("--preset", default="fast", show_default=True, type=click.Choice(PRESETS), help="Model size.")
@click.option("--config", "config_file", type=click.Path(), help="config.json to start from instead of a preset.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a setting, e.g. train.unet_iters=500.")
@click.option("--categories", help="Comma-separated categories (default: all found).")
@click.option("--device", default="cpu", show_default=True, help="Torch device to train on (cpu, cuda).")
@click.option("--method", type=click.Choice(METHODS), default=None,
              help="drdc (base model + U-Net) or diffusionad (U-Net + segmentation net, the preset's sizes; "
                   "docs/diffusionad.md) or glad (U-Net with adaptive denoising steps; docs/glad.md) "
                   "[default: drdc, or the --config file's].")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train(data_root, out, preset, config_file, sets, categories, device, method, quiet):
    """Train a model: DRDC (base model, U-Net, fusion statistics) or DiffusionAD (--method)."""
    from .data import DatasetError
    from drdc_trt.train import train as run

    cfg = _config(preset, config_file, sets, method)
    try:
        run(data_root, out, cfg, _categories(categories), progress=not quiet, device=device)
    except (DatasetError, ValueError) as e:
        _fail(e)


@main.command()
@click.option("--model", "model_dir", required=True, type=click.Path(), help="Trained checkpoint folder.")
@click.option("--data", "data_root", required=True, type=click.Path(),
              help="The MVTec-layout dataset it was trained on (its held-out normal images are used).")
@click.option("--out", required=True, type=click.Path(), help="Folder for the re-calibrated checkpoint.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="An inference setting, e.g. diffusion.margin=8, fusion.heat_norm=image_std, "
                   "fusion.select=synthetic (training settings are refused).")
@click.option("--categories", help="Comma-separated categories (default: all found).")
@click.option("--device", default="cpu", show_default=True, help="Torch device (cpu, cuda).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def calibrate(model_dir, data_root, out, sets, categories, device, quiet):
    """Change inference settings of a trained model without retraining: measure the fusion
    statistics (and λ, with fusion.select=synthetic) again on the held-out normal images."""
    from .checkpoint import CheckpointError
    from .data import DatasetError
    from drdc_trt.methods.drdc.train import recalibrate

    try:
        recalibrate(model_dir, data_root, out, _parse_sets(sets), _categories(categories), progress=not quiet,
                    log=click.echo, device=device)
    except (CheckpointError, DatasetError, KeyError, ValueError) as e:
        _fail(e)


def _expand_images(paths) -> list[Path]:
    from .data.folder import IMAGE_SUFFIXES

    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise click.BadParameter(f"{p}: no such file or folder", param_hint="IMAGES")
    if not files:
        raise click.BadParameter("no images found", param_hint="IMAGES")
    return files


_BACKENDS = ("torch", "torch-compiled", "onnxruntime", "openvino", "tensorrt")


@main.command()
@click.option("--model", "model_dir", type=click.Path(), help="Checkpoint folder (backends torch, torch-compiled).")
@click.option("--bundle", "bundle_dir", type=click.Path(),
              help="Bundle folder from `drdc export` (backends onnxruntime, openvino, tensorrt; runs without "
                   "PyTorch).")
@click.argument("images", nargs=-1, required=True)
@click.option("--backend", type=click.Choice(_BACKENDS), default=None,
              help="Network engine [default: torch with --model, onnxruntime with --bundle].")
@click.option("--out", default="drdc_detect", show_default=True, type=click.Path(), help="Output folder.")
@click.option("--loop", default="auto", show_default=True, type=click.Choice(["auto", "torch", "csrc", "numpy"]),
              help="DDIM loop: torch (Python, --model), csrc (C++ core), numpy (--bundle); auto = torch with "
                   "--model, csrc if built else numpy with --bundle.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=None, type=click.IntRange(min=0),
              help="Seed of the masks and noise [default: 0; a bundle's own].")
@click.option("--device", default="cpu", show_default=True,
              help="Torch device of the torch backends (cpu, cuda); OpenVINO device with --backend openvino "
                   "(cpu, gpu, npu, auto).")
@click.option("--precision", type=click.Choice(["f32", "bf16"]), default=None,
              help="openvino: inference precision [default: f32].")
@click.option("--rebuild-plans", is_flag=True,
              help="tensorrt: rebuild plans made for another GPU / TensorRT version from the bundle's ONNX.")
@click.option("--method", type=click.Choice(METHODS), default=None,
              help="Check that the model is of this method [default: whatever the checkpoint holds].")
def detect(model_dir, bundle_dir, images, backend, out, loop, batch_size, seed, device, precision, rebuild_plans,
           method):
    """Score IMAGES (files or folders): writes overlays, maps and results.json / results.csv."""
    import numpy as np
    import torch

    from . import viz
    from .checkpoint import CheckpointError, atomic_write_text
    from .data import DatasetError, load_image

    files = _expand_images(images)
    out = _out_folder(out)
    try:
        predict, size, st = detect_predictor(model_dir, bundle_dir, backend, loop, seed, device, rebuild_plans,
                                             method, precision)
        x = torch.stack([load_image(f, size) for f in files])
        res = predict(x, batch_size=batch_size, progress=True)
    except (CheckpointError, DatasetError, ValueError, RuntimeError) as e:
        _fail(e)
    (out / "maps").mkdir(parents=True, exist_ok=True)
    hi = max(st.pixel_threshold if np.isfinite(st.pixel_threshold) else 6.0, 1.0) * 1.5
    records = []
    for i, f in enumerate(files):
        stem = f"{i:04d}_{f.stem}"
        map_path, mask_path, ov_path = f"maps/{stem}_anomaly_map.npy", f"maps/{stem}_pred_mask.png", f"{stem}_overlay.png"
        np.save(out / map_path, res.anomaly_map[i].cpu().numpy().astype(np.float32))
        (out / mask_path).write_bytes(viz.png_bytes(viz.mask_image(res.pred_mask[i])))
        (out / ov_path).write_bytes(viz.png_bytes(viz.overlay(x[i], res.anomaly_map[i], 0.0, hi)))
        records.append({"image": str(f), "pred_score": float(res.pred_score[i]),
                        "pred_label": int(res.pred_label[i]), "anomaly_map": map_path,
                        "pred_mask": mask_path, "overlay": ov_path})
        if hasattr(res, "steps"):  # GLAD: the denoising steps this image took
            records[-1]["steps"] = int(res.steps[i])
        click.echo(f"{f}: pred_score {records[-1]['pred_score']:.3f} "
                   f"{'ANOMALOUS' if records[-1]['pred_label'] else 'normal'}")
    atomic_write_text(out / "results.json", json.dumps({"image_threshold": st.image_threshold,
                                                        "results": records}, indent=2))
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(records[0]))
        w.writeheader()
        w.writerows(records)
    click.echo(f"wrote {len(records)} results to {out}/results.json, results.csv and overlays")


from .serving.commands import triton_repo_option  # noqa: E402 - drdc export --triton-repo


@main.command(name="export")
@triton_repo_option
@click.option("--model", "model_dir", required=True, type=click.Path(), help="Checkpoint folder.")
@click.option("--out", required=True, type=click.Path(),
              help="Bundle folder to write (an earlier bundle there is replaced as a whole).")
@click.option("--fp16", is_flag=True,
              help="Build the TensorRT plans with fp16 kernels (timestep embedding and normalisation stay fp32); "
                   "the ONNX files stay float32.")
@click.option("--tensorrt", is_flag=True, help="Also build TensorRT plans (needs TensorRT 10 and an NVIDIA GPU).")
@click.option("--max-batch", default=8, show_default=True, type=click.IntRange(min=1),
              help="Largest image batch the TensorRT plans accept (the U-Net profile covers batch × rows-per-image).")
@click.option("--seed", default=None, type=click.IntRange(min=0),
              help="Detector seed whose masks and noise the bundle carries [default: the seed the checkpoint's "
                   "thresholds were calibrated with, stats.json detector_seed; another seed is allowed with a "
                   "warning: the thresholds were measured with that seed's noise].")
@click.option("--opset", default=17, show_default=True, type=click.IntRange(17, 20), help="ONNX opset.")
@click.option("--exporter", default="torchscript", show_default=True, type=click.Choice(["torchscript", "dynamo"]),
              help="torch.onnx exporter.")
@click.option("--check-batches", default="1,2", show_default=True,
              help="Image batch sizes of the ONNX Runtime vs PyTorch check ('' skips it).")
@click.option("--timing-cache", type=click.Path(),
              help="TensorRT timing cache [default: per TensorRT version and GPU under ~/.cache/drdc_trt/tensorrt].")
def export_cmd(model_dir, out, fp16, tensorrt, max_batch, seed, opset, exporter, check_batches, timing_cache):
    """Export a checkpoint to a bundle: ONNX (+ TensorRT plans), checked, hashed, atomic."""
    from .checkpoint import CheckpointError
    from .export import export_bundle
    from .export.bundle import BundleError
    from .export.numerics import NumericsError
    from .export.onnx_export import OnnxCheckError
    from .export.tensorrt_build import PlanBuildError, TensorRTUnavailable

    try:
        batches = [int(b) for b in check_batches.split(",") if b.strip()]
    except ValueError:
        raise click.BadParameter(f"{check_batches!r}: comma-separated integers", param_hint="--check-batches") from None
    if any(b < 1 for b in batches):
        raise click.BadParameter(f"{check_batches!r}: batch sizes must be >= 1", param_hint="--check-batches")
    calibrated = _calibration_seed(model_dir)
    if seed is None:
        seed = calibrated if calibrated is not None else 0
    elif calibrated is not None and seed != calibrated:
        click.echo(f"warning: --seed {seed}, but {model_dir}/stats.json was calibrated with detector seed "
                   f"{calibrated}: the bundle's thresholds were measured with other masks/noise", err=True)
    try:
        res = export_bundle(model_dir, out, fp16=fp16, tensorrt=tensorrt, max_batch=max_batch, seed=seed,
                            opset=opset, exporter=exporter, check_batches=batches, timing_cache=timing_cache,
                            log=click.echo)
    except TensorRTUnavailable as e:
        _fail(e)
    except (CheckpointError, BundleError, OnnxCheckError, NumericsError, PlanBuildError, ValueError, OSError) as e:
        _fail(e)
    plans = f", TensorRT {res.tensorrt['version']} plans for sm{res.tensorrt['compute_capability']}" \
        if res.tensorrt else ""
    click.echo(f"wrote bundle {res.path} (ONNX{plans}); run it with "
               f"`drdc detect --bundle {res.path} --backend {'tensorrt' if res.tensorrt else 'onnxruntime'} IMAGES`")


def _calibration_seed(model_dir) -> int | None:
    """stats.json's detector_seed (None when the file or the field is missing or unreadable: the
    export itself then names what is wrong)."""
    try:
        seed = json.loads((Path(model_dir) / "stats.json").read_text()).get("detector_seed")
    except (OSError, ValueError, AttributeError):
        return None
    return seed if isinstance(seed, int) and seed >= 0 else None


def _knn_options(f):
    f = click.option("--knn-bank-size", default=16384, show_default=True, type=click.IntRange(min=1),
                     help="kNN: memory-bank patches kept.")(f)
    f = click.option("--knn-sampling", default="greedy", show_default=True,
                     type=click.Choice(["greedy", "random", "all"]),
                     help="kNN: greedy coreset, random subset, or every training patch.")(f)
    f = click.option("--knn-stride", default="8", show_default=True, type=click.Choice(["8", "16"]),
                     help="kNN: patch grid S/stride (stride-8 and -16 stages either way).")(f)
    return f


def _knn_config(bank_size, sampling, stride, seed):
    from .models.knn import KNNConfig

    return KNNConfig(stride=int(stride), bank_size=bank_size, sampling=sampling, seed=seed).validate()


@main.command(name="eval")
@click.option("--model", "model_dir", required=True, type=click.Path(), help="Checkpoint folder.")
@click.option("--data", "data_root", required=True, type=click.Path(), help="MVTec-layout dataset folder.")
@click.option("--categories", help="Comma-separated categories (default: all found).")
@click.option("--out", default="drdc_eval", show_default=True, type=click.Path(), help="Output folder.")
@click.option("--method", default=None, type=click.Choice([*METHODS, "knn", "all"]),
              help="drdc: base model and DRDC (one inference pass); diffusionad: DiffusionAD; knn: the "
                   "PatchCore-style patch-kNN baseline on a DRDC model's frozen backbone, its bank built from the "
                   "data's train/good; all: DRDC and kNN [default: the checkpoint's method].")
@click.option("--loop", default="torch", show_default=True, type=click.Choice(["torch", "csrc"]))
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--device", default="cpu", show_default=True, help="Torch device (cpu, cuda).")
@_knn_options
def evaluate_cmd(model_dir, data_root, categories, out, method, loop, batch_size, seed, device,
                 knn_bank_size, knn_sampling, knn_stride):
    """Image AUROC, pixel AUROC, AUPRO (FPR ≤ 0.3) and F1-max per category: base model vs DRDC (vs kNN)."""
    from drdc_trt.checkpoint import CheckpointError, atomic_write_text
    from drdc_trt.loading import load_checkpoint
    from .data import DatasetError
    from .evaluate import evaluate, fit_knn, report_html, save_results
    from drdc_trt.methods.drdc.pipeline import Detector

    out = _out_folder(out)
    try:
        model = load_checkpoint(model_dir)
        own = model.cfg.method
        method = method or own
        if method in METHODS and method != own:
            _fail(ValueError(f"--method {method}: {model_dir} holds a {own} model"))
        if own in ("diffusionad", "glad") and method != own:
            _fail(ValueError(f"--method {method}: the kNN baseline runs on a DRDC model's backbone; "
                             f"{model_dir} holds a {'DiffusionAD' if own == 'diffusionad' else 'GLAD'} model"))
        if own == "glad":
            if loop != "torch":
                _fail(ValueError(f"--loop {loop}: a GLAD model runs its adaptive loop in PyTorch"))
            from drdc_trt.methods.glad.detector import GLADDetector

            det = GLADDetector(model, device, seed)
        elif own == "diffusionad":
            if loop != "torch":
                _fail(ValueError(f"--loop {loop}: a DiffusionAD model has no inpainting loop"))
            from drdc_trt.methods.diffusionad.detector import DiffusionADDetector

            det = DiffusionADDetector(model, device, seed)
        else:
            det = Detector.from_model(model, device=device, loop=loop, seed=seed) if method != "knn" else None
        knn, fit_s = None, 0.0
        if method in ("knn", "all"):
            t0 = time.perf_counter()
            knn = fit_knn(model, data_root, _categories(categories),
                          _knn_config(knn_bank_size, knn_sampling, knn_stride, seed), device, progress=True)
            fit_s = time.perf_counter() - t0
        res = evaluate(det, data_root, _categories(categories), batch_size=batch_size, knn=knn,
                       knn_fit_seconds=fit_s)
    except (CheckpointError, DatasetError) as e:
        _fail(e)
    click.echo(res.markdown())
    meta = {"command": " ".join(sys.argv), "model": str(model_dir), "data": str(data_root),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "config": model.cfg.to_dict(),
            "knn_config": knn.cfg.to_dict() if knn is not None else None,
            "knn_seconds": res.knn.seconds if res.knn is not None else None}
    if own == "glad":  # the distribution of adaptive denoising steps over the test images
        meta["glad_steps"] = res.out.step_report(model.cfg.glad.num_steps)
    save_results(res, out, meta)
    title = {"diffusionad": "DiffusionAD evaluation", "glad": "GLAD evaluation"}.get(own, "DRDC evaluation")
    atomic_write_text(Path(out) / "report.html", report_html(res, title, model.stats,
                                                             [f"model {model_dir}, data {data_root}"]))
    click.echo(f"saved {out}/metrics.json, metrics.md and report.html")


def _scalar(text: str):
    """A number as a number, any other word as a string (fusion.heat_norm=none,image_std)."""
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_factor(values: tuple[str, ...]) -> dict | None:
    if not values:
        return None
    out = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not raw:
            raise click.BadParameter(f"{item!r}: expected KEY=V1,V2,..., e.g. diffusion.t0=150,250,400",
                                     param_hint="--factor")
        try:  # numbers or words, or a JSON list of values for list settings: diffusion.grid_sizes=[[4,8],[8,16]]
            vals = json.loads(raw) if raw.startswith("[") else [_scalar(v) for v in raw.split(",")]
        except json.JSONDecodeError:
            vals = None
        if not isinstance(vals, list) or not vals or "" in vals:
            raise click.BadParameter(f"{item!r}: values must be numbers or words (V1,V2,...) or a JSON list of "
                                     "values ([[4,8],[8,16]])", param_hint="--factor")
        out[key] = tuple(vals)
    return out


def _invocation(ctx: click.Context) -> str:
    """The command as given, for result files: options that differ from their defaults (--note and
    --command-line, which change no result, left out)."""
    import shlex

    parts = ["drdc", ctx.info_name]
    for p in ctx.command.params:
        v = ctx.params.get(p.name)
        if p.name in ("notes", "commands"):  # documentation only: they change no result
            continue
        if v is None or v == p.default or (p.multiple and not v):
            continue
        if isinstance(p, click.Argument):
            parts += [shlex.quote(str(item)) for item in (v if p.nargs != 1 else (v,))]
            continue
        opt = max(p.opts, key=len)
        if getattr(p, "is_flag", False):
            if v:
                parts.append(opt)
            continue
        for item in (v if p.multiple else (v,)):
            parts += [opt, shlex.quote(str(item))]
    return " ".join(parts)


@main.command()
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
@click.option("--method", type=click.Choice(METHODS), default=None,
              help="Check that the model is of this method [default: whatever the checkpoint holds]; a "
                   "DiffusionAD model varies diffusionad.t_a / .t_b / .w (default 100,200,300 / 300,400,600 / "
                   "0,0.5,1,2); a GLAD model glad.tau_quantile / glad.tau (τ itself, inf/-inf: the bounds) / "
                   "glad.t0 / glad.min_step (default 0.5,0.75,0.95,0.99 / inf,-inf / 500,800 / 250,450), τ "
                   "re-calibrated on the held-out normal training images for each variant.")
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
    from drdc_trt.methods.drdc.ablation import machine_info, run_ablation, write_results
    from .checkpoint import CheckpointError, load_config
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
    if own in ("diffusionad", "glad"):
        return _ablate_method(own, model_dir, data_root, work, prefix, report, categories, factors, grid, only,
                              no_knn, no_synthetic_lambda, batch_size, seed, device, title, per_type, notes,
                              commands, quiet, compare_models, compare_works, lam_values,
                              _knn_config(knn_bank_size, knn_sampling, knn_stride, seed))
    if compare_models or compare_works:
        raise click.BadParameter("for a DiffusionAD or GLAD model only", param_hint="--compare-model")
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
    from drdc_trt.methods.drdc.ablation import machine_info
    from .checkpoint import CheckpointError, load_config
    from .data import DatasetError
    from drdc_trt.methods.diffusionad import ablation as dad_ablation
    from drdc_trt.methods.glad import ablation as glad_ablation
    from drdc_trt.study import run_method_study, write_results

    studies = {"diffusionad": dad_ablation.STUDY, "glad": glad_ablation.STUDY}
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
        if kind == "drdc":
            if compare is not None:
                raise click.BadParameter("one DRDC model at most", param_hint="--compare-model")
            compare = {"model_dir": other, "work": other_work, "lams": lams, "knn_cfg": knn_cfg,
                       "with_knn": not no_knn, "synthetic_lambda": not no_synthetic_lambda}
        else:
            others.append((studies[kind], other, other_work))
            other_dirs.append(other)
    study = studies[own]
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


@main.command()
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


@main.command()
@click.option("--out", default="demo_out", show_default=True, type=click.Path(), help="Output folder.")
@click.option("--preset", default="small", show_default=True, type=click.Choice(PRESETS))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a setting.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo(out, preset, sets, quiet):
    """Generate a synthetic data set, train a small model, evaluate it and write report.html."""
    from .demo import run_demo

    run_demo(_out_folder(out), _config(preset, None, sets), progress=not quiet)


@main.command()
@click.option("--out", required=True, type=click.Path(), help="Dataset folder to write.")
@click.option("--size", default=128, show_default=True, type=click.IntRange(min=8),
              help="Image side in px (images under 8 px are not read).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
def synth(out, size, seed):
    """Write the procedural synthetic dataset (MVTec layout)."""
    from .data import make_synthetic_dataset

    make_synthetic_dataset(out, size=size, seed=seed)
    click.echo(f"wrote synthetic dataset to {out}")


@main.command()
def info():
    """What this installation can run: compiled kernels, backends."""
    from . import build_info
    from .backends import available_backends

    click.echo(json.dumps({**build_info(), "backends": available_backends()}, indent=2))


def _register_serving() -> None:
    from .serving.commands import client_cmd, serve_cmd

    main.add_command(serve_cmd)
    main.add_command(client_cmd)


_register_serving()

if __name__ == "__main__":
    main()
