"""The deploy runtime: load a bundle and run the whole pipeline without PyTorch.

Needs numpy, an engine (onnxruntime, or tensorrt + cuda-python) and optionally
the compiled ``drdc_trt._C`` kernels; nothing on this path imports torch::

    from drdc_trt.runtime import BundleDetector
    det = BundleDetector("bundle/", backend="onnxruntime")
    res = det.predict(images)   # B×3×S×S float32 in [-1, 1] → Result (numpy)

From a shell: ``python -m drdc_trt.runtime BUNDLE IMAGES.npy --out RESULTS.npz``.
"""

from __future__ import annotations

from drdc_trt.export.bundle import Bundle, BundleError, load_bundle

from .detector import RUNTIME_BACKENDS, BundleDetector, Result

__all__ = ["RUNTIME_BACKENDS", "Bundle", "BundleDetector", "BundleError", "Result", "load_bundle"]
