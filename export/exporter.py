"""Checkpoint → bundle: what ``drdc export`` runs.

1. both networks → ONNX (``onnx_export``), checked for TensorRT 10;
2. ONNX Runtime vs PyTorch on realistic inputs (``numerics``), refused above tolerance;
3. the Detector's loop noise for ``seed`` (fill, start, per-step), so that a
   torch-free runtime computes what ``Detector(seed=seed)`` computes;
4. optionally TensorRT plans (``tensorrt_build``), fp16 if asked;
5. manifest + hashes, written atomically (``bundle``).

With ``tensorrt=True`` on a machine without TensorRT (or without a GPU) the ONNX
bundle is still written, complete and valid, and then
:class:`~drdc_trt.export.tensorrt_build.TensorRTUnavailable` is raised saying
that it holds no plans and why.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .bundle import NOISE_FILES, PIXEL_STATS_FILES, BundleWriter, load_bundle, sha256_file
from .numerics import NumericsReport, Tolerance, compare_networks
from .onnx_export import DEFAULT_OPSET, export_base, export_unet
from .tensorrt_build import TensorRTUnavailable, build_plans, import_tensorrt


@dataclass
class ExportResult:
    path: Path
    numerics: NumericsReport | None
    tensorrt: dict | None


def _versions() -> dict:
    import onnx
    import onnxruntime
    import torch

    import drdc_trt

    trt = None
    try:
        trt = str(import_tensorrt().__version__)
    except TensorRTUnavailable:
        pass
    return {"drdc_trt": drdc_trt.__version__, "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "tensorrt": trt}


def engine_fields(max_batch: int, fp16: bool, report, section: dict | None) -> dict:
    """The manifest fields every method's bundle shares: batch limit, precisions, the numerics
    report, versions and the TensorRT section."""
    return {"max_batch": max_batch,
            "precision": {"onnx": "float32", "tensorrt_fp16": bool(fp16 and section is not None)},
            "numerics": report.to_dict() if report else None, "versions": _versions(), "tensorrt": section}


def finish(path: Path, report, section: dict | None, blocker: Exception | None) -> "ExportResult":
    """A committed bundle: loaded once (what was written must load); TensorRTUnavailable when plans
    were asked for and could not be built (the ONNX bundle stays)."""
    load_bundle(path)
    if blocker is not None:
        raise TensorRTUnavailable(f"wrote the ONNX bundle {path} without TensorRT plans: {blocker}")
    return ExportResult(path=path, numerics=report, tensorrt=section)


def _tensorrt_blocker() -> Exception | None:
    """Why plans cannot be built here (None: they can)."""
    from drdc_trt.backends.cuda_util import CudaUnavailable, device_info

    try:
        import_tensorrt()
        device_info(0)
    except (TensorRTUnavailable, CudaUnavailable) as e:
        return e
    return None


def export_bundle(model, out: str | Path, fp16: bool = False, tensorrt: bool = False, max_batch: int = 8,
                  seed: int = 0, opset: int = DEFAULT_OPSET, exporter: str = "torchscript",
                  check_batches: Sequence[int] = (1, 2), tolerance: Tolerance = Tolerance(),
                  timing_cache: str | Path | None = None,
                  log: Callable[[str], None] = lambda s: None) -> ExportResult:
    """Export ``model`` (a DRDCModel, or a checkpoint folder) to the bundle folder ``out``.

    ``max_batch``: images per call the TensorRT profiles allow (the U-Net profile covers
    max_batch × rows-per-image rows). ``check_batches``: image batch sizes of the
    numerics check (empty: skip it). ``seed``: the Detector seed whose masks and noise
    the bundle carries.
    """
    from drdc_trt.diffusion import ddim_timesteps
    from drdc_trt.pipeline import Detector

    source = {"checkpoint": None, "weights_sha256": None}
    if isinstance(model, (str, Path)):
        from drdc_trt.checkpoint import WEIGHTS, load_checkpoint

        source = {"checkpoint": str(Path(model).absolute()), "weights_sha256": sha256_file(Path(model) / WEIGHTS)}
        model = load_checkpoint(model)
    model = model.float().eval().cpu()
    cfg = model.cfg
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    blocker = _tensorrt_blocker() if tensorrt else None
    if fp16 and not tensorrt:
        log("note: --fp16 applies to TensorRT plans; without --tensorrt the bundle holds float32 ONNX only")
    if cfg.method == "diffusionad":  # U-Net + segmentation net: export.diffusionad
        from .diffusionad import export_diffusionad_bundle

        return export_diffusionad_bundle(model, out, fp16, tensorrt, max_batch, seed, opset, exporter, check_batches,
                                         tolerance, timing_cache, source, blocker, log)
    if cfg.method == "glad":  # U-Net + backbone stages: export.glad
        from .glad import export_glad_bundle

        return export_glad_bundle(model, out, fp16, tensorrt, max_batch, seed, opset, exporter, check_batches,
                                  tolerance, timing_cache, source, blocker, log)

    with BundleWriter(out) as w:
        log("exporting base model to ONNX")
        base_info = export_base(model, w.path("base.onnx"), opset, exporter)
        log("exporting U-Net to ONNX")
        unet_info = export_unet(model, w.path("unet.onnx"), opset, exporter)
        report = None
        if check_batches:
            log(f"checking ONNX Runtime against PyTorch at batch sizes {list(check_batches)}")
            report = compare_networks(model, w.path("base.onnx"), w.path("unet.onnx"), check_batches,
                                      tolerance=tolerance, seed=seed)
            log(report.text())
        det = Detector(cfg, None, model.stats, "cpu", seed=seed)
        arrays = {"fill": det.noise.fill, "start": det.noise.start, "steps": det.noise.steps}
        noise = {}
        for key, t in arrays.items():
            a = t.cpu().numpy().astype(np.float32)
            w.save_array(NOISE_FILES[key], a)
            noise[key] = {"file": NOISE_FILES[key], "shape": list(a.shape), "dtype": "float32"}
        pixel_stats = None
        if model.stats.pixel is not None:  # fusion.diff_norm = "pixel"
            pixel_stats = {}
            for key, t in (("mean", model.stats.pixel.mean), ("std", model.stats.pixel.std)):
                a = t.cpu().numpy().astype(np.float32)
                w.save_array(PIXEL_STATS_FILES[key], a)
                pixel_stats[key] = {"file": PIXEL_STATS_FILES[key], "shape": list(a.shape), "dtype": "float32"}
        section = None
        if tensorrt and blocker is None:
            log(f"building TensorRT plans ({'fp16' if fp16 else 'fp32'}, max batch {max_batch})")
            section = build_plans({"base": w.path("base.onnx"), "unet": w.path("unet.onnx")}, w.staging,
                                  cfg.to_dict(), cfg.rows_per_image, max_batch, fp16, timing_cache)
        st = model.stats
        d, f = cfg.diffusion, cfg.fusion
        manifest = {
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "source": source,
            "config": cfg.to_dict(),
            "image": {"size": cfg.image_size, "layout": "NCHW", "channels": "RGB", "dtype": "float32",
                      "value_range": [-1.0, 1.0],
                      "note": "pixel/127.5 - 1; the backbone's ImageNet normalisation is inside base.onnx"},
            "networks": {
                "base": {"onnx": "base.onnx", "opset": base_info.opset, "exporter": exporter, "ops": base_info.ops,
                         "inputs": base_info.inputs, "outputs": base_info.outputs},
                "unet": {"onnx": "unet.onnx", "opset": unet_info.opset, "exporter": exporter, "ops": unet_info.ops,
                         "inputs": unet_info.inputs, "outputs": unet_info.outputs},
            },
            "rows_per_image": cfg.rows_per_image,
            "row_layout": "row n = (b·J + j)·K + k; row (j, k) treats set k of grid spec j as unknown",
            "label_seed": seed,
            "timesteps": ddim_timesteps(d.t0, d.num_steps),
            "noise": noise,
            "noise_source": f"drdc_trt.pipeline.Detector(seed={seed}).noise (torch.Generator().manual_seed"
                            f"({seed}): randn fill, start, steps); rows of image b are tiled b-major",
            "normalization": list(st.as_tuple()),
            "fusion_stats": {k: v for k, v in vars(st).items() if k != "pixel"},
            "pixel_stats": pixel_stats,
            "fusion": {"pool_factors": list(f.pool_factors), "mean_filter": f.mean_filter, "lam": f.lam,
                       "score_window": cfg.score_window, "score_window_at_224": f.score_window_at_224},
            **engine_fields(max_batch, fp16, report, section),
        }
        path = w.commit(manifest)
    return finish(path, report, section, blocker)

