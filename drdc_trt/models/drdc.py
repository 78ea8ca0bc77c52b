"""The trained method: base model + U-Net + fusion statistics, under one config."""

from __future__ import annotations

import torch.nn as nn

from ..config import ModelConfig
from ..fusion import FusionStats
from .base import BaseModel
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
        parts = {"transformer.": self.base.transformer, "unet.": self.unet}
        other = [k for k in sd if not k.startswith(tuple(parts))]
        if other:
            raise ValueError(f"{where}: unexpected tensors {sorted(other)[:5]}")
        missing, unexpected = [], []
        for prefix, module in parts.items():
            sub = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
            try:
                result = module.load_state_dict(sub, strict=False)
            except RuntimeError as e:  # shape mismatch
                raise ValueError(f"{where}: weights do not match the config ({e})") from None
            missing += [prefix + k for k in result.missing_keys]
            unexpected += [prefix + k for k in result.unexpected_keys]
        if missing or unexpected:
            raise ValueError(f"{where}: weights do not match the config "
                             f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
