"""Norm-guided one-step denoising (DiffusionAD, Eq. 10-13), as plain torch functions.

With ᾱ_a = ᾱ_{t_a}, ᾱ_b = ᾱ_{t_b} and the U-Net's ε-predictions e_a = U(x_a, t_a), e_b = U(x_b, t_b):

    x0_b  = clamp(x̂0(x_b, e_b))                       one-step estimate from the noisier scale
    x̃_a   = √ᾱ_a·x0_b + √(1 − ᾱ_a)·e_a               x0_b taken back to t_a with e_a
    ê     = e_a − w·√(1 − ᾱ_a)·(x̃_a − x_a)            the guided noise
    x0_g  = clamp(x̂0(x_a, ê))

where x̂0(x_t, ε) = (x_t − √(1 − ᾱ)·ε)/√ᾱ. Without the clamps this is the blend
x0_g = (1 − λ)·x̂0(x_a, e_a) + λ·x0_b, λ = w·(1 − ᾱ_a) (closed_form below). ᾱ may be a float
or one value per image (training draws a timestep per sample).
"""

from __future__ import annotations

import torch

from drdc_trt.schedule import per_image, predict_x0, q_sample  # noqa: F401  (the method's names for them)


def guided_noise(x_a: torch.Tensor, e_a: torch.Tensor, x0_b: torch.Tensor, ab_a, w: float) -> torch.Tensor:
    """ê = e_a − w·√(1 − ᾱ_a)·(x̃_a − x_a), x̃_a = √ᾱ_a·x0_b + √(1 − ᾱ_a)·e_a."""
    x_a_tilde = q_sample(x0_b, ab_a, e_a)
    return e_a - w * (1 - per_image(ab_a, x_a)).sqrt() * (x_a_tilde - x_a)


def norm_guided_x0(x_a: torch.Tensor, e_a: torch.Tensor, x_b: torch.Tensor, e_b: torch.Tensor, ab_a, ab_b,
                   w: float = 1.0, clamp: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0_g, x0_b): the norm-guided reconstruction and the noisier scale's one-step estimate
    (both clamped to [−1, 1] unless ``clamp=False``)."""
    x0_b = predict_x0(x_b, ab_b, e_b)
    if clamp:
        x0_b = x0_b.clamp(-1, 1)
    x0_g = predict_x0(x_a, ab_a, guided_noise(x_a, e_a, x0_b, ab_a, w))
    return (x0_g.clamp(-1, 1) if clamp else x0_g), x0_b


def guidance_weight(ab_a, w: float = 1.0):
    """λ = w·(1 − ᾱ_a): the weight of x0_b in the unclamped x0_g."""
    return w * (1 - ab_a)


def closed_form(x0_a: torch.Tensor, x0_b: torch.Tensor, ab_a, w: float = 1.0) -> torch.Tensor:
    """(1 − λ)·x0_a + λ·x0_b, λ = w·(1 − ᾱ_a): x0_g without its clamps (x0_a = x̂0(x_a, e_a))."""
    lam = per_image(guidance_weight(torch.as_tensor(ab_a, dtype=torch.float64), w), x0_a)
    return (1 - lam) * x0_a + lam * x0_b
