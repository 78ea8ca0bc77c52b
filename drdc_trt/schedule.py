"""Linear β schedule (DDPM) and the equally spaced DDIM timesteps of the test-time loop."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Schedule:
    """ᾱ_t = Π_{s≤t} (1 − β_s) for t = 0..T−1, computed in float64."""

    alphas_cumprod: np.ndarray

    @classmethod
    def linear(cls, num_train_timesteps: int = 1000, beta_start: float = 1e-4,
               beta_end: float = 0.02) -> "Schedule":
        betas = np.linspace(beta_start, beta_end, num_train_timesteps, dtype=np.float64)
        return cls(np.cumprod(1.0 - betas))

    @classmethod
    def from_config(cls, diffusion_cfg) -> "Schedule":
        return cls.linear(diffusion_cfg.num_train_timesteps, diffusion_cfg.beta_start,
                          diffusion_cfg.beta_end)

    @property
    def num_train_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    def alpha_bar(self, t: int) -> float:
        """ᾱ_t; t = −1 stands for the clean end of the chain (ᾱ = 1, as DDIM's final step)."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    def coefficients(self, t: int) -> tuple[float, float]:
        """(√ᾱ_t, √(1 − ᾱ_t))."""
        ab = self.alpha_bar(t)
        return float(np.sqrt(ab)), float(np.sqrt(1.0 - ab))


def min_snr_weight(alpha_bar: np.ndarray, gamma: float) -> np.ndarray:
    """Per-timestep loss weight of "min-SNR-γ" (Hang et al., ICCV 2023) for a loss in ε-space:
    w = min(SNR, γ) / SNR with SNR = ᾱ / (1 − ᾱ); γ = 0 turns the weighting off (w = 1).

    An ε-space error is the x̂0 error scaled by SNR, so unweighted ε-training weights each
    timestep's reconstruction by its SNR — unbounded at small t. With the "aligned" target the
    unknown cells carry no signal at any t, and the few samples with t < 10 hold ~90 % of the
    loss (measured on the CPU recipe), starving the timesteps the test-time loop visits.
    """
    alpha_bar = np.asarray(alpha_bar, dtype=np.float64)
    if gamma <= 0:
        return np.ones_like(alpha_bar)
    snr = alpha_bar / (1.0 - alpha_bar)
    return np.minimum(snr, gamma) / snr


def ddim_timesteps(t0: int, num_steps: int) -> list[int]:
    """``num_steps`` equally spaced timesteps from t0 down: t_i = ⌊t0·(num_steps − i)/num_steps⌋
    (t0, t0−Δ, …, Δ when num_steps divides t0). Integer arithmetic, so the C++ core
    computes the same list. The step after the last one goes to the clean image
    (t = −1, ᾱ = 1).
    """
    if not 1 <= num_steps <= t0:
        raise ValueError(f"num_steps={num_steps} must lie in [1, t0={t0}]")
    return [(t0 * (num_steps - i)) // num_steps for i in range(num_steps)]


def per_image(ab, x: torch.Tensor) -> torch.Tensor:
    ab = torch.as_tensor(ab, dtype=x.dtype, device=x.device)
    return ab.view(-1, *([1] * (x.dim() - 1))) if ab.dim() == 1 else ab


def q_sample(x0: torch.Tensor, ab, noise: torch.Tensor) -> torch.Tensor:
    """x_t = √ᾱ·x0 + √(1 − ᾱ)·ε."""
    ab = per_image(ab, x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def predict_x0(x_t: torch.Tensor, ab, eps: torch.Tensor) -> torch.Tensor:
    """x̂0 = (x_t − √(1 − ᾱ)·ε)/√ᾱ."""
    ab = per_image(ab, x_t)
    return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
