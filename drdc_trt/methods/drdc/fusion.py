"""Spatio-temporal fusion and scoring (docs/design.md, "DRDC's hot loop"), with the normalisation
statistics measured on normal training images and stored with the model.

The per-pixel math is ``ops.reference_fuse`` (the definition the fused kernel is
checked against); this module holds what surrounds it: the statistics, how they
are measured, and the thresholds that turn scores into labels and masks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields

import torch

from drdc_trt.methods.drdc import ops
from drdc_trt.models.thresholds import pixel_threshold  # noqa: F401  (every method's pixel threshold)


@dataclass
class PixelStats:
    """Per-pixel mean and standard deviation (S×S) of the per-step mean heat of the calibration
    images (``fusion.diff_norm = "pixel"``); the variance is averaged over a window of one grid
    cell (``window``) so that a few dozen images give a usable estimate."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def measure(cls, heat_means: torch.Tensor, window: int) -> "PixelStats":
        """From B×S×S per-step mean heats (heat / count) of normal images."""
        h = heat_means.double()
        mean = ops.mean_filter(h.mean(0, keepdim=True), window)[0]
        var = ops.mean_filter(h.var(0, keepdim=True, unbiased=h.shape[0] > 1), window)[0]
        floor = max(float(var.mean()) * 1e-4, 1e-12)  # a pixel no normal image varies at
        return cls(mean.float(), var.clamp_min(floor).sqrt().float())

    def apply(self, heat: torch.Tensor, count: int) -> torch.Tensor:
        """Heat sums → sums whose per-step mean is the z-score (what the fusion divides by count)."""
        mean, std = self.mean.to(heat.device), self.std.to(heat.device)
        return (heat / count - mean) / std * count

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"diff_pixel_mean": self.mean.contiguous(), "diff_pixel_std": self.std.contiguous()}

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], where: str, size: int) -> "PixelStats":
        try:
            mean, std = t["diff_pixel_mean"], t["diff_pixel_std"]
        except KeyError as e:
            raise ValueError(f"{where}: missing tensor {e}") from None
        for name, v in (("diff_pixel_mean", mean), ("diff_pixel_std", std)):
            if tuple(v.shape) != (size, size):
                raise ValueError(f"{where}: {name} has shape {tuple(v.shape)}, expected ({size}, {size})")
            if not torch.isfinite(v).all():
                raise ValueError(f"{where}: {name} holds NaN or Inf")
        if not bool((std > 0).all()):
            raise ValueError(f"{where}: diff_pixel_std must be positive")
        return cls(mean.float(), std.float())


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
    # the Detector seed (grid masks and loop noise) the statistics were measured with; per-pixel
    # statistics hold for that mask layout only
    detector_seed: int = 0
    # fusion.diff_norm = "pixel": the per-pixel statistics, applied before the global ones above
    # (kept in their own safetensors file, not in the JSON)
    pixel: PixelStats | None = field(default=None, compare=False, repr=False)

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.diff_mean, self.diff_std, self.base_mean, self.base_std)

    def to_json(self) -> str:
        plain = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "pixel"}
        return json.dumps({k: (None if isinstance(v, float) and math.isinf(v) else v)
                           for k, v in plain.items()}, indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "FusionStats":
        names = {f.name for f in fields(cls)} - {"pixel"}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"stats: unknown field(s) {sorted(unknown)}")
        return cls(**{k: (math.inf if v is None else v) for k, v in d.items()})


def pixel_window(grid_sizes) -> int:
    """One grid cell, odd: the window the per-pixel variance is averaged over."""
    return max(grid_sizes) + 1 - max(grid_sizes) % 2


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
    stats.pixel_threshold = pixel_threshold(final)
    base_norm = (base_maps - stats.base_mean) / stats.base_std
    stats.base_image_threshold = float(ops.image_score(base_norm, score_window).max())
    return stats


def normalised_blend(diff_map: torch.Tensor, base_map: torch.Tensor, stats: FusionStats,
                     lam: float) -> torch.Tensor:
    """λ·(H_diff − μ)/σ + (1 − λ)·(H_base − μ)/σ on already filtered / up-sampled maps."""
    mu_d, sd_d, mu_b, sd_b = stats.as_tuple()
    return lam * (diff_map - mu_d) / sd_d + (1.0 - lam) * (base_map - mu_b) / sd_b


def stats_from_manifest(manifest: dict) -> FusionStats:
    """The normalisation statistics and thresholds a bundle carries."""
    return FusionStats.from_dict(manifest["fusion_stats"])
