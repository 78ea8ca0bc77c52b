"""The trained method: base model + U-Net + fusion statistics, under one config."""

from __future__ import annotations

import torch.nn as nn

from ..config import ModelConfig
from ..fusion import FusionStats
from .base import BaseModel
from .state import load_parts
from .unet import UNet


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
