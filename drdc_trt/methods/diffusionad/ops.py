"""DiffusionAD's fused op: the norm-guided one-step combination (``norm_guided``), defined by
``reference_norm_guided`` in plain PyTorch and dispatched to ``drdc_trt._C.norm_guided``
(``impl="csrc"``) after the operand checks of ``drdc_trt.ops``."""

from __future__ import annotations


import torch

from drdc_trt.ops import check_tensor, compiled, cuda_stream, require_impl


def reference_norm_guided(x_a: torch.Tensor, e_a: torch.Tensor, x_b: torch.Tensor, e_b: torch.Tensor,
                          ab_a, ab_b, w: float = 1.0, clamp: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """DiffusionAD's norm-guided one-step combination: (x0_g, x0_b), its definition
    ``drdc_trt.methods.diffusionad.norm_guided.norm_guided_x0`` (ᾱ_a, ᾱ_b floats or one per image)."""
    from drdc_trt.methods.diffusionad.norm_guided import norm_guided_x0

    return norm_guided_x0(x_a, e_a, x_b, e_b, ab_a, ab_b, w, clamp)


def norm_guided(x_a, e_a, x_b, e_b, ab_a: float, ab_b: float, w: float = 1.0, clamp: bool = True,
                impl: str = "torch"):
    """Dispatching ``norm_guided``; see :func:`reference_norm_guided`. Returns (x0_g, x0_b).
    The csrc kernel takes float32 operands of one shape and ᾱ_a, ᾱ_b as numbers in (0, 1]."""
    if impl == "torch":
        return reference_norm_guided(x_a, e_a, x_b, e_b, ab_a, ab_b, w, clamp)
    require_impl(impl)
    if not isinstance(x_a, torch.Tensor):
        raise TypeError(f"x_a: expected a torch.Tensor, got {type(x_a).__name__}")
    dev, shape = x_a.device, tuple(x_a.shape)
    for name, t in (("x_a", x_a), ("e_a", e_a), ("x_b", x_b), ("e_b", e_b)):
        check_tensor(name, t, shape, (torch.float32,), dev)
    if x_a.numel() < 1:
        raise ValueError(f"x_a: empty tensor of shape {shape}")
    for name, v in (("ab_a", ab_a), ("ab_b", ab_b), ("w", w)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{name}: expected a number, got {type(v).__name__} (the csrc kernel takes one "
                            "alpha-bar for the whole batch)")
    x0_g, x0_b = torch.empty_like(x_a), torch.empty_like(x_a)
    compiled().norm_guided(device=dev.type, stream=cuda_stream(dev), x_a=x_a.data_ptr(), e_a=e_a.data_ptr(),
                        x_b=x_b.data_ptr(), e_b=e_b.data_ptr(), x0_g=x0_g.data_ptr(), x0_b=x0_b.data_ptr(),
                        count=x_a.numel(), ab_a=float(ab_a), ab_b=float(ab_b), w=float(w), clamp=bool(clamp))
    return x0_g, x0_b
