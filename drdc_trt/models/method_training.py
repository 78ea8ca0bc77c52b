"""The training run of the reconstruction methods (DiffusionAD, GLAD): one resumable skeleton.

Each method supplies what differs (``MethodTraining``): its model, optimizers, the part the EMA
averages, the iteration loop, the calibration on the held-out normal images and the fields of
``train_report.json``. The run itself is the same for both and follows DRDC's
(drdc_trt.train): seed, training split, one snapshot folder (drdc_trt.methods.drdc.train.TrainState) resumed
when present, a snapshot on Ctrl-C, the averaged weights for inference, calibration, then the
checkpoint and its report written atomically.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..checkpoint import atomic_write_text, save_checkpoint
from drdc_trt import distributed
from drdc_trt.settings import ModelConfig
from ..ema import EMA
from drdc_trt.training import TrainState, remove_stale_temps, snapshot_on_interrupt, training_split


@dataclass(frozen=True)
class MethodTraining:
    """What one method's training run has of its own."""

    method: str                                    # config.method it trains; the snapshot's stage
    make_model: Callable[[ModelConfig], torch.nn.Module]
    make_optimizers: Callable[[Any], dict[str, torch.optim.Optimizer]]
    averaged: Callable[[Any], torch.nn.Module]     # the networks the EMA averages
    # (model, images, cfg, state, opts, report, progress, save): iterations from state.info["unet_iter"]
    train_loop: Callable[..., None]
    # (model, calibration images, report, batch size, progress): stores the thresholds in the model
    calibrate: Callable[[Any, torch.Tensor, Any, int, bool], None]
    new_report: Callable[[], Any]                  # with .losses, .seconds, .resumed_from
    loss_summary: Callable[[list], Any]            # the mean of the last 50 losses, as reported
    report_fields: Callable[[Any, Any], dict]      # (model, report): the report's closing fields
    done_line: Callable[[Any, Any], str]           # (model, report): said after "checkpoint written"


def train_method(spec: MethodTraining, data_root: str | Path, out: str | Path, cfg: ModelConfig,
                 categories: Sequence[str] | None = None, progress: bool = True,
                 log: Callable[[str], None] = print, device: str | torch.device = "cpu"):
    """Train ``spec.method`` on ``device``; resumable; the checkpoint is written to ``out``.
    Returns (model, report)."""
    cfg.validate()
    if cfg.method != spec.method:
        raise ValueError(f"config method={cfg.method!r}: this trains {spec.method!r} "
                         "(drdc_trt.methods.drdc.train.train: DRDC)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tc = cfg.train
    torch.manual_seed(tc.seed)
    report = spec.new_report()
    t_start = time.perf_counter()
    images, calib = training_split(data_root, cfg, categories, progress, log)

    model = spec.make_model(cfg).to(device)
    opts = spec.make_optimizers(model)
    state = TrainState(out, cfg)
    state.info["stage"] = spec.method
    if tc.ema_decay > 0:
        state.ema = EMA(spec.averaged(model), tc.ema_decay)
    if state.load(model, opts):
        report.resumed_from = dict(state.info)
        log(f"resuming from {state.dir}: iteration {state.info['unet_iter']}/{tc.unet_iters}")

    def save() -> None:
        state.save(model, opts)

    with snapshot_on_interrupt(state, save, log):
        t0 = time.perf_counter()
        if state.info["unet_iter"] < tc.unet_iters:
            spec.train_loop(model, images, cfg, state, opts, report, progress, save)
        report.seconds["train"] = time.perf_counter() - t0
    state.check_ranks_agree(model)
    if state.ema is not None:  # inference uses the averaged weights
        state.ema.copy_to(spec.averaged(model))
    model.eval()
    remove_stale_temps(out)
    t0 = time.perf_counter()
    spec.calibrate(model, calib, report, max(1, tc.batch_size // 2), progress)
    report.seconds["calibration"] = time.perf_counter() - t0
    report.seconds["total"] = time.perf_counter() - t_start
    if not distributed.is_main():  # rank 0 writes the checkpoint
        return model, report
    save_checkpoint(model, out)
    atomic_write_text(out / "train_report.json", json.dumps({
        "method": spec.method, "loss_first": report.losses[:1],
        "loss_last50_mean": spec.loss_summary(report.losses[-50:]), "seconds": report.seconds,
        "resumed_from": report.resumed_from, **spec.report_fields(model, report),
    }, indent=2))
    log(f"checkpoint written to {out} ({report.seconds['total']:.0f} s){spec.done_line(model, report)}")
    return model, report
