"""Linear β schedule and DDIM timesteps without torch (same math as
``drdc_trt.schedule``, whose package imports torch)."""

from __future__ import annotations

import numpy as np


def alphas_cumprod(num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """ᾱ_t = Π_{s≤t} (1 − β_s), float64."""
    betas = np.linspace(beta_start, beta_end, num_train_timesteps, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def coefficients(ab: np.ndarray, t: int) -> tuple[float, float]:
    """(√ᾱ_t, √(1 − ᾱ_t)); t = −1 is the clean end of the chain (ᾱ = 1)."""
    a = 1.0 if t < 0 else float(ab[t])
    return float(np.sqrt(a)), float(np.sqrt(1.0 - a))


def ddim_timesteps(t0: int, num_steps: int) -> list[int]:
    """t_i = ⌊t0·(num_steps − i)/num_steps⌋, i = 0..num_steps−1."""
    if not 1 <= num_steps <= t0:
        raise ValueError(f"num_steps={num_steps} must lie in [1, t0={t0}]")
    return [(t0 * (num_steps - i)) // num_steps for i in range(num_steps)]


# --------------------------------------------------------------------------- the combination
def f32_coefficients(ab) -> tuple[np.float32, np.float32]:
    """(√ᾱ, √(1 − ᾱ)) in float32, formed as the PyTorch reference forms them from float32 ᾱ."""
    ab = np.float32(ab)
    return np.sqrt(ab), np.sqrt(np.float32(1) - ab)


def q_sample(x: np.ndarray, ab, noise: np.ndarray) -> np.ndarray:
    """√ᾱ·x + √(1 − ᾱ)·ε in float32 (norm_guided.q_sample)."""
    s, sm = f32_coefficients(ab)
    return s * x + sm * noise
