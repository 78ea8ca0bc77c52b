"""DiffusionAD's segmentation loss: focal_weight·Focal + smooth_l1_weight·SmoothL1 against the mask."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def focal_loss(p: torch.Tensor, y: torch.Tensor, alpha: float = 0.5, gamma: float = 4.0) -> torch.Tensor:
    """Mean of α·(1 − p_t)^γ·BCE(p, y), p_t = exp(−BCE) (the probability given to the true class),
    the binary focal loss of DRAEM and DiffusionAD: one α for both classes. ``p`` are
    probabilities (the sigmoid output), ``y`` the {0, 1} mask."""
    bce = F.binary_cross_entropy(p, y, reduction="none")
    pt = torch.exp(-bce)
    return (alpha * (1 - pt) ** gamma * bce).mean()


def smooth_l1(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """torch's SmoothL1 (β = 1, mean); |p − y| ≤ 1 here, so it is 0.5·(p − y)² throughout."""
    return F.smooth_l1_loss(p, y)


def segmentation_loss(p: torch.Tensor, y: torch.Tensor, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """(focal, smooth L1) of a DiffusionADConfig; the loss is focal_weight·focal + smooth_l1_weight·smooth L1."""
    return focal_loss(p, y, cfg.focal_alpha, cfg.focal_gamma), smooth_l1(p, y)
