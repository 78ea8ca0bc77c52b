"""The trained method: base model + U-Net + fusion statistics, under one config."""

from __future__ import annotations

import torch.nn as nn

from drdc_trt.settings import ModelConfig
from drdc_trt.methods.drdc.fusion import FusionStats
from drdc_trt.methods.drdc.base_model import BaseModel
from drdc_trt.models.state import load_parts
from drdc_trt.models.unet import UNet


class DRDCModel(nn.Module):
    def __init__(self, cfg: ModelConfig, stats: FusionStats | None = None):
        super().__init__()
        self.cfg = cfg.validate()
        self.base = BaseModel(cfg)
        self.unet = UNet(cfg.unet)
        self.stats = stats or FusionStats()

    def trainable_state_dict(self) -> dict:
        sd = self.base.trainable_state_dict()
        sd.update({f"unet.{k}": v for k, v in self.unet.state_dict().items()})
        return sd

    def load_trainable_state_dict(self, sd: dict, where: str = "weights") -> None:
        load_parts({"transformer.": self.base.transformer, "unet.": self.unet}, sd, where)

    def check_savable(self, folder) -> None:
        """save_checkpoint's precondition: a "pixel" diff_norm needs the per-pixel statistics."""
        if self.cfg.fusion.diff_norm == "pixel" and self.stats.pixel is None:
            from drdc_trt.checkpoint import CheckpointError

            raise CheckpointError(f"{folder}: fusion.diff_norm='pixel' but the model has no per-pixel statistics "
                                  "(stats.pixel); calibrate it before saving")
