"""The toy model: per-pixel mean and std of the normal images, and the map they give."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from drdc_trt.checkpoint import STATS, load_stats, load_weights
from drdc_trt.models.thresholds import Thresholds


class ToyStats(Thresholds):
    """Its calibration: the two thresholds."""


class ToyMap(nn.Module):
    """image B×3×S×S → map B×1×S×S (what the bundle's one network computes)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, blur: int):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.blur = blur

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = ((x - self.mean) / self.std).abs().mean(1, keepdim=True)
        return F.avg_pool2d(d, self.blur, stride=1, padding=self.blur // 2, count_include_pad=False)


class ToyModel(nn.Module):
    def __init__(self, cfg, stats: ToyStats | None = None):
        super().__init__()
        self.cfg = cfg.validate()
        s = cfg.image_size
        self.register_buffer("mean", torch.zeros(3, s, s))
        self.register_buffer("std", torch.ones(3, s, s))
        self.stats = stats or ToyStats()

    def network(self) -> ToyMap:
        return ToyMap(self.mean, self.std, self.cfg.toy.blur)

    def trainable_state_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std}

    def load_trainable_state_dict(self, sd: dict, where: str = "weights") -> None:
        if set(sd) != {"mean", "std"} or sd["mean"].shape != self.mean.shape:
            raise ValueError(f"{where}: expected mean and std of shape {tuple(self.mean.shape)}, got "
                             f"{ {k: tuple(v.shape) for k, v in sd.items()} }")
        self.mean.copy_(sd["mean"])
        self.std.copy_(sd["std"])


def top_k_score(maps: torch.Tensor, k: int) -> torch.Tensor:
    return maps.flatten(1).topk(min(k, maps[0].numel()), dim=1).values.mean(1)


def load_toy_checkpoint(folder: Path, cfg, backbone_weights=None) -> ToyModel:
    stats = load_stats(folder, lambda raw: ToyStats.from_dict(raw, str(Path(folder) / STATS)))
    return load_weights(ToyModel(cfg, stats), folder).eval()


def stats_from_manifest(manifest: dict) -> ToyStats:
    return ToyStats.from_dict(manifest["thresholds"], "manifest.json: thresholds")


@dataclass
class ToyBatch:
    pred_score: torch.Tensor
    pred_label: torch.Tensor
    anomaly_map: torch.Tensor
    pred_mask: torch.Tensor

    def report_maps(self, stats, cfg=None, curves: bool = False) -> dict:
        return {"Toy": (self.pred_score, self.anomaly_map)}

    def example_columns(self, stats):
        from drdc_trt import viz

        hi = float(self.anomaly_map.max()) or 1.0

        def cells(i, img, m):
            return [viz.overlay(img, self.anomaly_map[i], 0.0, hi, mask=m)], f" score {float(self.pred_score[i]):.2f}"

        return ["anomaly map"], cells

    def __len__(self) -> int:
        return int(self.pred_score.shape[0])

    @staticmethod
    def concat(parts: list["ToyBatch"]) -> "ToyBatch":
        return ToyBatch(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(ToyBatch)))
