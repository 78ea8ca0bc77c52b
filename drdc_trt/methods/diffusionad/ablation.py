"""``drdc ablate`` on a DiffusionAD checkpoint: its inference settings t_a, t_b and w, one at a time
(or as a grid), through the shared study of reconstruction methods (``drdc_trt.study``).
The thresholds do not enter the metrics (AUROC, AUPRO and F1Max sweep every threshold), so variants
are not re-calibrated."""

from __future__ import annotations

import time
from typing import Mapping

from drdc_trt.study import StudyMethod, carrying_config
from drdc_trt.methods.diffusionad.detector import DiffusionADBatch, DiffusionADDetector

FACTORS: dict[str, tuple] = {
    "diffusionad.t_a": (100, 200, 300),
    "diffusionad.t_b": (300, 400, 600),
    "diffusionad.w": (0.0, 0.5, 1.0, 2.0),
}
METHOD = "DiffusionAD"


def _pass(model, cfg, changes, images, calib, seed: int, device: str, batch_size: int, progress: bool):
    """One test pass with ``cfg``'s inference settings (the model reads t_a, t_b and w from its own
    config at call time, so it carries ``cfg`` for the pass)."""
    with carrying_config(model, cfg):
        det = DiffusionADDetector(model, device, seed)
        t0 = time.perf_counter()
        out = det.predict(images, batch_size=batch_size, progress=progress)
        return out, time.perf_counter() - t0, {}


def _describe(cfg, meta: Mapping) -> list[str]:
    a = cfg.diffusionad
    return [f"- model: `{meta.get('model', '')}` (DiffusionAD), image size {cfg.image_size}, U-Net width "
            f"{cfg.unet.model_channels} (channel_mult {list(cfg.unet.channel_mult)}), segmentation width "
            f"{a.seg_base_width}; trained {cfg.train.unet_iters} joint iterations (batch {cfg.train.batch_size}, "
            f"U-Net lr {a.unet_lr:g}, segmentation lr {a.seg_lr:g} on a cosine of {a.seg_lr_t_max}, EMA "
            f"{cfg.train.ema_decay:g})",
            f"- inference: t_a={a.t_a}, t_b={a.t_b}, w={a.w:g}, image score = mean of the top {cfg.top_k} "
            f"map pixels, detector seed {meta.get('seed', 0)}"]


STUDY = StudyMethod(
    key="diffusionad", name=METHOD, factors=FACTORS,
    fields=("pred_score", "pred_label", "anomaly_map", "pred_mask", "reconstruction"), batch_type=DiffusionADBatch,
    run_pass=_pass, default_setting=lambda cfg: (f"t_a={cfg.diffusionad.t_a}, t_b={cfg.diffusionad.t_b}, "
                                                 f"w={cfg.diffusionad.w:g}"),
    describe=_describe, factor_hint="diffusionad.t_a, .t_b or .w")
