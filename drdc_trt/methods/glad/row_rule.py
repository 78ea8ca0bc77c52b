"""GLAD's per-row rule of one adaptive step, in plain PyTorch: the row codes, the decision
(trigger, fall back, go on), the SAFF blend and the DDIM step of a row. The reference of the fused
ops (glad/ops.py) and the adaptive loop (glad/adaptive.py) both use it."""

from __future__ import annotations

import torch

# Row decisions of one step (RowState.trigger_kind): the codes of the per-row rule.
NONE, TRIGGERED, FALLBACK = 0, 1, 2
# What a row that falls back does (glad.fallback): "continue" (the authors' scheduler: x̂0 = x0_in
# at that step, then plain DDIM to t = 0, like a triggered row) or "stop" (the row is done, its
# reconstruction x0_in).
FALLBACKS = ("continue", "stop")


def check_fallback(fallback: str) -> bool:
    """True when a fallen-back row stops; refuses an unknown rule."""
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback {fallback!r}: choose one of {FALLBACKS}")
    return fallback == "stop"


def looking(done: torch.Tensor, triggered: torch.Tensor, kind: torch.Tensor) -> torch.Tensor:
    """Rows still looking for their step: not done, neither triggered nor fallen back."""
    return ~done & ~triggered & (kind != FALLBACK)


def rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A B-vector of row flags shaped to broadcast over ``like`` (B×…)."""
    return mask.view(-1, *([1] * (like.dim() - 1)))


def saff_blend(x0_gen: torch.Tensor, x0_in: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x0 = w⊙x0_gen + (1 − w)⊙x0_in."""
    return w * x0_gen + (1 - w) * x0_in


def decide(score: torch.Tensor, checking: torch.Tensor, tau: float, t: int, min_step: int
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(trigger, fallback) row masks of one step: a checking row triggers when its score exceeds τ,
    else falls back once t < min_step."""
    trig = checking & (score > tau)
    fall = checking & ~trig & (t < min_step)
    return trig, fall


def ddim_next(x0: torch.Tensor, eps: torch.Tensor, ab_next: float) -> torch.Tensor:
    """DDIM (η = 0): √ᾱ'·x0 + √(1 − ᾱ')·ε̂; ᾱ' = 1 (past the last step) gives x0."""
    if ab_next >= 1.0:
        return x0
    return ab_next ** 0.5 * x0 + (1 - ab_next) ** 0.5 * eps
