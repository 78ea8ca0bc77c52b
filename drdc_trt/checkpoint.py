"""Checkpoints: safetensors weights + JSON config + JSON statistics. Never pickle.

A checkpoint is a folder:

    model.safetensors   transformer + U-Net weights (the backbone has its own)
    config.json         the ModelConfig
    stats.json          the method's statistics (thresholds; DRDC: its map normalisation too)
    pixel_stats.safetensors   DRDC: per-pixel mean / std of the diffusion map (fusion.diff_norm = "pixel")

Every file is written to a temporary name and renamed into place, so a crash
never leaves a half-written file where a good one was.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .settings import ModelConfig, missing_fields

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


def save_checkpoint(model, folder: str | Path) -> Path:
    """Any method's model: ``trainable_state_dict``, ``cfg``, ``stats`` (stats.json) and, where it has
    them, per-pixel statistics (``stats.pixel``)."""
    check = getattr(model, "check_savable", None)  # a method's own precondition (DRDC: per-pixel statistics)
    if check is not None:
        check(folder)
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


