"""Loading a saved model: a checkpoint folder's config.json names its method, whose registered
entry point loads it. The registry (drdc_trt.methods) is looked up by name at run time, as a saved
artifact names its own class, so this core module imports no method."""

from __future__ import annotations

import importlib
from pathlib import Path

from drdc_trt.checkpoint import CONFIG, CheckpointError, load_config


def load_checkpoint(folder: str | Path, backbone_weights: str | None = None):
    """The model of a checkpoint folder, any method's. ``backbone_weights`` overrides the config's
    source of backbone weights."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder does not exist")
    cfg = load_config(folder)
    # the registry, found by name at run time as the artifact names its method (docs/design.md)
    methods = importlib.import_module("drdc_trt.methods")
    try:
        spec = methods.get(cfg.method, str(folder / CONFIG))
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    return spec.entry("load_checkpoint")(folder, cfg, backbone_weights)
