"""Networks several methods share: the frozen backbone, the ADM U-Net, the patch-kNN baseline;
checkpoint parts and thresholds every method's model uses. A method's own networks live in its
folder (``drdc_trt/methods/<name>/``)."""

from .unet import UNet

__all__ = ["UNet"]
