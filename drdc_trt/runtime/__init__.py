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


def load_detector(bundle: Bundle | str | Path, backend: str = "auto", kernels: str = "auto",
                  verify: bool = True, **kwargs):
    """The torch-free detector of a bundle's method (its registered ``runtime``). ``backend="auto"``:
    the engine drdc_trt.runtime.choice picks here (its ``Choice`` is the detector's ``choice``)."""
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, verify=verify)
    cls = methods.get(bundle.method, f"bundle {bundle.path}: manifest.json").entry("runtime")
    choice = None
    if backend == "auto":
        from drdc_trt.runtime.choice import choose

        choice = choose(bundle)
        backend = choice.backend
        if backend == "openvino":
            kwargs.setdefault("precision", choice.precision)
    det = cls(bundle, backend=backend, kernels=kernels, **kwargs)
    det.choice = choice
    return det


__all__ = ["RUNTIME_BACKENDS", "Bundle", "BundleError", "load_bundle", "load_detector"]
