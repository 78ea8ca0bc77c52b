"""DiffusionAD (norm-guided one-step denoising with a segmentation sub-network), the engine's
second method: ``config.DiffusionADConfig``, docs/diffusionad.md."""

from .detector import DiffusionADBatch, DiffusionADDetector, image_score
from .model import DiffusionADModel, DiffusionADStats
from .segmentation import SegmentationNet

__all__ = ["DiffusionADBatch", "DiffusionADDetector", "DiffusionADModel", "DiffusionADStats", "SegmentationNet",
           "image_score"]
