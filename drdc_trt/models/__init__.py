"""Networks of the method: backbone, reconstruction transformer, conditioned U-Net."""

from .base import BaseModel
from .drdc import DRDCModel
from .unet import UNet

__all__ = ["BaseModel", "DRDCModel", "UNet"]
