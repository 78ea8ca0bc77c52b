"""GLAD's anomaly-aware training target ("local" adaptation).

With x_n a normal image, x_a the same image with a synthetic anomaly, t the timestep and α = t/T:

    x_s = α·x_a + (1 − α)·x_n                    the anomaly fades in with the noise level
    x_t = √ᾱ_t·x_s + √(1 − ᾱ_t)·ε
    ε*  = ε + √ᾱ_t/√(1 − ᾱ_t)·(x_s − x_n)

so that the x̂0 implied by ε*, (x_t − √(1 − ᾱ_t)·ε*)/√ᾱ_t, is x_n exactly: the network learns a
noise that leads from the anomalous x_t back to the normal image. (Written with (x_n − x_s), as
the issue states it, x̂0 would be 2·x_s − x_n; the sign here is the one that gives x_n.)
"""

from __future__ import annotations

import torch

from drdc_trt.schedule import per_image, predict_x0, q_sample

__all__ = ["anomaly_aware_target", "mixed_source", "predict_x0", "q_sample"]


def mixed_source(x_n: torch.Tensor, x_a: torch.Tensor, t: torch.Tensor, num_train_timesteps: int) -> torch.Tensor:
    """x_s = α·x_a + (1 − α)·x_n, α = t/T per image."""
    alpha = per_image(t.to(x_n.dtype) / num_train_timesteps, x_n)
    return alpha * x_a + (1 - alpha) * x_n


def anomaly_aware_target(x_n: torch.Tensor, x_a: torch.Tensor, t: torch.Tensor, ab: torch.Tensor,
                         noise: torch.Tensor, num_train_timesteps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, ε*) for images x_n, x_a (B×C×H×W), timesteps t (B), ᾱ_t (B) and noise ε."""
    x_s = mixed_source(x_n, x_a, t, num_train_timesteps)
    x_t = q_sample(x_s, ab, noise)
    ab = per_image(ab, x_n)
    return x_t, noise + ab.sqrt() / (1 - ab).sqrt() * (x_s - x_n)
