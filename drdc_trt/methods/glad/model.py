"""The trained GLAD: the ε-prediction U-Net, the frozen backbone whose features measure the patch
distances, and the calibrated τ and thresholds."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from drdc_trt.settings import ModelConfig
from drdc_trt.schedule import Schedule
from drdc_trt.models.backbone import Backbone
from drdc_trt.models.state import load_parts
from drdc_trt.models.thresholds import Thresholds
from drdc_trt.models.unet import UNet
from drdc_trt.methods.glad.features import anomaly_map, nearest_patch_distance


@dataclass
class GLADStats(Thresholds):
    """GLAD's calibration on held-out normal training images: ``tau`` the trigger threshold (the
    ``glad.tau_quantile`` quantile of their largest trigger score), and the two thresholds
    measured with that τ (its detector seed fixes the noise ε)."""

    tau: float = math.inf


class GLADModel(nn.Module):
    def __init__(self, cfg: ModelConfig, stats: GLADStats | None = None):
        super().__init__()
        self.cfg = cfg.validate()
        if cfg.method != "glad":
            raise ValueError(f"GLADModel: config has method={cfg.method!r}, expected 'glad'")
        self.unet = UNet(cfg.unet)
        self.backbone = Backbone(cfg.backbone, cfg.feature_size)  # frozen; not in the checkpoint
        self.stats = stats or GLADStats()
        self.register_buffer("alphas_cumprod", torch.from_numpy(Schedule.from_config(cfg.diffusion).alphas_cumprod)
                             .float(), persistent=False)

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        return self.alphas_cumprod[t.to(self.alphas_cumprod.device).long()]

    def eps(self, x_t: torch.Tensor, t: int | torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """ε̂ = U(x_t, t), or U(concat(x_t, cond), t) with glad.conditioned (cond: the image being
        reconstructed; ignored otherwise); t one timestep for all rows or one per row."""
        if not isinstance(t, torch.Tensor):
            t = torch.full((x_t.shape[0],), float(t), device=x_t.device)
        if self.cfg.glad.conditioned:
            if cond is None:
                raise ValueError("glad.conditioned: the U-Net needs the image as its condition")
            x_t = torch.cat([x_t, cond], 1)
        return self.unet(x_t, t.to(x_t.device).float())

    def stages(self, x: torch.Tensor, which) -> list[torch.Tensor]:
        feats = self.backbone.stages(x)
        return [feats[s] for s in which]

    def trigger_distance(self, x0_in: torch.Tensor, x0_gen: torch.Tensor) -> torch.Tensor:
        """A: each patch of x0_in's trigger-stage features to its nearest patch of x0_gen's (B×h×w)."""
        s = self.cfg.glad.trigger_stage
        f = self.backbone.stages(torch.cat([x0_in, x0_gen]))[s]
        return nearest_patch_distance(f[:x0_in.shape[0]], f[x0_in.shape[0]:])

    def anomaly_map(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        """The blurred multi-stage distance map of the input to its reconstruction (B×S×S)."""
        f = self.backbone.stages(torch.cat([x, recon]))
        b = x.shape[0]
        st = self.cfg.glad.map_stages
        return anomaly_map([f[s][:b] for s in st], [f[s][b:] for s in st], x.shape[-1], self.cfg.glad_blur_sigma)

    def trainable_state_dict(self) -> dict:
        return {f"unet.{k}": v for k, v in self.unet.state_dict().items()}

    def load_trainable_state_dict(self, sd: dict, where: str = "weights") -> None:
        load_parts({"unet.": self.unet}, sd, where)


def load_glad_checkpoint(folder: Path, cfg: ModelConfig, backbone_weights: str | None = None) -> GLADModel:
    """The model of a checkpoint folder whose config.json (``cfg``) has method = "glad"
    (drdc_trt.checkpoint.load_checkpoint dispatches here)."""
    from drdc_trt.checkpoint import STATS, load_stats, load_weights

    if backbone_weights is not None:
        cfg.backbone.weights = backbone_weights
    stats = load_stats(folder, lambda raw: GLADStats.from_dict(raw, str(Path(folder) / STATS)))
    return load_weights(GLADModel(cfg, stats), folder).eval()


def stats_from_manifest(manifest: dict) -> GLADStats:
    """τ and the thresholds a bundle carries."""
    return GLADStats.from_dict(manifest["thresholds"], "manifest.json: thresholds")
