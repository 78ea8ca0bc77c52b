"""The base model: frozen backbone + reconstruction transformer → 14×14 base heatmap."""

from __future__ import annotations

import torch
import torch.nn as nn

from drdc_trt.settings import ModelConfig
from drdc_trt.models.backbone import Backbone
from drdc_trt.methods.drdc.transformer import ReconstructionTransformer


class BaseModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.backbone = Backbone(cfg.backbone, cfg.feature_size)
        self.transformer = ReconstructionTransformer(cfg.transformer, self.backbone.channels, cfg.feature_size)

    def features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(backbone features, their reconstruction), both B×C×h×w."""
        with torch.no_grad():
            feats = self.backbone(image)
        return feats, self.transformer(feats)

    @staticmethod
    def heatmap(feats: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
        """‖f − f̂‖₂ over channels: B×h×w (Eq. 2)."""
        return (feats - rec).pow(2).sum(1).sqrt()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image B×3×S×S in [-1, 1] → base heatmap B×h×w."""
        return self.heatmap(*self.features(image))

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The transformer only: the backbone is frozen and comes from its own weights."""
        return {f"transformer.{k}": v for k, v in self.transformer.state_dict().items()}
