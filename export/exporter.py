"""Checkpoint → bundle: what ``drdc export`` runs. The checkpoint's method exports its own
networks (its registered ``export`` entry, e.g. drdc_trt/methods/drdc/export.py); this module holds
what every method's export shares (versions, engine fields, the TensorRT blocker, the result).

DRDC's, for example:
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
    from drdc_trt import methods  # the registry: each method exports its own networks

    source = {"checkpoint": None, "weights_sha256": None}
    if isinstance(model, (str, Path)):
        from drdc_trt.checkpoint import WEIGHTS
        from drdc_trt.loading import load_checkpoint

        source = {"checkpoint": str(Path(model).absolute()), "weights_sha256": sha256_file(Path(model) / WEIGHTS)}
        model = load_checkpoint(model)
    model = model.float().eval().cpu()
    cfg = model.cfg
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    blocker = _tensorrt_blocker() if tensorrt else None
    if fp16 and not tensorrt:
        log("note: --fp16 applies to TensorRT plans; without --tensorrt the bundle holds float32 ONNX only")
    spec = methods.get(cfg.method, "config")
    return spec.entry("export")(model, out, fp16, tensorrt, max_batch, seed, opset, exporter, check_batches,
                                tolerance, timing_cache, source, blocker, log)
