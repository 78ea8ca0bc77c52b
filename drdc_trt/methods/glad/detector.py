"""GLAD inference: image(s) → the anomalib result fields, as DRDC's Detector gives them, plus the
steps each image took in the adaptive loop."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from drdc_trt.schedule import ddim_timesteps
from drdc_trt.images import check_images
from drdc_trt.methods.glad.adaptive import adaptive_loop, steps_histogram
from drdc_trt.methods.glad.features import top_k_score
from drdc_trt.methods.glad.model import GLADModel


@dataclass
class GLADBatch:
    pred_score: torch.Tensor      # B, mean of the top-k anomaly-map pixels
    pred_label: torch.Tensor      # B bool, score above the calibrated threshold
    anomaly_map: torch.Tensor     # B×S×S, the blurred multi-stage feature distance
    pred_mask: torch.Tensor       # B×S×S bool, map above the calibrated pixel threshold
    reconstruction: torch.Tensor  # B×3×S×S in [−1, 1]
    steps: torch.Tensor           # B long, U-Net evaluations the image took (≤ glad.num_steps)
    trigger_step: torch.Tensor    # B long, step index of its trigger or fallback (−1: neither)
    trigger_kind: torch.Tensor    # B long, adaptive.NONE / TRIGGERED / FALLBACK
    max_score: torch.Tensor       # B, its largest trigger score (what τ is calibrated on)

    def report_maps(self, stats, cfg=None, curves: bool = False) -> dict:
        """The evaluation rows these results give: (scores, maps) by row name."""
        return {"GLAD": (self.pred_score, self.anomaly_map)}

    def example_columns(self, stats):
        """Report columns beside input and ground truth: the reconstruction and the map (feature
        distances: colour range 0 … 1.5 × the largest); ``cells(i, image, mask)`` → (images, caption)."""
        from drdc_trt import viz

        hi = 1.5 * float(self.anomaly_map.max())

        def cells(i, img, m):
            return ([viz.to_uint8_image(self.reconstruction[i]), viz.overlay(img, self.anomaly_map[i], 0.0, hi, mask=m)],
                    f" score {float(self.pred_score[i]):.2f}")

        return ["reconstruction", "anomaly map"], cells

    def __len__(self) -> int:
        return int(self.pred_score.shape[0])

    @staticmethod
    def concat(parts: list["GLADBatch"]) -> "GLADBatch":
        return GLADBatch(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(GLADBatch)))

    def step_report(self, num_steps: int) -> dict:
        """The distribution of steps taken and the U-Net rows a compacted loop saves against
        running every row for all ``num_steps`` steps."""
        full = num_steps * len(self)
        taken = int(self.steps.sum())
        return {"steps_histogram": steps_histogram(self.steps), "mean_steps": taken / max(1, len(self)),
                "unet_rows_run": taken, "unet_rows_full": full, "unet_rows_saved": full - taken,
                "triggered": int((self.trigger_kind == 1).sum()), "fallback": int((self.trigger_kind == 2).sum())}


class GLADDetector:
    """Runs a GLADModel: the adaptive loop (drdc_trt.models.glad.adaptive) from t0 with one noise
    ε drawn from ``seed`` and used for every image (an image's result does not depend on its
    batch), then the map and score. ``compact``: finished rows leave the U-Net batch (same
    results up to the U-Net's batch-size rounding; fewer U-Net rows). ``tau`` overrides the
    calibrated τ (calibration runs with τ = +inf: no trigger). ``kernels``: the per-row step's
    implementation, "torch" or "csrc" (drdc_trt.ops.glad_predict / glad_update)."""

    def __init__(self, model: GLADModel, device: str | torch.device = "cpu", seed: int = 0, compact: bool = True,
                 tau: float | None = None, kernels: str = "torch"):
        self.model, self.cfg, self.stats = model, model.cfg, model.stats
        self.device = torch.device(device)
        model.to(self.device).eval()
        s = self.cfg.image_size
        self.noise = torch.randn(3, s, s, generator=torch.Generator().manual_seed(seed)).to(self.device)
        self.compact = compact
        self.kernels = kernels
        self.tau = model.stats.tau if tau is None else tau
        g = self.cfg.glad
        self.timesteps = ddim_timesteps(g.t0, g.num_steps)

    @classmethod
    def from_model(cls, model: GLADModel, device: str | torch.device = "cpu", seed: int = 0) -> "GLADDetector":
        return cls(model, device, seed)

    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        return check_images(images, self.cfg.image_size, self.device)

    @torch.no_grad()
    def predict_batch(self, images: torch.Tensor) -> GLADBatch:
        x = self._check_images(images)
        g, m = self.cfg.glad, self.model
        state = adaptive_loop(x, self.noise.expand_as(x).contiguous(), self.timesteps, m.alphas_cumprod, m.eps,
                              m.trigger_distance, self.tau, g.min_step, g.trigger_top_k, compact=self.compact,
                              impl=self.kernels, saff=g.saff_weight, fallback=g.fallback)
        maps = m.anomaly_map(x, state.recon)
        score = top_k_score(maps, self.cfg.glad_top_k)
        return GLADBatch(pred_score=score, pred_label=score > self.stats.image_threshold, anomaly_map=maps,
                         pred_mask=maps > self.stats.pixel_threshold, reconstruction=state.recon, steps=state.steps,
                         trigger_step=state.trigger_step, trigger_kind=state.trigger_kind,
                         max_score=state.max_score)

    def predict(self, images: torch.Tensor, batch_size: int = 8, progress: bool = False) -> GLADBatch:
        chunks = range(0, images.shape[0], batch_size)
        if progress:
            from tqdm import tqdm

            chunks = tqdm(chunks, desc="inference", unit="batch", leave=False)
        return GLADBatch.concat([self.predict_batch(images[i:i + batch_size]) for i in chunks])


def make_detector(model, device="cpu", seed: int = 0, loop: str = "auto", backend: str = "torch") -> GLADDetector:
    """The registry's detector entry: PyTorch only, one loop."""
    if backend != "torch" or loop not in ("auto", "torch"):
        raise ValueError("a GLAD checkpoint runs with --backend torch and --loop auto/torch (got --backend {backend}, --loop {loop})".format(backend=backend, loop=loop))
    return GLADDetector(model, device, seed=seed)
