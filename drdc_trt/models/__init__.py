"""Networks of the methods: backbone, reconstruction transformer, conditioned U-Net (DRDC);
DiffusionAD's U-Net and segmentation net (``diffusionad/``); GLAD's (``glad/``)."""

from .base import BaseModel
from .diffusionad import DiffusionADModel
from .drdc import DRDCModel
from .unet import UNet

__all__ = ["BaseModel", "DRDCModel", "DiffusionADModel", "UNet"]
