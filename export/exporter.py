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

from pathlib import Path
from typing import Callable, Sequence


from .bundle import sha256_file
from .numerics import NumericsReport, Tolerance
from .onnx_export import DEFAULT_OPSET, export_base, export_unet
from .results import ExportResult, engine_fields, finish, tensorrt_blocker  # noqa: F401  (re-exported)


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
    blocker = tensorrt_blocker() if tensorrt else None
    if fp16 and not tensorrt:
        log("note: --fp16 applies to TensorRT plans; without --tensorrt the bundle holds float32 ONNX only")
    spec = methods.get(cfg.method, "config")
    return spec.entry("export")(model, out, fp16, tensorrt, max_batch, seed, opset, exporter, check_batches,
                                tolerance, timing_cache, source, blocker, log)
