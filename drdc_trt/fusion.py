"""Spatio-temporal fusion and scoring (DESIGN §1.4), with the normalisation
statistics measured on normal training images and stored with the model.

The per-pixel math is ``ops.reference_fuse`` (the definition the fused kernel is
checked against); this module holds what surrounds it: the statistics, how they
are measured, and the thresholds that turn scores into labels and masks.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields

import torch

from . import ops


@dataclass
class FusionStats:
    """Normalisation of the two heatmaps and the decision thresholds.

    ``diff_*`` and ``base_*`` are the mean and standard deviation of the diffusion
    and (up-sampled) base maps over all pixels of the calibration images;
    ``image_threshold`` is the largest image score and ``pixel_threshold`` the
    99.9th percentile of final-map pixels on those normal images.
    """

    diff_mean: float = 0.0
    diff_std: float = 1.0
    base_mean: float = 0.0
    base_std: float = 1.0
    image_threshold: float = math.inf
    pixel_threshold: float = math.inf
    base_image_threshold: float = math.inf
    num_images: int = 0

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.diff_mean, self.diff_std, self.base_mean, self.base_std)

    def to_json(self) -> str:
        return json.dumps({k: (None if isinstance(v, float) and math.isinf(v) else v)
                           for k, v in asdict(self).items()}, indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "FusionStats":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"stats: unknown field(s) {sorted(unknown)}")
        return cls(**{k: (math.inf if v is None else v) for k, v in d.items()})


def _std(t: torch.Tensor) -> float:
    return max(float(t.double().std()), 1e-8)


def measure_stats(diff_maps: torch.Tensor, base_maps: torch.Tensor, lam: float,
                  score_window: int) -> FusionStats:
    """Statistics from the raw maps (B×S×S each) of normal calibration images."""
    stats = FusionStats(
        diff_mean=float(diff_maps.double().mean()), diff_std=_std(diff_maps),
        base_mean=float(base_maps.double().mean()), base_std=_std(base_maps),
        num_images=int(diff_maps.shape[0]),
    )
    final = normalised_blend(diff_maps, base_maps, stats, lam)
    stats.image_threshold = float(ops.image_score(final, score_window).max())
    stats.pixel_threshold = float(torch.quantile(final.flatten()[:: max(1, final.numel() // 1_000_000)].float(), 0.999))
    base_norm = (base_maps - stats.base_mean) / stats.base_std
    stats.base_image_threshold = float(ops.image_score(base_norm, score_window).max())
    return stats


def normalised_blend(diff_map: torch.Tensor, base_map: torch.Tensor, stats: FusionStats,
                     lam: float) -> torch.Tensor:
    """λ·(H_diff − μ)/σ + (1 − λ)·(H_base − μ)/σ on already filtered / up-sampled maps."""
    mu_d, sd_d, mu_b, sd_b = stats.as_tuple()
    return lam * (diff_map - mu_d) / sd_d + (1.0 - lam) * (base_map - mu_b) / sd_b
