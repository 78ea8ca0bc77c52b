"""Network runners behind one small protocol.

A runner computes the two networks of the method:

* ``base(images B×3×S×S) -> B×h×w``  base heatmap (backbone + transformer)
* ``unet(x N×6×S×S, t N) -> N×3×S×S``  ε̂ of the conditioned U-Net

Two flavours, told apart by the ``io`` attribute:

* ``io = "torch"``: torch tensors in and out, on the runner's device —
  ``torch`` (eager fp32, AMP fp16/bf16 on GPU) and ``torch-compiled`` (CUDA
  graphs and/or torch.compile on GPU; eager on CPU, with a warning). They run a
  checkpoint's model.
* ``io = "numpy"``: numpy arrays in and out, no torch anywhere —
  ``onnxruntime``, ``openvino`` and ``tensorrt``. They run a bundle's engines, and the
  torch-free deploy runtime (``drdc_trt.runtime``) drives them directly. The
  PyTorch Detector uses them through :func:`as_torch_runner`, which converts
  tensors at the boundary.

The Detector and the C++ refiner's Python-callback runner never know which
engine is behind it. This module imports no torch.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    import torch

BACKENDS = ("torch", "torch-compiled", "onnxruntime", "openvino", "tensorrt")
TORCH_BACKENDS = ("torch", "torch-compiled")
ENGINE_BACKENDS = ("onnxruntime", "openvino", "tensorrt")


class Runner(Protocol):
    name: str
    io: str  # "torch" or "numpy"

    def base(self, images: Any) -> Any: ...

    def unet(self, x: Any, t: Any) -> Any: ...


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def available_backends() -> list[str]:
    """Backends whose Python packages are installed (a GPU may still be needed to run them)."""
    out = []
    if _has("torch"):
        out += ["torch", "torch-compiled"]
    if _has("onnxruntime"):
        out.append("onnxruntime")
    if _has("openvino"):
        out.append("openvino")
    if _has("tensorrt"):
        out.append("tensorrt")
    return out


def make_runner(name: str, model=None, bundle=None, **kwargs) -> Runner:
    """A runner by backend name: ``torch`` / ``torch-compiled`` need ``model`` (a DRDCModel),
    ``onnxruntime`` / ``openvino`` / ``tensorrt`` need ``bundle`` (a path or a loaded Bundle)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {list(BACKENDS)} "
                         f"(installed: {available_backends()})")
    if name in TORCH_BACKENDS:
        if model is None:
            raise ValueError(f"the {name} backend runs a checkpoint's model (--model CKPT); "
                             "a bundle holds ONNX/TensorRT engines: use --backend onnxruntime, openvino or tensorrt")
        if name == "torch":
            from .torch_backend import TorchRunner

            return TorchRunner(model, **kwargs)
        from .torch_compiled import TorchCompiledRunner

        return TorchCompiledRunner(model, **kwargs)
    if bundle is None:
        raise ValueError(f"the {name} backend runs a bundle's engines (--bundle B, written by `drdc export`)")
    from drdc_trt.export.bundle import Bundle, load_bundle

    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    if name == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeRunner

        return OnnxRuntimeRunner(bundle, **kwargs)
    if name == "openvino":
        from .openvino_backend import OpenVINORunner

        return OpenVINORunner(bundle, **kwargs)
    from .tensorrt_backend import TensorRTRunner

    return TensorRTRunner(bundle, **kwargs)


def as_torch_runner(runner: Runner, device: "str | torch.device" = "cpu") -> Runner:
    """A torch-tensor view of any runner (numpy runners are wrapped, torch ones returned as is)."""
    if getattr(runner, "io", "torch") == "torch":
        return runner
    from .adapter import TorchTensorRunner

    return TorchTensorRunner(runner, device)
