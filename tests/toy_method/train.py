"""Training the toy model: statistics of the normal images, thresholds on the held-out ones."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from drdc_trt.checkpoint import atomic_write_text, save_checkpoint
from drdc_trt.models.thresholds import pixel_threshold
from drdc_trt.training import training_split

from .detector import ToyDetector
from .model import ToyModel


@dataclass
class ToyReport:
    seconds: dict = field(default_factory=dict)


def train(data_root, out, cfg, categories=None, progress=True, log=print, device="cpu"):
    t0 = time.perf_counter()
    images, calib = training_split(data_root, cfg, categories, progress, log)
    model = ToyModel(cfg)
    model.mean.copy_(images.mean(0))
    model.std.copy_(images.std(0).clamp_min(cfg.toy.floor))
    out_maps = ToyDetector(model).predict(calib)
    model.stats.image_threshold = float(out_maps.pred_score.max())
    model.stats.pixel_threshold = pixel_threshold(out_maps.anomaly_map)
    model.stats.num_images = len(calib)
    save_checkpoint(model, out)
    report = ToyReport(seconds={"total": time.perf_counter() - t0})
    atomic_write_text(Path(out) / "train_report.json", json.dumps({"seconds": report.seconds}))
    log(f"checkpoint written to {out}")
    return model, report
