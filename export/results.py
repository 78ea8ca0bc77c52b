"""What every method's export shares: the result, the manifest's engine fields (batch limit,
precisions, numerics report, versions, TensorRT section), the final load check, and why TensorRT
plans cannot be built here."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bundle import load_bundle
from .numerics import NumericsReport
from .tensorrt_build import TensorRTUnavailable, import_tensorrt


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


def tensorrt_blocker() -> Exception | None:
    """Why plans cannot be built here (None: they can)."""
    from drdc_trt.backends.cuda_util import CudaUnavailable, device_info

    try:
        import_tensorrt()
        device_info(0)
    except (TensorRTUnavailable, CudaUnavailable) as e:
        return e
    return None
