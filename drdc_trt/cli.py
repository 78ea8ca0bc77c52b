"""``drdc``: train, detect, eval and the demo from the command line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import click

from .cli_common import MethodChoice
from .config import PRESETS
from .cli_common import (
    categories_of as _categories,
    expand_images as _expand_images,
    fail as _fail,
    invocation as _invocation,
    knn_config as _knn_config,
    knn_options as _knn_options,
    make_config as _config,
    out_folder as _out_folder,
    parse_factor as _parse_factor,
    parse_sets as _parse_sets,
    scalar as _scalar,
)
from .predictors import detect_predictor
from .train import command as train_command


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="drdc_trt")
def main() -> None:
    """DRDC: diffusion-refined multi-class anomaly detection.

    Typical use: `drdc train --data DIR --out CKPT`, then `drdc eval --model CKPT --data DIR`
    or `drdc detect --model CKPT images/`. `drdc demo` does all of it on a generated data set.
    """


main.add_command(train_command)  # drdc_trt/train.py: also `python -m drdc_trt.train`, what torchrun starts


@main.command()
@click.option("--model", "model_dir", required=True, type=click.Path(), help="Trained checkpoint folder.")
@click.option("--data", "data_root", required=True, type=click.Path(),
              help="The MVTec-layout dataset it was trained on (its held-out normal images are used).")
@click.option("--out", required=True, type=click.Path(), help="Folder for the re-calibrated checkpoint.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="An inference setting, e.g. diffusion.margin=8, fusion.heat_norm=image_std, "
                   "fusion.select=synthetic for DRDC, glad.tau_rule=quantile for GLAD (training settings are "
                   "refused).")
@click.option("--categories", help="Comma-separated categories (default: all found).")
@click.option("--device", default="cpu", show_default=True, help="Torch device (cpu, cuda).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def calibrate(model_dir, data_root, out, sets, categories, device, quiet):
    """Change inference settings of a trained model without retraining: measure its calibration
    again on the held-out normal images (DRDC: the fusion statistics, and λ with
    fusion.select=synthetic; GLAD: τ and the thresholds)."""
    from . import methods
    from .checkpoint import CheckpointError, load_config
    from .data import DatasetError

    try:
        spec = methods.get(load_config(model_dir).method, f"{model_dir}/config.json")
        if not spec.has("recalibrate"):
            raise ValueError(f"{model_dir}: a {spec.title} model has no re-calibration of inference settings; "
                             f"the methods that have one: {[s.name for s in methods.specs() if s.has('recalibrate')]}")
        spec.entry("recalibrate")(model_dir, data_root, out, _parse_sets(sets), _categories(categories), progress=not quiet,
                    log=click.echo, device=device)
    except (CheckpointError, DatasetError, KeyError, ValueError) as e:
        _fail(e)


_BACKENDS = ("auto", "torch", "torch-compiled", "onnxruntime", "openvino", "tensorrt")


@main.command()
@click.option("--model", "model_dir", type=click.Path(), help="Checkpoint folder (backends torch, torch-compiled).")
@click.option("--bundle", "bundle_dir", type=click.Path(),
              help="Bundle folder from `drdc export` (backends onnxruntime, openvino, tensorrt; runs without "
                   "PyTorch).")
@click.argument("images", nargs=-1, required=True)
@click.option("--backend", type=click.Choice(_BACKENDS), default=None,
              help="Network engine [default: torch with --model; auto with --bundle: the fastest this machine "
                   "runs the bundle on (TensorRT with a GPU, else OpenVINO int8 where the bundle has int8 networks "
                   "and the CPU has AMX or no native bf16, else OpenVINO bf16 where the CPU has it and the bundle "
                   "passes the bf16 check here, else int8 where the bundle has it, else ONNX Runtime); `drdc info "
                   "--bundle B` says which and why].")
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
@click.option("--precision", type=click.Choice(["f32", "bf16", "int8"]), default=None,
              help="openvino: inference precision [default: f32]; int8 runs the bundle's int8 networks "
                   "(`drdc export --int8`).")
@click.option("--rebuild-plans", is_flag=True,
              help="tensorrt: rebuild plans made for another GPU / TensorRT version from the bundle's ONNX.")
@click.option("--method", type=MethodChoice(), default=None,
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
@click.option("--int8", is_flag=True,
              help="Also write int8 networks for OpenVINO (NNCF post-training quantization, calibrated on the "
                   "loop's inputs for --calib images; each network checked against f32, one that fails stays "
                   "f32). Run them with --backend openvino --precision int8.")
@click.option("--calib", type=click.Path(),
              help="--int8: normal images to calibrate on: the training dataset's root (its train/good "
                   "folders) or a folder of images; never test images.")
@click.option("--calib-images", default=64, show_default=True, type=click.IntRange(min=2),
              help="--int8: images taken from --calib, evenly spaced.")
@click.option("--int8-networks", default="",
              help="--int8: comma-separated networks to quantize [default: the denoisers, the networks with a "
                   "time-step input; a network run once per image such as DRDC's base stays f32: int8 there cost "
                   "8.7 image AUROC on magnetic tiles].")
def export_cmd(model_dir, out, fp16, tensorrt, max_batch, seed, opset, exporter, check_batches, timing_cache,
               int8, calib, calib_images, int8_networks):
    """Export a checkpoint to a bundle: ONNX (+ TensorRT plans, + int8 OpenVINO networks), checked, hashed,
    atomic."""
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
    if int8 and not calib:
        raise click.BadParameter("--int8 needs --calib DATA: the training dataset's root or a folder of normal "
                                 "images (never test images)", param_hint="--calib")
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
    if int8:
        _export_int8(res.path, calib, calib_images, int8_networks)
    plans = f", TensorRT {res.tensorrt['version']} plans for sm{res.tensorrt['compute_capability']}" \
        if res.tensorrt else ""
    plans += " and int8 OpenVINO networks (--backend openvino --precision int8)" if int8 else ""
    click.echo(f"wrote bundle {res.path} (ONNX{plans}); run it with "
               f"`drdc detect --bundle {res.path} --backend {'tensorrt' if res.tensorrt else 'onnxruntime'} IMAGES`")


def _export_int8(bundle_path, calib, count, networks) -> None:
    from .export.bundle import BundleError, load_bundle
    from .export.int8 import Int8Error, add_int8, calibration_images

    try:
        images, _ = calibration_images(calib, load_bundle(bundle_path).image_size, count)
        sec = add_int8(bundle_path, images, str(calib), [n.strip() for n in networks.split(",") if n.strip()],
                       log=click.echo)
    except (Int8Error, BundleError, ValueError, OSError) as e:
        _fail(e)
    for net, why in sec["kept_f32"].items():
        click.echo(f"int8: {net} stays f32: {why}")


def _calibration_seed(model_dir) -> int | None:
    """stats.json's detector_seed (None when the file or the field is missing or unreadable: the
    export itself then names what is wrong)."""
    try:
        seed = json.loads((Path(model_dir) / "stats.json").read_text()).get("detector_seed")
    except (OSError, ValueError, AttributeError):
        return None
    return seed if isinstance(seed, int) and seed >= 0 else None


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
@click.option("--bundle", "bundle_dir", type=click.Path(),
              help="Also say which engine --backend auto would run this bundle on here, and why.")
def info(bundle_dir):
    """What this installation can run: compiled kernels, backends (and a bundle's automatic engine)."""
    from . import build_info
    from .backends import available_backends

    out = {**build_info(), "backends": available_backends()}
    if bundle_dir is not None:
        from .export.bundle import BundleError
        from .runtime import load_bundle
        from .runtime.choice import choose

        try:
            out["auto_backend"] = choose(load_bundle(bundle_dir)).to_dict()
        except (BundleError, ValueError) as e:
            _fail(e)
    click.echo(json.dumps(out, indent=2))


def _register_study() -> None:
    from .cli_study import ablate, evaluate_cmd, seeds

    main.add_command(evaluate_cmd, "eval")
    main.add_command(ablate)
    main.add_command(seeds)


_register_study()


def _register_serving() -> None:
    from .serving.commands import client_cmd, serve_cmd

    main.add_command(serve_cmd)
    main.add_command(client_cmd)


_register_serving()

if __name__ == "__main__":
    main()
