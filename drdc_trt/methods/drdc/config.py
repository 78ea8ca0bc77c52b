"""DRDC's config sections (``transformer``: the base model; ``fusion``: the two maps' blend), its
checks of those and of the diffusion section's inpainting fields, and its part of the presets."""

from __future__ import annotations

from dataclasses import dataclass

from drdc_trt.settings import MethodConfig, ModelConfig, positive, register_method_config

HEAT_NORMS = ("none", "image_std", "local_std")
DIFF_NORMS = ("global", "pixel")
# Synthetic-anomaly families of the label-free selection (tuning.py): "patches" (Perlin masks of the
# image's own shuffled pixels, data/anomalies.py), "small" (spots, thin scratches, local blur of
# 0.05-1 % of the image, data/small_defects.py).
SYNTHETIC_FAMILIES = ("patches", "small")


# Constants of the contrast normalisation (drdc_trt/contrast.py; the runtime's numpy copy reads them here).
MAD_TO_STD = 1.4826   # median absolute deviation → standard deviation of a normal distribution


CONTRAST_FLOOR = 1e-3  # a constant image: the heat stays finite


LOCAL_FLOOR = 0.5      # local std floored at this fraction of the image's robust std


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
    # The synthetic-anomaly families the selection scores (SYNTHETIC_FAMILIES); with several, each is
    # scored on its own and the objective is their mean. Default the patches alone: measured on
    # magnetic tiles (2 seeds) adding "small" raised the chosen λ (0.1 → 0.3, 0.3 → 0.4) and traded
    # 4.4-6.2 image AUROC and 0.7-1.2 pixel AUROC for 1.5-4.5 AUPRO; its spots are easy for a
    # pixel-difference map. benchmarks/results/magnetic_tile_cpu_drdc_objective_2026-12-07.md.
    synthetic_families: tuple[str, ...] = ("patches",)
    # The reliability guard of calibration (drdc_trt/methods/drdc/guard.py): after λ is chosen (or
    # set), label-free checks of the diffusion-only map on the held-out normal images (maxima on the
    # border, a score that follows brightness) and of the synthetic selection's margin over λ = 0;
    # when one fails λ = 0 is stored (DRDC = its base map) with a warning. Off by default: measured,
    # it fired on both models it was tried on, and cost AUPRO on both (the demo: 94.1 → 89.0, its
    # normal images' diffusion maxima sit on the border although the map finds the defects;
    # magnetic tiles: 54.2 → 52.3, image AUROC 82.4 → 83.7). benchmarks/results/*guard*.
    guard: bool = False
    # Image score: max of the average-pooled final map; window 16 px at 224², scaled.
    score_window_at_224: int = 16


def check(cfg: ModelConfig) -> None:
    """DRDC's sections; run for every config (the sections are in every config.json)."""
    s, f, tr = cfg.image_size, cfg.fusion, cfg.transformer
    positive("fusion.pool_factors", f.pool_factors)
    if len(f.pool_factors) > 4:
        raise ValueError(f"fusion.pool_factors={list(f.pool_factors)}: at most 4 factors")
    positive("fusion.score_window_at_224", f.score_window_at_224)
    for name in ("hidden_dim", "num_encoder_layers", "num_decoder_layers", "num_heads", "dim_feedforward"):
        positive(f"transformer.{name}", getattr(tr, name))
    if not 0 <= tr.dropout < 1:
        raise ValueError(f"transformer.dropout={tr.dropout} must lie in [0, 1)")
    if not 0 <= tr.jitter_prob <= 1:
        raise ValueError(f"transformer.jitter_prob={tr.jitter_prob} must lie in [0, 1]")
    for g in cfg.diffusion.grid_sizes:
        if s % g:
            raise ValueError(f"diffusion.grid_sizes: cell size {g} does not divide image_size {s}")
        for p in f.pool_factors:
            if g % p:
                raise ValueError(f"fusion.pool_factors: factor {p} does not divide grid cell size {g}")
    side = cfg.feature_size
    if tr.neighbor_size % 2 == 0 or tr.neighbor_size >= side:
        raise ValueError(f"transformer.neighbor_size={tr.neighbor_size}: must be odd and "
                         f"smaller than the token grid side {side}")
    if f.mean_filter < 1 or f.mean_filter % 2 == 0:
        raise ValueError("fusion.mean_filter must be a positive odd number")
    if not 0.0 <= f.lam <= 1.0:
        raise ValueError("fusion.lam must lie in [0, 1]")
    down = 2 ** (len(cfg.unet.channel_mult) - 1)
    m = cfg.diffusion.margin
    if not 0 <= m <= s or m % max(f.pool_factors) or cfg.loop_size % down:
        raise ValueError(f"diffusion.margin={m}: must lie in [0, {s}], be a multiple of the largest pool "
                         f"factor {max(f.pool_factors)} and keep image_size + 2·margin divisible by {down}")
    if f.heat_norm not in HEAT_NORMS:
        raise ValueError(f"fusion.heat_norm={f.heat_norm!r}: choose one of {HEAT_NORMS}")
    if f.diff_norm not in DIFF_NORMS:
        raise ValueError(f"fusion.diff_norm={f.diff_norm!r}: choose one of {DIFF_NORMS}")
    if f.select not in ("fixed", "synthetic"):
        raise ValueError(f"fusion.select={f.select!r}: use 'fixed' or 'synthetic'")
    fams = list(f.synthetic_families)
    if not fams or set(fams) - set(SYNTHETIC_FAMILIES) or len(set(fams)) != len(fams):
        raise ValueError(f"fusion.synthetic_families={fams}: one or more distinct values of {list(SYNTHETIC_FAMILIES)}")


def size_preset(name: str, cfg: ModelConfig) -> None:
    """DRDC's part of the named presets (every method's config carries these sections: one
    config.json layout); the core sizes are drdc_trt.settings.core_size_preset's."""
    if name == "small":
        cfg.transformer = TransformerConfig(
            hidden_dim=128, num_encoder_layers=2, num_decoder_layers=2, num_heads=4,
            dim_feedforward=256, neighbor_size=3,
        )
        cfg.diffusion.grid_sizes = (4, 8)
        cfg.diffusion.train_grid_sizes = (4, 8, 16)
        cfg.diffusion.num_steps = 5
        cfg.fusion.mean_filter = 3
    elif name == "small224":  # small's sections at 224²: grid cells scaled with the side (4, 8 → 14, 28)
        size_preset("small", cfg)
        cfg.diffusion.grid_sizes = (14, 28)
        cfg.diffusion.train_grid_sizes = (7, 14, 28)  # 8, 4, 2 cells across a 56² crop, as small's 32² crop
        cfg.fusion.mean_filter = 5  # the fast preset's, at the same 224²
    elif name == "tiny":
        cfg.transformer = TransformerConfig(
            hidden_dim=32, num_encoder_layers=1, num_decoder_layers=1, num_heads=4,
            dim_feedforward=64, neighbor_size=1,
        )
        cfg.diffusion.grid_sizes = (4, 8)
        cfg.diffusion.train_grid_sizes = (4, 8)
        cfg.diffusion.train_num_sets = (2,)
        cfg.diffusion.num_steps = 3
        cfg.fusion.mean_filter = 3


CONFIG = register_method_config(MethodConfig(
    owner="drdc",
    sections={"transformer": TransformerConfig, "fusion": FusionConfig},
    check=check,
    derived={"score_window": lambda cfg: max(1, round(cfg.fusion.score_window_at_224 * cfg.image_size / 224))},
    legacy={("fusion", "heat_norm"): "none", ("fusion", "diff_norm"): "global", ("fusion", "select"): "fixed",
            ("fusion", "guard"): False, ("fusion", "synthetic_families"): ("patches",)},
    size_preset=size_preset,
))
