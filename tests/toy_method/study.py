"""``drdc ablate`` on a toy model: its blur and top-k varied without retraining."""

from __future__ import annotations

import time

from drdc_trt.study import StudyMethod, carrying_config

from .detector import ToyDetector
from .model import ToyBatch


def _pass(model, cfg, changes, images, calib, seed, device, batch_size, progress):
    with carrying_config(model, cfg):
        t0 = time.perf_counter()
        out = ToyDetector(model, device).predict(images, batch_size=batch_size)
        return out, time.perf_counter() - t0, {}


STUDY = StudyMethod(
    key="toy", name="Toy", factors={"toy.blur": (1, 5), "toy.top_k": (4,)},
    fields=("pred_score", "pred_label", "anomaly_map", "pred_mask"), batch_type=ToyBatch, run_pass=_pass,
    default_setting=lambda cfg: f"blur={cfg.toy.blur}, top_k={cfg.toy.top_k}",
    describe=lambda cfg, meta: [f"- model: `{meta.get('model', '')}` (toy), image size {cfg.image_size}"],
    factor_hint="toy.blur or toy.top_k")
