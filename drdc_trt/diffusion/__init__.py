"""Diffusion: schedule, grid masks, the reference DDIM inpainting loop."""

from .inpaint import LoopNoise, LoopResult, inpaint_heat
from .margin import crop, pad_image
from .masks import cell_sets, grid_labels, random_known_masks
from .schedule import Schedule, ddim_timesteps, min_snr_weight

__all__ = ["LoopNoise", "LoopResult", "Schedule", "cell_sets", "crop", "pad_image", "ddim_timesteps", "grid_labels",
           "inpaint_heat", "min_snr_weight", "random_known_masks"]
