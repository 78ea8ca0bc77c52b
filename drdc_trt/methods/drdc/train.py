"""DRDC's training: the base model, then the U-Net, then the fusion statistics.

Plain PyTorch, AdamW, fixed seeds. Progress is kept in ``<out>/train_state/``
(weights, optimizer state, counters — safetensors + JSON, replaced together as one
snapshot, see TrainState) so an interrupted or killed run resumes where it stopped;
every epoch / iteration is seeded from its index, so a resumed run follows the same
trajectory as an uninterrupted one. Running again with a larger ``train.unet_iters`` or
``train.base_epochs`` extends a run. The finished checkpoint is written to ``<out>/``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from drdc_trt import distributed
from drdc_trt.methods.drdc import guard, tuning
from drdc_trt.checkpoint import atomic_write_text, save_checkpoint
from drdc_trt.settings import ModelConfig
from drdc_trt.schedule import Schedule, min_snr_weight
from drdc_trt.methods.drdc.masks import random_known_masks
from drdc_trt.ema import EMA
from drdc_trt.feature_cache import cached_features
from drdc_trt.methods.drdc.model import DRDCModel
from drdc_trt.methods.drdc.pipeline import Detector
from drdc_trt.training import bar as progress_bar
from drdc_trt.training import (
    LOSS_READ_EVERY,
    TrainReport,
    TrainState,
    remove_stale_temps,
    recalibrate_checkpoint,
    snapshot_on_interrupt,
    training_split,
)


def _train_base(model, feats, cfg, state, opts, report, progress, save) -> None:
    """The base model's epochs. Distributed: every rank draws the epoch's order and takes its rows
    of each batch (the last one may split unevenly: the loss share weights it); the feature jitter
    of every row is the one a single process draws, the dropout masks are each rank's own."""
    tc = cfg.train
    opt = opts["base"]
    model.base.transformer.train()
    transformer = distributed.data_parallel(model.base.transformer)
    bar = progress_bar(tc.base_epochs, "base model", progress, state.info["base_epoch"])
    for epoch in range(state.info["base_epoch"], tc.base_epochs):
        torch.manual_seed(tc.seed * 1_000_003 + epoch)
        order = torch.randperm(len(feats))
        shared = distributed.shared_generators(feats.device)  # the jitter's draws (None: one process)
        distributed.reseed(tc.seed * 1_000_003 + epoch)  # the dropout masks of this rank's rows
        total = 0.0
        for i in range(0, len(feats), tc.batch_size):
            batch = order[i:i + tc.batch_size]
            rows, share = distributed.my_rows(len(batch))
            f = feats[batch[rows]]
            jitter = {} if shared is None else {"jitter_rows": (shared, rows, len(batch))}
            loss = F.mse_loss(transformer(f, **jitter), f) * share
            opt.zero_grad(set_to_none=True)
            loss.backward()
            state.consistent = False  # until the epoch is counted
            opt.step()
            total += float(loss.detach()) * len(batch)
        report.base_losses.append(distributed.average(total) / len(feats))
        state.info["base_epoch"] = epoch + 1
        state.consistent = True
        save()
        bar.set_postfix(loss=f"{report.base_losses[-1]:.4f}")
        bar.update(1)
    bar.close()
    model.base.transformer.eval()


def unet_batch(images: torch.Tensor, cfg: ModelConfig, schedule_ab: torch.Tensor, gen: torch.Generator):
    """One training batch: (U-Net input N×6×s×s, timesteps N, target N×3×s×s)."""
    d, tc = cfg.diffusion, cfg.train
    n = images.shape[0]
    x = images
    crop = tc.crop_size or cfg.image_size
    if crop < cfg.image_size:
        ys = torch.randint(0, cfg.image_size - crop + 1, (n,), generator=gen)
        xs = torch.randint(0, cfg.image_size - crop + 1, (n,), generator=gen)
        x = torch.stack([img[:, y:y + crop, xx:xx + crop] for img, y, xx in zip(images, ys.tolist(), xs.tolist())])
    grids = [g for g in d.train_grid_sizes if crop % g == 0 and g < crop] or [g for g in d.grid_sizes if crop % g == 0]
    m = random_known_masks(n, crop, grids, d.train_num_sets, gen)
    t = torch.randint(0, d.train_t_max, (n,), generator=gen)
    ab = schedule_ab[t].view(n, 1, 1, 1)
    eps = torch.randn(x.shape, generator=gen)
    fill = torch.randn(x.shape, generator=gen)
    c = m * x + (1 - m) * fill
    if d.objective == "eps":
        xt = ab.sqrt() * x + (1 - ab).sqrt() * eps
        target = eps
    else:  # "aligned": start from the condition, target whose implied x̂0 is the clean image
        xt = ab.sqrt() * c + (1 - ab).sqrt() * eps
        target = (xt - ab.sqrt() * x) / (1 - ab).sqrt()
    return torch.cat([xt, c], 1), t.float(), target


def _unet_batch_for(it: int, images: torch.Tensor, cfg: ModelConfig, ab: torch.Tensor, pin: bool,
                    rows: slice = slice(None)):
    """Iteration ``it``'s batch, from its own generator (so batches can be built ahead, in any
    thread, and a resumed run draws the same ones); ``rows`` of it (a rank's part)."""
    gen = torch.Generator().manual_seed(cfg.train.seed * 7_919 + it)
    idx = torch.randint(0, len(images), (cfg.train.batch_size,), generator=gen)
    batch = distributed.take_rows(unet_batch(images[idx], cfg, ab, gen), rows)
    return tuple(v.pin_memory() for v in batch) if pin else batch


def _train_unet(model, images, cfg, state, opts, report, progress, save) -> None:
    """The U-Net loop. The next batch is built on the CPU in a worker thread while the device
    trains on the current one (pinned memory, asynchronous copies on CUDA), and the loss is read
    back every LOSS_READ_EVERY iterations and at snapshots, not at every step. Distributed: each
    rank builds its rows of the global batch, the losses read are the global batch's."""
    from concurrent.futures import ThreadPoolExecutor

    tc = cfg.train
    opt = opts["unet"]
    unet = distributed.data_parallel(model.unet)
    rows, share = distributed.my_rows(tc.batch_size)
    schedule_ab = Schedule.from_config(cfg.diffusion).alphas_cumprod
    ab = torch.from_numpy(schedule_ab).float()
    dev = next(model.unet.parameters()).device
    weight = torch.from_numpy(min_snr_weight(schedule_ab, cfg.diffusion.min_snr_gamma)).float().to(dev)
    pin = dev.type == "cuda"
    model.unet.train()
    bar = progress_bar(tc.unet_iters, "diffusion U-Net", progress, state.info["unet_iter"])
    running, pending = None, []
    start = state.info["unet_iter"]

    def read_losses() -> None:
        nonlocal running
        if not pending:
            return
        for lv in distributed.average(torch.stack(pending)).tolist():  # one wait for the device
            running = lv if running is None else 0.98 * running + 0.02 * lv
            report.unet_losses.append(lv)
        bar.set_postfix(loss=f"{running:.4f}")
        pending.clear()

    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = pool.submit(_unet_batch_for, start, images, cfg, ab, pin, rows) if start < tc.unet_iters else None
        for it in range(start, tc.unet_iters):
            torch.manual_seed(tc.seed * 1_000_003 + 500_000 + it)
            distributed.reseed(tc.seed * 1_000_003 + 500_000 + it)
            inp, t, target = (v.to(dev, non_blocking=pin) for v in ahead.result())
            if it + 1 < tc.unet_iters:
                ahead = pool.submit(_unet_batch_for, it + 1, images, cfg, ab, pin, rows)
            per_sample = (unet(inp, t) - target).pow(2).mean((1, 2, 3))
            loss = (weight[t.long()] * per_sample).mean() * share
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.unet.parameters(), 1.0)
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
def calibrate(model: DRDCModel, images: torch.Tensor, batch_size: int = 8, progress: bool = False,
              loop: str = "torch", device: str | torch.device | None = None,
              log: Callable[[str], None] = print) -> dict | None:
    """Measure the normalisation statistics on normal images and store them in the model (one
    loop pass: drdc_trt.methods.drdc.tuning.statistics). With ``fusion.select = "synthetic"`` first choose λ
    and the heat normalisation on those images with synthetic anomalies pasted in
    (``drdc_trt.methods.drdc.tuning.select``), store them in the model's config and return the selection table.
    With ``fusion.guard`` and λ > 0 the reliability guard (``guard.evaluate``) then checks the
    diffusion map; when it fails λ = 0 is stored. Its record is the returned table's ``guard``."""
    device = device if device is not None else next(model.parameters()).device
    f = model.cfg.fusion
    det = Detector.from_model(model, device=device, loop=loop)
    raw = tuning.raw_maps(det, images, batch_size, progress)
    selection = None
    if f.select == "synthetic":
        selection = tuning.select(model.cfg, det, images, batch_size, good_raw=raw)
        f.heat_norm, f.lam = selection["heat_norm"], selection["lam"]
        log(f"chosen on {len(images)} held-out normal images with synthetic anomalies: "
            f"heat_norm={f.heat_norm}, λ={f.lam:g}")
    if f.guard and f.lam > 0:
        record = guard.evaluate(model.cfg, images, raw, f.heat_norm, f.lam,
                                selection["rows"] if selection is not None else None)
        line = guard.warning(record)
        if line:
            log(line)
        f.lam = record["lam"]
        selection = {**(selection or {}), "guard": record}
    model.stats, _ = tuning.statistics(model.cfg, images, raw, f.heat_norm, f.lam)
    return selection


# Settings that change inference only: a trained model may be re-calibrated with other values.
INFERENCE_KEYS = ("diffusion.t0", "diffusion.num_steps", "diffusion.num_sets", "diffusion.grid_sizes",
                  "diffusion.margin", "diffusion.clip_x0", "fusion.pool_factors", "fusion.mean_filter",
                  "fusion.lam", "fusion.heat_norm", "fusion.diff_norm", "fusion.select",
                  "fusion.score_window_at_224", "fusion.guard", "fusion.synthetic_families")


def recalibrate(model_dir: str | Path, data_root: str | Path, out: str | Path, changes: dict,
                categories: Sequence[str] | None = None, progress: bool = True,
                log: Callable[[str], None] = print, device: str | torch.device = "cpu") -> DRDCModel:
    """A trained checkpoint with other inference settings: the statistics (and λ, with
    heat normalisation, with ``fusion.select = "synthetic"``) measured again on the held-out normal images the
    training split set aside; the weights are copied unchanged. Writes a checkpoint to ``out``."""
    return recalibrate_checkpoint(model_dir, data_root, out, changes, "drdc", INFERENCE_KEYS, calibrate, categories,
                                  progress, log, device)


def train(data_root: str | Path, out: str | Path, cfg: ModelConfig, categories: Sequence[str] | None = None,
          progress: bool = True, log: Callable[[str], None] = print,
          device: str | torch.device = "cpu") -> tuple[DRDCModel, TrainReport]:
    """Train on ``device`` (the data stay on the CPU; batches travel); resumable, see the module doc."""
    cfg.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tc = cfg.train
    torch.manual_seed(tc.seed)
    report = TrainReport()
    t_start = time.perf_counter()
    images, calib = training_split(data_root, cfg, categories, progress, log)

    model = DRDCModel(cfg).to(device)
    opts = {
        "base": torch.optim.AdamW(model.base.transformer.parameters(), lr=tc.base_lr, weight_decay=tc.weight_decay),
        "unet": torch.optim.AdamW(model.unet.parameters(), lr=tc.unet_lr, weight_decay=tc.weight_decay),
    }
    state = TrainState(out, cfg)
    if tc.ema_decay > 0:
        state.ema = EMA(model.unet, tc.ema_decay)
    if state.load(model, opts):
        report.resumed_from = dict(state.info)
        log(f"resuming from {state.dir}: base epoch {state.info['base_epoch']}/{tc.base_epochs}, "
            f"U-Net iteration {state.info['unet_iter']}/{tc.unet_iters}")

    def save() -> None:
        state.save(model, opts)

    with snapshot_on_interrupt(state, save, log):
        t0 = time.perf_counter()
        if state.info["base_epoch"] < tc.base_epochs:  # the ranks share the backbone's pass, image by image
            feats = distributed.split_pass(lambda part: cached_features(model.base.backbone, part, log=log), images, 1)
            _train_base(model, feats, cfg, state, opts, report, progress, save)
        report.seconds["base"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if state.info["unet_iter"] < tc.unet_iters:
            _train_unet(model, images, cfg, state, opts, report, progress, save)
        report.seconds["unet"] = time.perf_counter() - t0
    state.check_ranks_agree(model)
    if state.ema is not None:  # inference and export use the averaged U-Net
        state.ema.copy_to(model.unet)
    t0 = time.perf_counter()
    model.eval()
    remove_stale_temps(out)
    selection = calibrate(model, calib, batch_size=max(1, tc.batch_size // 2), progress=progress, log=log)
    report.seconds["calibration"] = time.perf_counter() - t0
    report.seconds["total"] = time.perf_counter() - t_start
    if not distributed.is_main():  # rank 0 writes the checkpoint
        return model, report
    save_checkpoint(model, out)
    atomic_write_text(out / "train_report.json", json.dumps({
        "base_losses": report.base_losses, "unet_loss_first": report.unet_losses[:1],
        "unet_loss_last50_mean": (sum(report.unet_losses[-50:]) / max(1, len(report.unet_losses[-50:]))),
        "seconds": report.seconds, "resumed_from": report.resumed_from, "selection": selection,
    }, indent=2))
    log(f"checkpoint written to {out} ({report.seconds['total']:.0f} s)")
    return model, report
