"""DRDC's checkpoint parts: stats.json's FusionStats (checked), the per-pixel statistics of
``fusion.diff_norm = "pixel"``, and the loader the registry names."""

from __future__ import annotations

import math
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file

from drdc_trt.checkpoint import PIXEL_STATS, STATS, CheckpointError, load_stats, load_weights
from drdc_trt.methods.drdc.fusion import FusionStats, PixelStats
from drdc_trt.methods.drdc.model import DRDCModel
from drdc_trt.settings import ModelConfig



def _check_stats(raw, path: Path) -> None:
    """The normalisation statistics and thresholds of stats.json: present, numbers, positive stds."""
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected an object, got {type(raw).__name__}")
    for key in ("diff_mean", "diff_std", "base_mean", "base_std", "image_threshold", "pixel_threshold"):
        if key not in raw:
            raise CheckpointError(f"{path}: lacks field {key!r}")
        v = raw[key]
        if v is None and key.endswith("threshold"):  # +inf (JSON has no inf)
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise CheckpointError(f"{path}: {key} must be a finite number, got {v!r}")
        if key.endswith("_std") and v <= 0:
            raise CheckpointError(f"{path}: {key} must be positive, got {v!r}")


def load_pixel_stats(folder: Path, cfg: ModelConfig) -> PixelStats | None:
    """The per-pixel statistics a ``fusion.diff_norm = "pixel"`` config needs (None otherwise)."""
    if cfg.fusion.diff_norm != "pixel":
        return None
    path = Path(folder) / PIXEL_STATS
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; config.json has fusion.diff_norm='pixel' "
                              "(re-calibrate with drdc calibrate)")
    try:
        return PixelStats.from_tensors(load_file(str(path)), str(path), cfg.image_size)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: {e}" if str(path) not in str(e) else str(e)) from None


def load_drdc_checkpoint(folder: Path, cfg: ModelConfig, backbone_weights: str | None = None) -> DRDCModel:
    """A DRDC checkpoint folder (its config already read). ``backbone_weights`` overrides the config's source."""
    if backbone_weights is not None:
        cfg.backbone.weights = backbone_weights
    def parse(raw: dict) -> FusionStats:
        _check_stats(raw, folder / STATS)
        return FusionStats.from_dict(raw)

    model = load_weights(DRDCModel(cfg, load_stats(folder, parse)), folder)
    model.stats.pixel = load_pixel_stats(folder, cfg)
    return model.eval()
