"""The trained DiffusionAD: reconstruction U-Net + segmentation net + calibrated thresholds."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from drdc_trt.settings import ModelConfig
from drdc_trt.schedule import Schedule
from drdc_trt.models.state import load_parts
from drdc_trt.models.thresholds import Thresholds
from drdc_trt.models.unet import UNet
from drdc_trt.methods.diffusionad.norm_guided import norm_guided_x0
from drdc_trt.schedule import q_sample
from drdc_trt.methods.diffusionad.segmentation import SegmentationNet


class DiffusionADStats(Thresholds):
    """DiffusionAD's calibration: the two thresholds (its detector seed fixes the two noises)."""


class DiffusionADModel(nn.Module):
    def __init__(self, cfg: ModelConfig, stats: DiffusionADStats | None = None):
        super().__init__()
        self.cfg = cfg.validate()
        if cfg.method != "diffusionad":
            raise ValueError(f"DiffusionADModel: config has method={cfg.method!r}, expected 'diffusionad'")
        self.unet = UNet(cfg.unet)
        self.seg = SegmentationNet(cfg.diffusionad.seg_base_width)
        self.stats = stats or DiffusionADStats()
        self.register_buffer("alphas_cumprod", torch.from_numpy(Schedule.from_config(cfg.diffusion).alphas_cumprod)
                             .float(), persistent=False)

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """ᾱ_t per timestep (float32, on the model's device)."""
        return self.alphas_cumprod[t.to(self.alphas_cumprod.device).long()]

    def two_scales(self, x: torch.Tensor, t_a: torch.Tensor, t_b: torch.Tensor, noise_a: torch.Tensor,
                   noise_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_a, e_a, x_b, e_b): x noised to t_a and t_b (one timestep per image) and the U-Net's ε
        for both, from one U-Net call on 2 rows per image."""
        ab_a, ab_b = self.alpha_bar(t_a), self.alpha_bar(t_b)
        x_a, x_b = q_sample(x, ab_a, noise_a), q_sample(x, ab_b, noise_b)
        rows = torch.stack([x_a, x_b], 1).flatten(0, 1)
        eps = self.unet(rows, torch.stack([t_a, t_b], 1).flatten().to(rows.device).float())
        eps = eps.unflatten(0, (x.shape[0], 2))
        return x_a, eps[:, 0], x_b, eps[:, 1]

    def reconstruct(self, x: torch.Tensor, t_a: torch.Tensor, t_b: torch.Tensor, noise_a: torch.Tensor,
                    noise_b: torch.Tensor) -> torch.Tensor:
        """The norm-guided reconstruction x0_g of images x (B×3×S×S in [−1, 1])."""
        x_a, e_a, x_b, e_b = self.two_scales(x, t_a, t_b, noise_a, noise_b)
        x0_g, _ = norm_guided_x0(x_a, e_a, x_b, e_b, self.alpha_bar(t_a), self.alpha_bar(t_b), self.cfg.diffusionad.w)
        return x0_g

    def segment(self, x: torch.Tensor, x0_g: torch.Tensor) -> torch.Tensor:
        """Anomaly map B×1×S×S in [0, 1] from the image and its reconstruction."""
        return self.seg(torch.cat([x, x0_g], 1))

    def trainable_state_dict(self) -> dict:
        sd = {f"unet.{k}": v for k, v in self.unet.state_dict().items()}
        sd.update({f"seg.{k}": v for k, v in self.seg.state_dict().items()})
        return sd

    def load_trainable_state_dict(self, sd: dict, where: str = "weights") -> None:
        load_parts({"unet.": self.unet, "seg.": self.seg}, sd, where)


def load_diffusionad_checkpoint(folder: Path, cfg: ModelConfig, backbone_weights: str | None = None) -> DiffusionADModel:
    """The model of a checkpoint folder whose config.json (``cfg``) has method = "diffusionad"
    (drdc_trt.checkpoint.load_checkpoint dispatches here)."""
    from drdc_trt.checkpoint import STATS, load_stats, load_weights

    stats = load_stats(folder, lambda raw: DiffusionADStats.from_dict(raw, str(Path(folder) / STATS)))
    return load_weights(DiffusionADModel(cfg, stats), folder).eval()


def stats_from_manifest(manifest: dict) -> DiffusionADStats:
    """The thresholds a bundle carries."""
    return DiffusionADStats.from_dict(manifest["thresholds"], "manifest.json: thresholds")
