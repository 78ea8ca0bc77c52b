"""DiffusionAD inference: image(s) → the anomalib result fields, as DRDC's Detector gives them."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from drdc_trt.images import check_images
from drdc_trt.methods.diffusionad.model import DiffusionADModel


@dataclass
class DiffusionADBatch:
    pred_score: torch.Tensor      # B, mean of the top-k anomaly-map pixels
    pred_label: torch.Tensor      # B bool, score above the calibrated threshold
    anomaly_map: torch.Tensor     # B×S×S, the segmentation output in [0, 1]
    pred_mask: torch.Tensor       # B×S×S bool, map above the calibrated pixel threshold
    reconstruction: torch.Tensor  # B×3×S×S, the norm-guided reconstruction x0_g in [−1, 1]

    def report_maps(self, stats, cfg=None, curves: bool = False) -> dict:
        """The evaluation rows these results give: (scores, maps) by row name."""
        return {"DiffusionAD": (self.pred_score, self.anomaly_map)}

    def example_columns(self, stats):
        """Report columns beside input and ground truth: the reconstruction and the map (a
        probability: a fixed 0..1 colour range); ``cells(i, image, mask)`` → (images, caption)."""
        from drdc_trt import viz

        def cells(i, img, m):
            return ([viz.to_uint8_image(self.reconstruction[i]), viz.overlay(img, self.anomaly_map[i], 0.0, 1.0, mask=m)],
                    f" score {float(self.pred_score[i]):.2f}")

        return ["reconstruction", "anomaly map"], cells

    def __len__(self) -> int:
        return int(self.pred_score.shape[0])

    @staticmethod
    def concat(parts: list["DiffusionADBatch"]) -> "DiffusionADBatch":
        return DiffusionADBatch(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(DiffusionADBatch)))


def image_score(maps: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of the k largest pixels of each map (B×S×S → B)."""
    return maps.flatten(1).topk(k, dim=1).values.mean(1)


class DiffusionADDetector:
    """Runs a DiffusionADModel: x_a = q(x, t_a, n_a), x_b = q(x, t_b, n_b), both U-Net calls in one
    batch of 2 rows per image, the norm-guided x0_g, the segmentation map. The two noises come from
    ``seed`` and are the same for every image, so an image's result does not depend on its batch."""

    def __init__(self, model: DiffusionADModel, device: str | torch.device = "cpu", seed: int = 0):
        self.model, self.cfg, self.stats = model, model.cfg, model.stats
        self.device = torch.device(device)
        model.to(self.device).eval()
        s = self.cfg.image_size
        gen = torch.Generator().manual_seed(seed)
        self.noise_a = torch.randn(3, s, s, generator=gen).to(self.device)
        self.noise_b = torch.randn(3, s, s, generator=gen).to(self.device)

    @classmethod
    def from_model(cls, model: DiffusionADModel, device: str | torch.device = "cpu", seed: int = 0
                   ) -> "DiffusionADDetector":
        return cls(model, device, seed)

    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        return check_images(images, self.cfg.image_size, self.device)

    @torch.no_grad()
    def predict_batch(self, images: torch.Tensor) -> DiffusionADBatch:
        x = self._check_images(images)
        b, a = x.shape[0], self.cfg.diffusionad
        t_a = torch.full((b,), a.t_a, dtype=torch.long, device=self.device)
        t_b = torch.full((b,), a.t_b, dtype=torch.long, device=self.device)
        n_a, n_b = self.noise_a.expand(b, -1, -1, -1), self.noise_b.expand(b, -1, -1, -1)
        x0_g = self.model.reconstruct(x, t_a, t_b, n_a, n_b)
        maps = self.model.segment(x, x0_g)[:, 0]
        score = image_score(maps, self.cfg.top_k)
        return DiffusionADBatch(pred_score=score, pred_label=score > self.stats.image_threshold, anomaly_map=maps,
                                pred_mask=maps > self.stats.pixel_threshold, reconstruction=x0_g)

    def predict(self, images: torch.Tensor, batch_size: int = 8, progress: bool = False) -> DiffusionADBatch:
        chunks = range(0, images.shape[0], batch_size)
        if progress:
            from tqdm import tqdm

            chunks = tqdm(chunks, desc="inference", unit="batch", leave=False)
        return DiffusionADBatch.concat([self.predict_batch(images[i:i + batch_size]) for i in chunks])


def make_detector(model, device="cpu", seed: int = 0, loop: str = "auto", backend: str = "torch") -> DiffusionADDetector:
    """The registry's detector entry: PyTorch only, one loop."""
    if backend != "torch" or loop not in ("auto", "torch"):
        raise ValueError("a DiffusionAD checkpoint runs with --backend torch and --loop auto/torch (got --backend {backend}, --loop {loop})".format(backend=backend, loop=loop))
    return DiffusionADDetector(model, device, seed=seed)
