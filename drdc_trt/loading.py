"""Loading a saved model: a checkpoint folder's config.json names its method, whose registered
entry point loads it (drdc_trt.methods)."""

from __future__ import annotations

from pathlib import Path

from drdc_trt import methods
from drdc_trt.checkpoint import CONFIG, CheckpointError, load_config


def load_checkpoint(folder: str | Path, backbone_weights: str | None = None):
    """The model of a checkpoint folder, any method's. ``backbone_weights`` overrides the config's
    source of backbone weights."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder does not exist")
    cfg = load_config(folder)
    try:
        spec = methods.get(cfg.method, str(folder / CONFIG))
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    return spec.entry("load_checkpoint")(folder, cfg, backbone_weights)
