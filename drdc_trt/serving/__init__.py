"""Serving the detector on NVIDIA Triton Inference Server.

``model``: request decoding and validation, one batched prediction per group of requests (no
Triton import); ``server``: the PyTriton binding behind ``drdc serve``; ``client``: ``drdc client``
and :class:`~drdc_trt.serving.client.DetectorClient`; ``repository``: ``drdc export --triton-repo``,
a model repository for a stock ``tritonserver``. See docs/serving.md.
"""

from __future__ import annotations

# Model names: raw uint8 H×W×3 pixels, and encoded image files (PNG, JPEG, ... as drdc detect reads).
MODEL_RAW = "drdc"
MODEL_ENCODED = "drdc_encoded"
INPUT_RAW = "images"
INPUT_ENCODED = "image_bytes"
OUTPUTS = ("pred_score", "pred_label", "pred_mask", "anomaly_map")
# GLAD bundles and checkpoints also answer the U-Net steps each image took (int32, one per image).
OUTPUT_STEPS = "steps"
