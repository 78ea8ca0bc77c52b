"""The deploy runtime: load a bundle and run the whole pipeline without PyTorch.

Needs numpy, an engine (onnxruntime, openvino, or tensorrt + cuda-python) and optionally the
compiled ``drdc_trt._C`` kernels; nothing on this path imports torch::

    from drdc_trt.runtime import load_detector
    det = load_detector("bundle/", backend="onnxruntime")
    res = det.predict(images)   # B×3×S×S float32 in [-1, 1] → the method's Result (numpy)

:func:`load_detector` picks the detector the manifest's method registers (``runtime``).
From a shell: ``python -m drdc_trt.runtime BUNDLE IMAGES.npy --out RESULTS.npz``.
"""

from __future__ import annotations

from pathlib import Path

from drdc_trt import methods
from drdc_trt.export.bundle import Bundle, BundleError, load_bundle

RUNTIME_BACKENDS = ("onnxruntime", "openvino", "tensorrt")


def load_detector(bundle: Bundle | str | Path, backend: str = "onnxruntime", kernels: str = "auto",
                  verify: bool = True, **kwargs):
    """The torch-free detector of a bundle's method (its registered ``runtime``)."""
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, verify=verify)
    cls = methods.get(bundle.method, f"bundle {bundle.path}: manifest.json").entry("runtime")
    return cls(bundle, backend=backend, kernels=kernels, **kwargs)


__all__ = ["RUNTIME_BACKENDS", "Bundle", "BundleError", "load_bundle", "load_detector"]
