"""What every method's fused ops share: the dispatch between a ``reference_*`` function in plain
PyTorch (``impl="torch"``, the definition) and the compiled kernel of ``drdc_trt._C``
(``impl="csrc"``), the operand checks done before a kernel call, and the map ops several methods
use (mean filter, bilinear up-sampling, windowed image score).

A method's own ops live in its folder (``drdc_trt/methods/<name>/ops.py``), one entry per op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IMPLS = ("torch", "csrc")


def mean_filter(maps: torch.Tensor, size: int) -> torch.Tensor:
    """size×size mean over the valid neighbours (border pixels average fewer values)."""
    if size <= 1:
        return maps
    return F.avg_pool2d(maps.unsqueeze(1), size, stride=1, padding=size // 2,
                        count_include_pad=False).squeeze(1)


def upsample_base(base: torch.Tensor, size: int) -> torch.Tensor:
    """B×h×w → B×S×S, bilinear, align_corners=False."""
    return F.interpolate(base.unsqueeze(1), size=(size, size), mode="bilinear",
                         align_corners=False).squeeze(1)


def image_score(maps: torch.Tensor, window: int) -> torch.Tensor:
    """Max of the window×window average-pooled map (stride 1, no padding), per image."""
    return F.avg_pool2d(maps.unsqueeze(1), window, stride=1).amax(dim=(1, 2, 3))


# --------------------------------------------------------------------------- dispatch
def check_tensor(name: str, t: torch.Tensor, shape: tuple, dtypes: tuple, device: torch.device) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in dtypes:
        raise TypeError(f"{name}: dtype {t.dtype} not in {[str(d) for d in dtypes]}")
    if t.device != device:
        raise ValueError(f"{name}: on {t.device}, expected {device} (all operands on one device)")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name}: shape {tuple(t.shape)}, expected {tuple(shape)}")
    if not t.is_contiguous():
        raise ValueError(f"{name}: must be contiguous (call .contiguous())")


def compiled():
    from . import _C  # noqa: PLC0415

    if not hasattr(_C, "prepare"):
        raise RuntimeError("drdc_trt._C was built without the fused kernels")
    return _C


def compiled_with(op: str):
    """``_C``, refusing by name a build that predates the kernel ``op``."""
    C = compiled()
    if not hasattr(C, op):
        raise RuntimeError(f"drdc_trt._C was built without the {op} kernel; rebuild with `pip install .`")
    return C


def cuda_stream(device: torch.device) -> int:
    return torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0


NET_DTYPES = (torch.float32, torch.float16)


def dtype_name(dtype: torch.dtype) -> str:
    return "float16" if dtype == torch.float16 else "float32"


def require_impl(impl: str) -> None:
    if impl not in IMPLS:
        raise ValueError(f"impl={impl!r}; choose one of {IMPLS}")


def image_shape(x) -> tuple[int, int, int, int]:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
        raise ValueError(f"x: expected B×3×H×W, got {shape}")
    return tuple(x.shape)


