"""Checkpoints: safetensors weights + JSON config + JSON statistics. Never pickle.

A checkpoint is a folder:

    model.safetensors   transformer + U-Net weights (the backbone has its own)
    config.json         the ModelConfig
    stats.json          FusionStats (normalisation, thresholds)
    pixel_stats.safetensors   per-pixel mean / std of the diffusion map (fusion.diff_norm = "pixel")

Every file is written to a temporary name and renamed into place, so a crash
never leaves a half-written file where a good one was.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import ModelConfig, missing_fields
from .fusion import FusionStats, PixelStats
from .models import DRDCModel

WEIGHTS, CONFIG, STATS = "model.safetensors", "config.json", "stats.json"
PIXEL_STATS = "pixel_stats.safetensors"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file at fault."""


def _atomic(path: Path, write) -> None:
    """write(tmp) beside ``path``, then rename over it; a failed write or rename removes the
    temporary file and leaves the previous ``path`` as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    _atomic(path, lambda tmp: tmp.write_text(text))


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> None:
    plain = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _atomic(path, lambda tmp: save_file(plain, str(tmp), metadata=metadata))


def save_checkpoint(model: DRDCModel, folder: str | Path) -> Path:
    """A DRDCModel or a DiffusionADModel (whose stats.json holds its two thresholds)."""
    if model.cfg.method == "drdc" and model.cfg.fusion.diff_norm == "pixel" and model.stats.pixel is None:
        raise CheckpointError(f"{folder}: fusion.diff_norm='pixel' but the model has no per-pixel statistics "
                              "(stats.pixel); calibrate it before saving")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(model.trainable_state_dict(), folder / WEIGHTS, {"format": "drdc_trt/1"})
    atomic_write_text(folder / CONFIG, model.cfg.to_json())
    if getattr(model.stats, "pixel", None) is not None:
        atomic_save_tensors(model.stats.pixel.tensors(), folder / PIXEL_STATS)
    atomic_write_text(folder / STATS, model.stats.to_json())  # last: the statistics go with the files above
    return folder


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing {what}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None


def load_config(folder: str | Path) -> ModelConfig:
    path = Path(folder) / CONFIG
    raw = read_json(path, "config")
    try:
        cfg = ModelConfig.from_dict(raw).validate()
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: {e}") from None
    missing = missing_fields(raw)
    if missing:  # save_checkpoint writes every field: a default here would be a silent guess
        raise CheckpointError(f"{path}: lacks field(s) {', '.join(missing)}")
    return cfg


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


def load_checkpoint(folder: str | Path, backbone_weights: str | None = None) -> DRDCModel:
    """Load a checkpoint folder. ``backbone_weights`` overrides the config's source."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder does not exist")
    cfg = load_config(folder)
    if cfg.method == "diffusionad":  # no backbone; U-Net + segmentation net and two thresholds
        from .models.diffusionad.model import load_diffusionad_checkpoint

        return load_diffusionad_checkpoint(folder, cfg)
    if cfg.method == "glad":  # U-Net, the frozen backbone; τ and two thresholds
        from .models.glad.model import load_glad_checkpoint

        return load_glad_checkpoint(folder, cfg, backbone_weights)
    if backbone_weights is not None:
        cfg.backbone.weights = backbone_weights
    def parse(raw: dict) -> FusionStats:
        _check_stats(raw, folder / STATS)
        return FusionStats.from_dict(raw)

    model = load_weights(DRDCModel(cfg, load_stats(folder, parse)), folder)
    model.stats.pixel = load_pixel_stats(folder, cfg)
    return model.eval()


def load_stats(folder: Path, parse):
    """parse(the dict of ``stats.json``) → the method's statistics; a CheckpointError naming the
    file when it is missing, not JSON or refused by ``parse``."""
    path = Path(folder) / STATS
    try:
        return parse(read_json(path, "statistics"))
    except (TypeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(str(e) if str(path) in str(e) else f"{path}: {e}") from None


def load_weights(model, folder: Path):
    """The checkpoint's ``model.safetensors`` loaded into ``model`` (any method's:
    ``load_trainable_state_dict``); a CheckpointError naming the file when it is missing,
    unreadable or does not match the config."""
    weights = Path(folder) / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing weights")
    try:
        sd = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{weights}: unreadable safetensors file ({e})") from None
    try:
        model.load_trainable_state_dict(sd, where=str(weights))
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    return model


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
