"""Detector: image(s) → InferenceBatch (anomalib field names)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from drdc_trt.methods.drdc import ops
from drdc_trt.images import check_images
from drdc_trt.settings import ModelConfig
from drdc_trt.methods.drdc.contrast import heat_divisor, local_window
from drdc_trt.methods.drdc.inpaint import LoopNoise, LoopResult, inpaint_heat
from drdc_trt.schedule import Schedule
from drdc_trt.methods.drdc.margin import crop, pad_image
from drdc_trt.methods.drdc.masks import grid_labels
from drdc_trt.methods.drdc.fusion import FusionStats, normalised_blend
from drdc_trt.methods.drdc.gridsets import pad_labels

LOOPS = ("torch", "csrc")
# Slack of the [-1, 1] image range check: float rounding of blended images, far below
# the error of passing 0..255 pixels.
RANGE_SLACK = 1e-3


@dataclass
class InferenceBatch:
    pred_score: torch.Tensor   # B, image anomaly score (max of the average-pooled final map)
    pred_label: torch.Tensor   # B bool, score above the calibrated threshold, or NaN (fail safe)
    anomaly_map: torch.Tensor  # B×S×S, the final fused map
    pred_mask: torch.Tensor    # B×S×S bool, map above the calibrated pixel threshold, or NaN
    base_map: torch.Tensor     # B×S×S, up-sampled base heatmap (raw)
    diff_map: torch.Tensor     # B×S×S, filtered diffusion heatmap (raw)
    base_score: torch.Tensor   # B, score of the base map alone (the base model's answer)

    def report_maps(self, stats, cfg=None, curves: bool = False) -> dict:
        """The evaluation rows these results give: the base model alone (its map normalised as the
        blend normalises it, scored with the config's window; ``curves``: its own score) and DRDC."""
        base = normalised_blend(self.diff_map, self.base_map, stats, 0.0)
        score = self.base_score if curves or cfg is None else ops.image_score(base, cfg.score_window)
        return {"base (UniAD)": (score, base), "DRDC": (self.pred_score, self.anomaly_map)}

    def diagnostic_maps(self, stats, cfg) -> dict:
        """The maps the border / lighting diagnostics look at (drdc_trt.diagnostics): the blend at
        λ = 0 (base), 1 (the diffusion map alone: near chance when the U-Net is undertrained) and the
        model's λ, each scored with the config's window."""
        lams = {"base (λ=0)": 0.0, "diffusion only (λ=1)": 1.0, f"DRDC (λ={cfg.fusion.lam:g})": cfg.fusion.lam}
        out = {}
        for name, lam in lams.items():
            m = normalised_blend(self.diff_map, self.base_map, stats, lam)
            out[name] = (ops.image_score(m, cfg.score_window), m)
        return out

    def example_columns(self, stats):
        """Report columns beside input and ground truth: base, diffusion and final maps, colour ranges
        from normal-image statistics (mean … mean + 6 std of the raw map); ``cells(i, image, mask)`` →
        (images, caption)."""
        import numpy as np

        from drdc_trt import viz

        d_lo, d_hi = stats.diff_mean, stats.diff_mean + 6 * stats.diff_std
        b_lo, b_hi = stats.base_mean, stats.base_mean + 6 * stats.base_std
        f_lo, f_hi = 0.0, max(6.0, float(np.quantile(self.anomaly_map.cpu().numpy(), 0.999)))

        def cells(i, img, m):
            return ([viz.overlay(img, self.base_map[i], b_lo, b_hi, mask=m),
                     viz.overlay(img, self.diff_map[i], d_lo, d_hi, mask=m),
                     viz.overlay(img, self.anomaly_map[i], f_lo, f_hi, mask=m)],
                    f" score {float(self.pred_score[i]):.2f}")

        return ["base map", "diffusion map", "final map"], cells

    def __len__(self) -> int:
        return int(self.pred_score.shape[0])

    @staticmethod
    def concat(parts: list["InferenceBatch"]) -> "InferenceBatch":
        return InferenceBatch(*(torch.cat([getattr(p, f) for p in parts]) for f in InferenceBatch.__dataclass_fields__))


class Detector:
    """Runs the method on a runner (see ``drdc_trt.backends``).

    ``loop="torch"`` drives the DDIM loop from Python with the reference ops;
    ``loop="csrc"`` hands the whole loop to the C++ refiner. Noise and masks come
    from ``seed`` and are the same for every image, so an image's result does not
    depend on the batch it is in. The loop runs at ``cfg.loop_size`` (the image with
    its mirrored border margin); the heat is cropped back to the image and divided by
    the input's contrast scale (``fusion.heat_norm``) before the fusion.
    """

    def __init__(self, cfg: ModelConfig, runner, stats: FusionStats, device: str | torch.device = "cpu",
                 loop: str = "torch", seed: int = 0, net_dtype: torch.dtype = torch.float32):
        if loop not in LOOPS:
            raise ValueError(f"loop={loop!r}; choose one of {LOOPS}")
        self.cfg, self.runner, self.stats = cfg, runner, stats
        if stats.pixel is not None and seed != stats.detector_seed:
            import warnings

            warnings.warn(f"Detector seed {seed}: the per-pixel statistics were measured with seed "
                          f"{stats.detector_seed}'s mask layout; re-calibrate for this seed", stacklevel=2)
        self.device = torch.device(device)
        self.loop, self.net_dtype = loop, net_dtype
        d = cfg.diffusion
        self.schedule = Schedule.from_config(d)
        labels = grid_labels(cfg.image_size, d.grid_sizes, d.num_sets, seed).numpy()
        self.labels = torch.from_numpy(pad_labels(labels, d.margin)).to(self.device)
        gen = torch.Generator().manual_seed(seed)
        self.noise = LoopNoise.draw(cfg.rows_per_image, cfg.loop_size, d.num_steps, gen, self.device)

    @classmethod
    def from_model(cls, model, device="cpu", **kwargs) -> "Detector":
        from drdc_trt.backends.torch_backend import TorchRunner

        return cls(model.cfg, TorchRunner(model, device), model.stats, device, **kwargs)

    def _noise_for(self, batch: int) -> LoopNoise:
        n = self.noise
        return LoopNoise(n.fill.repeat(batch, 1, 1, 1), n.start.repeat(batch, 1, 1, 1),
                         n.steps.repeat(1, batch, 1, 1, 1))

    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        return check_images(images, self.cfg.image_size, self.device)

    @torch.no_grad()
    def loop_heat(self, x: torch.Tensor) -> LoopResult:
        """The inpainting loop on the margin-padded images: heat and x_t at ``loop_size``."""
        d, f = self.cfg.diffusion, self.cfg.fusion
        args = (pad_image(x, d.margin), self.labels, d.num_sets, self.runner.unet, self.schedule, d.t0,
                d.num_steps, self._noise_for(x.shape[0]), f.pool_factors, d.clip_x0, self.net_dtype)
        if self.loop == "csrc":
            from drdc_trt.methods.drdc.refiner import csrc_inpaint_heat

            return csrc_inpaint_heat(*args)
        return inpaint_heat(*args)

    @torch.no_grad()
    def heat(self, x: torch.Tensor) -> LoopResult:
        """The heat sum of images x (B×3×S×S), cropped to S×S, contrast-normalised and, with
        ``fusion.diff_norm = "pixel"``, turned into per-pixel z-scores."""
        res = self.loop_heat(x)
        heat = crop(res.heat, self.cfg.diffusion.margin)
        div = heat_divisor(x, self.cfg.fusion.heat_norm, local_window(self.cfg.diffusion.grid_sizes))
        if div is not None:
            heat = heat / div
        if self.cfg.fusion.diff_norm == "pixel":
            if self.stats.pixel is None:
                raise ValueError("fusion.diff_norm='pixel' needs the per-pixel statistics of calibration "
                                 "(stats.pixel); calibrate the model first")
            heat = self.stats.pixel.apply(heat, res.count)
        return LoopResult(heat=heat, count=res.count, xt=res.xt)

    @torch.no_grad()
    def predict_batch(self, images: torch.Tensor) -> InferenceBatch:
        x = self._check_images(images)
        base = self.runner.base(x).float().contiguous()
        res = self.heat(x)
        f = self.cfg.fusion
        impl = "csrc" if self.loop == "csrc" else "torch"
        final, hd, hb, score = ops.fuse(res.heat, res.count, base, f.mean_filter, self.stats.as_tuple(),
                                        f.lam, self.cfg.score_window, impl=impl)
        base_norm = normalised_blend(hd, hb, self.stats, 0.0)
        return InferenceBatch(
            pred_score=score, pred_label=~(score <= self.stats.image_threshold), anomaly_map=final,
            pred_mask=~(final <= self.stats.pixel_threshold), base_map=hb, diff_map=hd,
            base_score=ops.image_score(base_norm, self.cfg.score_window),
        )

    def predict(self, images: torch.Tensor, batch_size: int = 8, progress: bool = False) -> InferenceBatch:
        chunks = range(0, images.shape[0], batch_size)
        if progress:
            from tqdm import tqdm

            chunks = tqdm(chunks, desc="inference", unit="batch", leave=False)
        return InferenceBatch.concat([self.predict_batch(images[i:i + batch_size]) for i in chunks])


def make_detector(model, device="cpu", seed: int = 0, loop: str = "auto", backend: str = "torch") -> Detector:
    """The registry's detector entry: the U-Net on ``backend`` (torch, torch-compiled), the loop in
    PyTorch (auto, torch) or the C++ refiner (csrc)."""
    from drdc_trt.backends import make_runner

    runner = make_runner(backend, model=model, device=device)
    return Detector(model.cfg, runner, model.stats, device, loop="torch" if loop == "auto" else loop, seed=seed)
