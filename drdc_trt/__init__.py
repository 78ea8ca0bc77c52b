"""drdc_trt: a compiled inference engine for DRDC (diffusion-refined multi-class anomaly detection).

Importing the package needs no GPU, no CUDA driver and no TensorRT; the heavy
modules (torch models, training) load on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"


def build_info() -> dict:
    """What the compiled core was built with (kernels, CUDA, TensorRT)."""
    try:
        from . import _C
    except ImportError as e:
        return {"compiled_core": False, "error": str(e)}
    return {"compiled_core": True, **dict(_C.build_info)}


__all__ = ["__version__", "build_info"]
