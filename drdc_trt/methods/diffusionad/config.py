"""DiffusionAD's config section (``diffusionad``), its checks and its part of the presets."""

from __future__ import annotations

from dataclasses import dataclass

from drdc_trt.settings import ANOMALY_SOURCES, MethodConfig, ModelConfig, register_method_config



@dataclass
class DiffusionADConfig:
    """DiffusionAD (Zhang et al., "Norm-guided One-step Denoising Diffusion for Anomaly
    Detection"), read when ``ModelConfig.method == "diffusionad"``; docs/diffusionad.md.

    The reconstruction U-Net is ``unet`` (``in_channels = 3``: no condition), on the schedule of
    ``diffusion`` (num_train_timesteps, beta_start, beta_end; its inpainting fields are DRDC's).
    Training reads ``train.seed, batch_size, unet_iters`` (iterations of the joint step),
    ``crop_size, checkpoint_every, calib_fraction, ema_decay`` (EMA of both networks, not in the
    official code); ``train.base_*``, ``train.unet_lr`` and ``train.weight_decay`` are DRDC's.
    Defaults are the official code's (args1.json, train.py) unless a comment says otherwise.
    """

    # Inference: x_a = q(x, t_a), x_b = q(x, t_b), one U-Net call each, combined with weight w.
    t_a: int = 200
    t_b: int = 400
    w: float = 1.0
    # Training timesteps, inclusive ranges: t_s ~ U{0..299}, t_b ~ U{300..999}.
    train_ts: tuple[int, ...] = (0, 299)
    train_tb: tuple[int, ...] = (300, 999)
    # Segmentation loss: focal_weight·Focal(α, γ) + smooth_l1_weight·SmoothL1 (DRAEM's focal form:
    # α(1 − p_t)^γ·BCE with the same α for both classes).
    focal_alpha: float = 0.5
    focal_gamma: float = 4.0
    focal_weight: float = 5.0
    smooth_l1_weight: float = 1.0
    # Synthetic anomalies: an image gets one with this probability (else it stays clean, mask 0);
    # blend x(1 − M) + (1 − β)·src·M + β·x·M with β ~ U[beta_range).
    anomaly_prob: float = 0.5
    beta_range: tuple[float, ...] = (0.2, 0.8)
    # The official code uses DTD, not available offline: procedural textures and the image's own
    # shuffled strips instead (drdc_trt/data/anomalies.py), equally likely.
    anomaly_sources: tuple[str, ...] = ANOMALY_SOURCES
    # Adam, one optimizer per network, no weight decay (official weight_decay 0).
    unet_lr: float = 1e-4
    seg_lr: float = 1e-5
    # Cosine annealing of the segmentation lr to 0 over this many iterations, then back up
    # (torch's CosineAnnealingLR; the official code steps T_max = 10 per iteration; ours is
    # the preset's run length, one decay per run). A fixed number, not the run length, so a
    # run extended with train.unet_iters follows the same schedule as one planned that long.
    seg_lr_t_max: int = 2000
    # Segmentation sub-network: DRAEM's discriminative encoder–decoder, stage widths
    # base·(1, 2, 4, 8, 8, 8) (official 64).
    seg_base_width: int = 64
    # Image score: mean of the top-k map pixels, k = 50 at 256² (official), scaled with the
    # image area (ModelConfig.top_k).
    top_k_at_256: int = 50


def _check_diffusionad(cfg: ModelConfig) -> None:
    """The DiffusionAD section's own ranges; with ``method = "diffusionad"`` also what it needs of
    the image size and the U-Net."""
    a, T = cfg.diffusionad, cfg.diffusion.num_train_timesteps
    if not 0 < a.t_a < a.t_b < T:
        raise ValueError(f"diffusionad.t_a={a.t_a}, t_b={a.t_b}: need 0 < t_a < t_b < num_train_timesteps={T}")
    for name in ("train_ts", "train_tb"):
        r = getattr(a, name)
        if len(r) != 2 or not 0 <= r[0] <= r[1] < T:
            raise ValueError(f"diffusionad.{name}={list(r)}: need [lo, hi] with 0 <= lo <= hi < {T}")
    if not a.w >= 0:
        raise ValueError(f"diffusionad.w={a.w} must be >= 0")
    if not 0 <= a.focal_alpha <= 1 or not a.focal_gamma >= 0:
        raise ValueError(f"diffusionad.focal_alpha={a.focal_alpha}, focal_gamma={a.focal_gamma}: need alpha in "
                         "[0, 1] and gamma >= 0")
    if not (a.focal_weight >= 0 and a.smooth_l1_weight >= 0):
        raise ValueError("diffusionad.focal_weight and smooth_l1_weight must be >= 0")
    if not 0 <= a.anomaly_prob <= 1:
        raise ValueError(f"diffusionad.anomaly_prob={a.anomaly_prob} must lie in [0, 1]")
    if len(a.beta_range) != 2 or not 0 <= a.beta_range[0] < a.beta_range[1] <= 1:
        raise ValueError(f"diffusionad.beta_range={list(a.beta_range)}: need [lo, hi) with 0 <= lo < hi <= 1")
    if not a.anomaly_sources or set(a.anomaly_sources) - set(ANOMALY_SOURCES):
        raise ValueError(f"diffusionad.anomaly_sources={list(a.anomaly_sources)}: choose from {ANOMALY_SOURCES}")
    if not (a.unet_lr > 0 and a.seg_lr > 0):
        raise ValueError(f"diffusionad.unet_lr={a.unet_lr}, seg_lr={a.seg_lr} must be positive")
    for name in ("seg_lr_t_max", "seg_base_width", "top_k_at_256"):
        if getattr(a, name) < 1:
            raise ValueError(f"diffusionad.{name}={getattr(a, name)} must be a positive integer")
    if cfg.method != "diffusionad":
        return
    if cfg.unet.in_channels != 3 or cfg.unet.out_channels != 3:
        raise ValueError(f"method='diffusionad': the U-Net takes x_t alone, unet.in_channels=3 and out_channels=3 "
                         f"(got {cfg.unet.in_channels}, {cfg.unet.out_channels})")
    side = cfg.train.crop_size or cfg.image_size
    if cfg.image_size % 32 or side % 32:
        raise ValueError(f"method='diffusionad': image_size={cfg.image_size} and train.crop_size="
                         f"{cfg.train.crop_size} must be multiples of 32 (the segmentation net pools 5 times)")


def diffusionad_preset(cfg: ModelConfig) -> ModelConfig:
    """A DRDC preset's sizes for DiffusionAD: its U-Net with 3 input channels, its batch size and
    iterations (no base model), whole images (the segmentation net pools 5 times), the cosine period
    of the segmentation lr = the run length, and the segmentation width scaled like the U-Net's
    (official 64 with the fast/paper U-Nets; 16 small, 8 tiny)."""
    cfg = ModelConfig.from_dict(cfg.to_dict())  # a copy: the caller's config stays as it was
    cfg.method = "diffusionad"
    cfg.unet.in_channels = 3
    cfg.train.base_epochs = 0
    cfg.train.crop_size = 0
    widths = {32: 16, 16: 8}  # U-Net model_channels of small / tiny → segmentation base width
    cfg.diffusionad.seg_base_width = widths.get(cfg.unet.model_channels, 64)
    cfg.diffusionad.seg_lr_t_max = max(1, cfg.train.unet_iters)
    return cfg.validate()


CONFIG = register_method_config(MethodConfig(
    owner="diffusionad",
    sections={"diffusionad": DiffusionADConfig},
    optional_elsewhere=True,  # came after DRDC: a config of another method written before may lack it
    check=_check_diffusionad,
    derived={"top_k": lambda cfg: max(1, round(cfg.diffusionad.top_k_at_256 * cfg.image_size ** 2 / 256 ** 2))},
    legacy={},
    preset=diffusionad_preset,
))
