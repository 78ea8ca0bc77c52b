"""Data: MVTec-layout folders and the procedural synthetic demo set (no model code here)."""

from .folder import DatasetError, Loaded, Sample, load_image, load_mask, load_split, scan
from .synthetic import make_synthetic_dataset

__all__ = ["DatasetError", "Loaded", "Sample", "load_image", "load_mask", "load_split",
           "make_synthetic_dataset", "scan"]
