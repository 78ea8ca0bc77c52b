"""``drdc demo``: the embedded default — synthetic data, a small model, metrics, an HTML report."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import torch

from .checkpoint import atomic_write_text
from drdc_trt.settings import ModelConfig
from .data import make_synthetic_dataset
from .evaluate import evaluate, report_html, save_results
from . import methods
from drdc_trt.train import train


def run_demo(out: Path, cfg: ModelConfig, progress: bool = True, log=print) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.train.seed)
    times = {}
    t0 = time.perf_counter()
    data = out / "data"
    if not (data / "brushed" / "test").is_dir() or not (data / "woven" / "test").is_dir():
        make_synthetic_dataset(data, size=128, seed=cfg.train.seed)
    times["data"] = time.perf_counter() - t0
    log(f"[1/3] synthetic dataset in {data}")

    t0 = time.perf_counter()
    log("[2/3] training (base model, then diffusion U-Net, then calibration)")
    model, _ = train(data, out / "model", cfg, progress=progress, log=log)
    times["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    log("[3/3] evaluating on the test split")
    detector = methods.get(cfg.method).entry("detector")(model, "cpu", seed=0, loop="torch")
    result = evaluate(detector, data, progress=progress)
    times["eval"] = time.perf_counter() - t0
    times["total"] = sum(times.values())
    meta = {"command": "drdc demo", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
            "seconds": times, "config": cfg.to_dict()}
    save_results(result, out, meta)
    notes = [f"Synthetic textured surfaces (2 categories, 3 defect types), image size {cfg.image_size}, "
             f"U-Net width {cfg.unet.model_channels}, {cfg.train.unet_iters} training iterations, "
             f"{cfg.diffusion.num_steps} DDIM steps from t0={cfg.diffusion.t0}.",
             "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items())]
    atomic_write_text(out / "report.html", report_html(result, "drdc demo", model.stats, notes))
    log(result.markdown())
    log(f"report: {out / 'report.html'}  ({times['total']:.0f} s in all)")
    return {"rows": result.rows, "seconds": times}
