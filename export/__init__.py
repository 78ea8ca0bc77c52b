"""The export stage (installed as ``drdc_trt.export``): ONNX export and checks,
ONNX Runtime numerics, TensorRT plan build, and the bundle format.

Modules, one concept each:

* ``onnx_export``     base model and U-Net → ONNX, opset/allowlist checks for TensorRT 10
* ``numerics``        ONNX Runtime vs PyTorch on realistic inputs, with a stated tolerance
* ``tensorrt_build``  ONNX → TensorRT 10 plans (importable without TensorRT)
* ``bundle``          the bundle folder: atomic writer, verifying loader (no torch)
* ``exporter``        checkpoint → bundle (what ``drdc export`` runs)

Importing this package imports no torch: the deploy runtime loads bundles
through ``drdc_trt.export.bundle``.
"""

from __future__ import annotations

__all__ = ["export_bundle"]


def __getattr__(name: str):
    if name == "export_bundle":
        from .exporter import export_bundle

        return export_bundle
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
