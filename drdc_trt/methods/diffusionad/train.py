"""DiffusionAD training: the joint step of the reconstruction U-Net and the segmentation net,
then the thresholds on held-out normal images.

Per iteration: a batch of normal images, each given a synthetic anomaly with probability
``anomaly_prob`` (drdc_trt.data.anomalies.anomaly_batch); t_s ~ U{train_ts}, t_b ~ U{train_tb}
and two independent noises per image; one U-Net call on 2 rows per image; noise loss = MSE(e_s, ε_s)
+ MSE(e_b, ε_b) averaged over the clean images only (0 when the batch has none); x0_g, the
norm-guided estimate at (t_s, t_b), NOT detached, so the segmentation loss trains the U-Net too;
loss = noise + focal_weight·Focal + smooth_l1_weight·SmoothL1 on seg(cat(x_aug, x0_g)). Two Adam
optimizers, the segmentation lr on a cosine (CosineAnnealingLR's closed form, per iteration).

Resumable exactly like DRDC's training (the run: drdc_trt.models.method_training, shared with
the other reconstruction method; drdc_trt.methods.drdc.train.TrainState: one snapshot of weights,
both optimizers, the EMA and the counter ``unet_iter``); every iteration's batch, anomalies,
timesteps and noises come from a generator seeded by its index, so a resumed run ends with the
weights of an uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import torch

from drdc_trt import distributed
from drdc_trt.settings import ModelConfig
from drdc_trt.data.anomalies import anomaly_batch
from drdc_trt.models.thresholds import pixel_threshold
from drdc_trt.training import LOSS_READ_EVERY
from drdc_trt.training import bar as progress_bar
from drdc_trt.models.method_training import MethodTraining, train_method
from drdc_trt.methods.diffusionad.detector import DiffusionADDetector
from drdc_trt.methods.diffusionad.loss import segmentation_loss
from drdc_trt.methods.diffusionad.model import DiffusionADModel, DiffusionADStats
from drdc_trt.methods.diffusionad.norm_guided import norm_guided_x0

LOSS_TERMS = ("loss", "noise", "focal", "smooth_l1")


@dataclass
class DiffusionADReport:
    losses: list[dict] = field(default_factory=list)  # one per iteration: LOSS_TERMS
    seconds: dict[str, float] = field(default_factory=dict)
    resumed_from: dict | None = None


@dataclass
class Batch:
    x: torch.Tensor        # B×3×s×s, the images with their synthetic anomalies
    mask: torch.Tensor     # B×1×s×s in {0, 1}
    t_s: torch.Tensor      # B
    t_b: torch.Tensor      # B
    noise_s: torch.Tensor  # B×3×s×s
    noise_b: torch.Tensor  # B×3×s×s

    def to(self, device) -> "Batch":
        return Batch(*(v.to(device) for v in (self.x, self.mask, self.t_s, self.t_b, self.noise_s, self.noise_b)))


def training_batch(it: int, images: torch.Tensor, cfg: ModelConfig) -> Batch:
    """Iteration ``it``'s batch, from its own generator (a resumed run draws the same ones)."""
    tc, a = cfg.train, cfg.diffusionad
    gen = torch.Generator().manual_seed(tc.seed * 7_919 + it)
    n = tc.batch_size
    x = images[torch.randint(0, len(images), (n,), generator=gen)]
    crop = tc.crop_size or cfg.image_size
    if crop < cfg.image_size:
        ys = torch.randint(0, cfg.image_size - crop + 1, (n,), generator=gen).tolist()
        xs = torch.randint(0, cfg.image_size - crop + 1, (n,), generator=gen).tolist()
        x = torch.stack([img[:, y:y + crop, xx:xx + crop] for img, y, xx in zip(x, ys, xs)])
    x, mask, _ = anomaly_batch(x, gen, a.anomaly_prob, tuple(a.beta_range), tuple(a.anomaly_sources))
    t_s = torch.randint(a.train_ts[0], a.train_ts[1] + 1, (n,), generator=gen)
    t_b = torch.randint(a.train_tb[0], a.train_tb[1] + 1, (n,), generator=gen)
    noise_s = torch.randn(x.shape, generator=gen)
    noise_b = torch.randn(x.shape, generator=gen)
    return Batch(x, mask, t_s, t_b, noise_s, noise_b)


def clean_rows(b: Batch) -> torch.Tensor:
    """B bool: the images without a synthetic anomaly."""
    return b.mask.flatten(1).amax(1) == 0


def training_losses(model: DiffusionADModel, b: Batch, noise_share: float = 1.0,
                    share: float = 1.0) -> dict[str, torch.Tensor]:
    """The loss terms of one batch (LOSS_TERMS) and the reconstruction ``x0_g`` (with its graph).
    A rank's part of a global batch weights its noise term (a mean over its clean images) by
    ``noise_share`` and the segmentation terms (means over its rows) by ``share``
    (drdc_trt.distributed.loss_share); 1.0 in one process."""
    a = model.cfg.diffusionad
    x_s, e_s, x_b, e_b = model.two_scales(b.x, b.t_s, b.t_b, b.noise_s, b.noise_b)
    per_image = (e_s - b.noise_s).pow(2).mean((1, 2, 3)) + (e_b - b.noise_b).pow(2).mean((1, 2, 3))
    normal = clean_rows(b)
    # the anomalous images' noise is not the model's to learn (Eq. 9); a batch without a clean one: 0
    noise = (per_image[normal].mean() if bool(normal.any()) else per_image.sum() * 0.0) * noise_share
    x0_g, _ = norm_guided_x0(x_s, e_s, x_b, e_b, model.alpha_bar(b.t_s), model.alpha_bar(b.t_b), a.w)
    focal, sl1 = segmentation_loss(model.segment(b.x, x0_g), b.mask, a)
    focal, sl1 = focal * share, sl1 * share
    loss = noise + a.focal_weight * focal + a.smooth_l1_weight * sl1
    return {"loss": loss, "noise": noise, "focal": focal, "smooth_l1": sl1, "x0_g": x0_g}


def seg_lr(cfg: ModelConfig, it: int) -> float:
    """The segmentation lr of iteration ``it``: CosineAnnealingLR (η_min = 0) in closed form."""
    a = cfg.diffusionad
    return a.seg_lr * (1 + math.cos(math.pi * it / a.seg_lr_t_max)) / 2


def make_optimizers(model: DiffusionADModel) -> dict[str, torch.optim.Optimizer]:
    a = model.cfg.diffusionad
    return {"unet": torch.optim.Adam(model.unet.parameters(), lr=a.unet_lr),
            "seg": torch.optim.Adam(model.seg.parameters(), lr=a.seg_lr)}


def _train_loop(model, images, cfg, state, opts, report, progress, save) -> None:
    """Distributed: each rank takes its rows of the global batch; the noise term's weight is its
    share of the global batch's clean images, which every rank knows (it draws the whole batch)."""
    tc = cfg.train
    dev = next(model.parameters()).device
    model.train()
    step = distributed.data_parallel(model, partial(training_losses, model))
    rows, share = distributed.my_rows(tc.batch_size)
    bar = progress_bar(tc.unet_iters, "DiffusionAD", progress, state.info["unet_iter"])
    pending: list[torch.Tensor] = []

    def read_losses() -> None:
        if pending:
            for row in distributed.average(torch.stack(pending)).tolist():  # one wait for the device
                report.losses.append(dict(zip(LOSS_TERMS, row)))
            bar.set_postfix(loss=f"{report.losses[-1]['loss']:.4f}")
            pending.clear()

    for it in range(state.info["unet_iter"], tc.unet_iters):
        torch.manual_seed(tc.seed * 1_000_003 + 500_000 + it)  # dropout, if the U-Net has any
        distributed.reseed(tc.seed * 1_000_003 + 500_000 + it)
        batch = training_batch(it, images, cfg)
        clean = clean_rows(batch)
        noise_share = distributed.loss_share(int(clean[rows].sum()), int(clean.sum())) if share else 0.0
        for g in opts["seg"].param_groups:
            g["lr"] = seg_lr(cfg, it)
        terms = step(distributed.take_rows(batch, rows).to(dev), noise_share, share)
        for opt in opts.values():
            opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        state.consistent = False  # until the step is counted
        for opt in opts.values():
            opt.step()
        if state.ema is not None:
            state.ema.update(model, it)
        snapshot = state.count_iteration(it)
        pending.append(torch.stack([terms[k].detach() for k in LOSS_TERMS]))
        if snapshot or len(pending) >= LOSS_READ_EVERY:
            read_losses()
        if snapshot:
            save()
        bar.update(1)
    read_losses()
    bar.close()
    model.eval()


@torch.no_grad()
def calibrate(model: DiffusionADModel, images: torch.Tensor, batch_size: int = 8, seed: int = 0,
              progress: bool = False) -> DiffusionADStats:
    """The thresholds on normal images (stored in the model): the largest image score and the
    99.9th percentile of the map pixels (as DRDC's FusionStats)."""
    det = DiffusionADDetector(model, next(model.parameters()).device, seed)
    out = distributed.split_pass(lambda part: det.predict(part, batch_size, progress), images, batch_size)
    model.stats = DiffusionADStats(
        image_threshold=float(out.pred_score.max()), pixel_threshold=pixel_threshold(out.anomaly_map),
        num_images=int(images.shape[0]), detector_seed=seed)
    return model.stats


def _report_fields(model: DiffusionADModel, report: DiffusionADReport) -> dict:
    return {"thresholds": {"image": model.stats.image_threshold, "pixel": model.stats.pixel_threshold}}


TRAINING = MethodTraining(
    method="diffusionad", make_model=DiffusionADModel, make_optimizers=make_optimizers,
    averaged=lambda model: model,  # both networks: the segmentation net learnt on this U-Net
    train_loop=_train_loop,
    calibrate=lambda model, images, report, batch_size, progress: calibrate(model, images, batch_size,
                                                                            progress=progress),
    new_report=DiffusionADReport,
    loss_summary=lambda last: {k: sum(r[k] for r in last) / max(1, len(last)) for k in LOSS_TERMS},
    report_fields=_report_fields, done_line=lambda model, report: "")


def train(data_root: str | Path, out: str | Path, cfg: ModelConfig, categories: Sequence[str] | None = None,
          progress: bool = True, log: Callable[[str], None] = print,
          device: str | torch.device = "cpu") -> tuple[DiffusionADModel, DiffusionADReport]:
    """Train DiffusionAD on ``device``; resumable (module doc); the checkpoint is written to ``out``."""
    return train_method(TRAINING, data_root, out, cfg, categories, progress, log, device)
