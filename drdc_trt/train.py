"""Training entry: a config's method trains through its registered entry point (the registry,
drdc_trt.methods); every method writes the same checkpoint folder layout and resumes the same way
(drdc_trt.training)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from drdc_trt import methods
from drdc_trt.settings import ModelConfig


def train(data_root: str | Path, out: str | Path, cfg: ModelConfig, categories: Sequence[str] | None = None,
          progress: bool = True, log: Callable[[str], None] = print, device="cpu"):
    """Train ``cfg.method``'s model on ``device``: (model, report); resumable, the checkpoint is written
    to ``out``."""
    cfg.validate()
    return methods.get(cfg.method).entry("train")(data_root, out, cfg, categories, progress, log, device)
