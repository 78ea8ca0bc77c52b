"""GLAD training: the U-Net on the anomaly-aware target, then τ and the thresholds on held-out
normal images.

Per iteration: a batch of normal images x_n (random crops of ``train.crop_size`` if set), each
given a synthetic anomaly with probability ``glad.anomaly_prob`` (x_a; x_a = x_n otherwise;
drdc_trt.data.anomalies.anomaly_batch with GLAD's threshold, β range and sources), t ~ U{0..T−1},
ε ~ N(0, I); (x_t, ε*) from target.anomaly_aware_target; loss MSE(U(x_t, t), ε*). Adam, constant lr,
the gradient norm clipped at ``glad.grad_clip`` (1.0, as the authors; 0: not clipped).

Resumable exactly like DRDC's training (the run: drdc_trt.models.method_training, shared with
the other reconstruction method; drdc_trt.methods.drdc.train.TrainState: one snapshot of weights, the
optimizer, the EMA and the counter ``unet_iter``); every iteration's batch, anomalies, timesteps
and noise come from a generator seeded by its index, so a resumed run ends with the weights of an
uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from drdc_trt import distributed
from drdc_trt.settings import ModelConfig
from drdc_trt.data.anomalies import anomaly_batch
from drdc_trt.models.thresholds import pixel_threshold
from drdc_trt.training import LOSS_READ_EVERY, recalibrate_checkpoint
from drdc_trt.training import bar as progress_bar
from drdc_trt.models.method_training import MethodTraining, train_method
from drdc_trt.methods.glad.detector import GLADDetector
from drdc_trt.methods.glad.model import GLADModel, GLADStats
from drdc_trt.methods.glad.target import anomaly_aware_target


@dataclass
class GLADReport:
    losses: list[float] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    resumed_from: dict | None = None
    calibration: dict = field(default_factory=dict)


@dataclass
class Batch:
    x_t: torch.Tensor     # B×3×s×s
    t: torch.Tensor       # B
    target: torch.Tensor  # B×3×s×s, ε*
    mask: torch.Tensor    # B×1×s×s, the synthetic anomalies (0: a clean image)
    x_a: torch.Tensor     # B×3×s×s, the images with their anomalies (the condition, glad.conditioned)

    def to(self, device) -> "Batch":
        return Batch(*(v.to(device) for v in (self.x_t, self.t, self.target, self.mask, self.x_a)))


def training_batch(it: int, images: torch.Tensor, cfg: ModelConfig, alphas_cumprod: torch.Tensor) -> Batch:
    """Iteration ``it``'s batch, from its own generator (a resumed run draws the same ones)."""
    tc, g = cfg.train, cfg.glad
    gen = torch.Generator().manual_seed(tc.seed * 7_919 + it)
    n = tc.batch_size
    x = images[torch.randint(0, len(images), (n,), generator=gen)]
    crop = tc.crop_size or cfg.image_size
    if crop < cfg.image_size:
        ys = torch.randint(0, cfg.image_size - crop + 1, (n,), generator=gen).tolist()
        xs = torch.randint(0, cfg.image_size - crop + 1, (n,), generator=gen).tolist()
        x = torch.stack([img[:, y:y + crop, xx:xx + crop] for img, y, xx in zip(x, ys, xs)])
    x_a, mask, _ = anomaly_batch(x, gen, g.anomaly_prob, tuple(g.beta_range), tuple(g.anomaly_sources),
                                 g.anomaly_threshold)
    T = cfg.diffusion.num_train_timesteps
    t = torch.randint(0, T, (n,), generator=gen)
    noise = torch.randn(x.shape, generator=gen)
    x_t, target = anomaly_aware_target(x, x_a, t, alphas_cumprod[t], noise, T)
    return Batch(x_t, t, target, mask, x_a)


def _train_loop(model, images, cfg, state, opts, report, progress, save) -> None:
    tc, opt = cfg.train, opts["unet"]
    dev = next(model.unet.parameters()).device
    eps = distributed.data_parallel(model.unet, model.eps)  # distributed: this rank's rows, weighted by its share
    rows, share = distributed.my_rows(tc.batch_size)
    ab = model.alphas_cumprod.cpu()
    model.unet.train()
    bar = progress_bar(tc.unet_iters, "GLAD U-Net", progress, state.info["unet_iter"])
    pending: list[torch.Tensor] = []

    def read_losses() -> None:
        if pending:
            report.losses += distributed.average(torch.stack(pending)).tolist()  # one wait for the device
            bar.set_postfix(loss=f"{report.losses[-1]:.4f}")
            pending.clear()

    for it in range(state.info["unet_iter"], tc.unet_iters):
        torch.manual_seed(tc.seed * 1_000_003 + 500_000 + it)  # dropout, if the U-Net has any
        distributed.reseed(tc.seed * 1_000_003 + 500_000 + it)
        b = distributed.take_rows(training_batch(it, images, cfg, ab), rows).to(dev)
        loss = (eps(b.x_t, b.t, b.x_a) - b.target).pow(2).mean() * share
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.glad.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.unet.parameters(), cfg.glad.grad_clip)
        state.consistent = False  # until the step is counted
        opt.step()
        if state.ema is not None:
            state.ema.update(model.unet, it)
        snapshot = state.count_iteration(it)
        pending.append(loss.detach())
        if snapshot or len(pending) >= LOSS_READ_EVERY:
            read_losses()
        if snapshot:
            save()
        bar.update(1)
    read_losses()
    bar.close()
    model.unet.eval()


@torch.no_grad()
def choose_tau(model: GLADModel, images: torch.Tensor, batch_size: int = 8, seed: int = 0, progress: bool = False,
               rule: str | None = None) -> tuple[float, list[float] | None]:
    """τ by ``rule`` (the config's ``glad.tau_rule`` when None): "fixed" is ``glad.tau_fixed``;
    "quantile" runs the loop on the normal ``images`` with τ = +inf (no row triggers; each falls
    back at the first step below min_step) and takes the ``glad.tau_quantile`` quantile of each
    image's largest trigger score. Returns τ and those scores (None for "fixed")."""
    g = model.cfg.glad
    if (rule or g.tau_rule) == "fixed":
        return float(g.tau_fixed), None
    dev = next(model.parameters()).device
    det = GLADDetector(model, dev, seed, tau=float("inf"))
    probe = distributed.split_pass(lambda part: det.predict(part, batch_size, progress), images, batch_size)
    return float(torch.quantile(probe.max_score.double(), g.tau_quantile)), probe.max_score.tolist()


@torch.no_grad()
def calibrate(model: GLADModel, images: torch.Tensor, batch_size: int = 8, seed: int = 0,
              progress: bool = False) -> dict:
    """τ (``choose_tau``), then the thresholds, on normal images (stored in the model): the loop
    with that τ, the image threshold the largest image score, the pixel threshold the 99.9th
    percentile of the map pixels (as DRDC's FusionStats). Returns the step report of that pass."""
    dev = next(model.parameters()).device
    tau, normal_max = choose_tau(model, images, batch_size, seed, progress)
    model.stats = GLADStats(tau=tau, num_images=int(images.shape[0]), detector_seed=seed)
    det = GLADDetector(model, dev, seed)
    out = distributed.split_pass(lambda part: det.predict(part, batch_size, progress), images, batch_size)
    model.stats.image_threshold = float(out.pred_score.max())
    model.stats.pixel_threshold = pixel_threshold(out.anomaly_map)
    extra = {} if normal_max is None else {"normal_max_scores": normal_max}
    return {"tau": tau, "tau_rule": model.cfg.glad.tau_rule, **extra, **out.step_report(model.cfg.glad.num_steps)}


def _calibrate(model: GLADModel, images: torch.Tensor, report: GLADReport, batch_size: int,
               progress: bool) -> None:
    report.calibration = calibrate(model, images, batch_size, progress=progress)


def _report_fields(model: GLADModel, report: GLADReport) -> dict:
    return {"calibration": report.calibration,
            "thresholds": {"tau": model.stats.tau, "image": model.stats.image_threshold,
                           "pixel": model.stats.pixel_threshold}}


TRAINING = MethodTraining(
    method="glad", make_model=GLADModel,
    make_optimizers=lambda model: {"unet": torch.optim.Adam(model.unet.parameters(), lr=model.cfg.glad.lr)},
    averaged=lambda model: model.unet, train_loop=_train_loop, calibrate=_calibrate, new_report=GLADReport,
    loss_summary=lambda last: sum(last) / max(1, len(last)), report_fields=_report_fields,
    done_line=lambda model, report: (f"; τ = {model.stats.tau:.4g}, mean steps on the calibration images "
                                     f"{report.calibration['mean_steps']:.1f}"))


# Settings that change inference only: ``drdc calibrate --set`` may give a trained model other values.
INFERENCE_KEYS = ("glad.tau_rule", "glad.tau_fixed", "glad.tau_quantile", "glad.t0", "glad.num_steps",
                  "glad.min_step", "glad.fallback", "glad.saff_weight", "glad.trigger_top_k", "glad.trigger_stage",
                  "glad.map_stages", "glad.blur_sigma_at_256", "glad.top_k_at_256")


def recalibrate(model_dir: str | Path, data_root: str | Path, out: str | Path, changes: dict,
                categories: Sequence[str] | None = None, progress: bool = True,
                log: Callable[[str], None] = print, device: str | torch.device = "cpu") -> GLADModel:
    """A trained GLAD checkpoint with other inference settings (e.g. ``glad.tau_rule``): τ and the
    thresholds chosen again on the held-out normal images (``calibrate``); the weights unchanged."""
    def again(model, calib, batch_size, progress, log):  # calibrate, and say which τ it chose
        report = calibrate(model, calib, batch_size, progress=progress)
        log(f"τ = {model.stats.tau:.4g} ({model.cfg.glad.tau_rule}), mean steps on the calibration images "
            f"{report['mean_steps']:.1f}")
        return report

    return recalibrate_checkpoint(model_dir, data_root, out, changes, "glad", INFERENCE_KEYS, again, categories,
                                  progress, log, device)


def train(data_root: str | Path, out: str | Path, cfg: ModelConfig, categories: Sequence[str] | None = None,
          progress: bool = True, log: Callable[[str], None] = print,
          device: str | torch.device = "cpu") -> tuple[GLADModel, GLADReport]:
    """Train GLAD on ``device``; resumable (module doc); the checkpoint is written to ``out``."""
    return train_method(TRAINING, data_root, out, cfg, categories, progress, log, device)
