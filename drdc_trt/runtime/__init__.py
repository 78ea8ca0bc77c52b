"""The deploy runtime: load a bundle and run the whole pipeline without PyTorch.

Needs numpy, an engine (onnxruntime, or tensorrt + cuda-python) and optionally
the compiled ``drdc_trt._C`` kernels; nothing on this path imports torch::

    from drdc_trt.runtime import BundleDetector
    det = BundleDetector("bundle/", backend="onnxruntime")
    res = det.predict(images)   # B×3×S×S float32 in [-1, 1] → Result (numpy)

A DiffusionAD bundle (manifest method "diffusionad") runs on ``DiffusionADBundleDetector``, a
GLAD bundle ("glad") on ``GLADBundleDetector``; :func:`load_detector` picks the one the manifest
names.

From a shell: ``python -m drdc_trt.runtime BUNDLE IMAGES.npy --out RESULTS.npz``.
"""

from __future__ import annotations

from pathlib import Path

from drdc_trt.export.bundle import Bundle, BundleError, load_bundle

from .detector import RUNTIME_BACKENDS, BundleDetector, Result
from .diffusionad import DiffusionADBundleDetector, DiffusionADResult
from .glad import GLADBundleDetector, GLADResult


def load_detector(bundle: Bundle | str | Path, backend: str = "onnxruntime", kernels: str = "auto",
                  verify: bool = True, **kwargs):
    """The detector of a bundle's method: BundleDetector (DRDC), DiffusionADBundleDetector or
    GLADBundleDetector."""
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, verify=verify)
    cls = {"diffusionad": DiffusionADBundleDetector, "glad": GLADBundleDetector}.get(bundle.method, BundleDetector)
    return cls(bundle, backend=backend, kernels=kernels, **kwargs)


__all__ = ["RUNTIME_BACKENDS", "Bundle", "BundleDetector", "BundleError", "DiffusionADBundleDetector",
           "DiffusionADResult", "GLADBundleDetector", "GLADResult", "Result", "load_bundle", "load_detector"]
