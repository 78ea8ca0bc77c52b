"""``drdc ablate`` on a GLAD checkpoint: its adaptive-denoising settings one at a time, through the
shared study of reconstruction methods (``drdc_trt.study``).

τ is never set from test labels: each variant re-chooses it as training does (``train.choose_tau``):
``glad.tau_fixed`` under the fixed rule (the default), or, under the quantile rule and for every
``glad.tau_quantile`` variant, that quantile of the held-out normal training images' largest
trigger score with τ = +∞. ``glad.tau`` sets τ itself and is meant for the two bounds: +inf (no row
triggers: every image falls back to x0_in at the first step below min_step, then goes on or stops as
``glad.fallback`` says) and -inf (every image triggers at its first step, then plain DDIM to the
end). The rows carry τ, the mean number of U-Net steps an image took and the share of test images
that triggered.
"""

from __future__ import annotations

import math
import time
from typing import Any, Mapping

from drdc_trt.study import StudyMethod, carrying_config
from drdc_trt.methods.glad.detector import GLADBatch, GLADDetector
from drdc_trt.methods.glad.train import choose_tau

FACTORS: dict[str, tuple] = {
    "glad.tau_rule": ("fixed", "quantile"),
    "glad.tau_quantile": (0.5, 0.75, 0.95, 0.99),
    "glad.tau": (math.inf, -math.inf),
    "glad.t0": (500, 800),
    "glad.min_step": (250, 450),
    "glad.fallback": ("continue", "stop"),
    "glad.saff_weight": ("sigmoid", "minmax"),
}
METHOD = "GLAD"
TAU = "glad.tau"  # a pseudo factor: τ itself, not a config field


def _pass(model, cfg, changes: Mapping[str, Any], images, calib, seed: int, device: str, batch_size: int,
          progress: bool) -> tuple[GLADBatch, float, dict]:
    """One test pass with ``cfg``'s settings (the model reads them from its own config at call time,
    so it carries ``cfg`` for the pass) and the variant's τ (module doc)."""
    with carrying_config(model, cfg):
        if TAU in changes:
            tau = float(changes[TAU])
        elif changes:  # a variant that asks for a quantile is calibrated by the quantile rule
            rule = "quantile" if "glad.tau_quantile" in changes else None
            tau = choose_tau(model, calib, batch_size, seed, progress, rule)[0]
        else:
            tau = model.stats.tau
        det = GLADDetector(model, device, seed, tau=tau)
        t0 = time.perf_counter()
        out = det.predict(images, batch_size=batch_size, progress=progress)
        s = time.perf_counter() - t0
    rep = out.step_report(cfg.glad.num_steps)
    info = {"tau": tau, "mean_steps": rep["mean_steps"], "triggered_pct": 100 * rep["triggered"] / max(1, len(out)),
            "steps_histogram": rep["steps_histogram"], "unet_rows_saved": rep["unet_rows_saved"],
            "unet_rows_full": rep["unet_rows_full"]}
    return out, s, info


def _describe(cfg, meta: Mapping) -> list[str]:
    g = cfg.glad
    return [f"- model: `{meta.get('model', '')}` (GLAD), image size {cfg.image_size}, U-Net width "
            f"{cfg.unet.model_channels} (channel_mult {list(cfg.unet.channel_mult)}, "
            f"{'conditioned' if g.conditioned else 'unconditioned'}); trained {cfg.train.unet_iters} iterations "
            f"(batch {cfg.train.batch_size}, {f'{cfg.train.crop_size}² crops' if cfg.train.crop_size else 'whole images'}, lr {g.lr:g}, "
            f"{f'gradient norm clipped at {g.grad_clip:g}' if g.grad_clip > 0 else 'no gradient clipping'}, EMA {cfg.train.ema_decay:g}, "
            f"synthetic anomalies with p = {g.anomaly_prob:g})",
            f"- inference: t0={g.t0}, {g.num_steps} DDIM steps, min_step={g.min_step} (fallback: {g.fallback}), "
            f"SAFF weight {g.saff_weight}, τ = {_tau_words(g)} (trigger score: top-{g.trigger_top_k} mean of A in "
            f"backbone stage {g.trigger_stage}), map stages {list(g.map_stages)}, blur σ {cfg.glad_blur_sigma:.3g} px, "
            f"image score = mean of the top {cfg.glad_top_k} map pixels, detector seed {meta.get('seed', 0)}"]


def _tau_words(g) -> str:
    if g.tau_rule == "fixed":
        return f"{g.tau_fixed:g} (fixed)"
    return f"the {g.tau_quantile:g} quantile of held-out normal images' largest trigger score"


def _default_setting(cfg) -> str:
    g = cfg.glad
    tau = f"tau_fixed={g.tau_fixed:g}" if g.tau_rule == "fixed" else f"tau_quantile={g.tau_quantile:g}"
    return (f"t0={g.t0}, min_step={g.min_step}, {tau}, {g.num_steps} steps, "
            f"fallback={g.fallback}, saff_weight={g.saff_weight}")


STUDY = StudyMethod(
    key="glad", name=METHOD, factors=FACTORS,
    fields=tuple(f for f in GLADBatch.__dataclass_fields__), batch_type=GLADBatch, run_pass=_pass,
    default_setting=_default_setting, describe=_describe, extra_columns=("tau", "mean_steps", "triggered_pct"),
    factor_hint="glad.tau_rule, glad.tau_fixed, glad.tau_quantile, glad.tau (τ itself: inf / -inf bound the trigger), glad.t0, glad.min_step, "
                "glad.num_steps, glad.fallback or glad.saff_weight",
    pseudo_factors=(TAU,))
