"""The toy detector (PyTorch): map, score, decisions."""

from __future__ import annotations

import torch

from drdc_trt.images import check_images

from .model import ToyBatch, ToyModel, top_k_score


class ToyDetector:
    def __init__(self, model: ToyModel, device="cpu"):
        self.model, self.device = model, torch.device(device)
        self.cfg, self.stats = model.cfg, model.stats

    def predict_batch(self, x) -> ToyBatch:
        x = check_images(x, self.cfg.image_size, self.device)
        with torch.no_grad():
            maps = self.model.network().to(self.device)(x)[:, 0]
        score = top_k_score(maps, self.cfg.toy.top_k)
        return ToyBatch(score, score > self.stats.image_threshold, maps, maps > self.stats.pixel_threshold)

    def predict(self, images, batch_size: int = 8, progress: bool = False) -> ToyBatch:
        return ToyBatch.concat([self.predict_batch(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def make_detector(model, device="cpu", seed: int = 0, loop: str = "auto", backend: str = "torch") -> ToyDetector:
    if backend != "torch" or loop not in ("auto", "torch"):
        raise ValueError(f"a toy checkpoint runs with --backend torch and --loop auto/torch (got {backend}, {loop})")
    return ToyDetector(model, device)
