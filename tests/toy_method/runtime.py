"""The toy bundle without torch: its network on ONNX Runtime or OpenVINO, score and decisions in numpy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drdc_trt.export.bundle import Bundle, load_bundle

NET, INPUT, OUTPUT = "map", "image", "map"


@dataclass
class ToyResult:
    pred_score: np.ndarray
    pred_label: np.ndarray
    anomaly_map: np.ndarray
    pred_mask: np.ndarray


class ToyBundleDetector:
    def __init__(self, bundle: Bundle | str | Path, backend: str = "onnxruntime", kernels: str = "auto",
                 threads: int = 0, device: str | None = None, precision: str | None = None, rebuild: bool = False):
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        if backend == "onnxruntime":
            from drdc_trt.backends.onnxruntime_backend import OrtNetwork

            self.net = OrtNetwork(self.bundle.onnx_path(NET), [INPUT], OUTPUT, threads=threads)
        elif backend == "openvino":
            from drdc_trt.backends.openvino_backend import OvNetwork, resolve_device, resolve_precision

            dev = resolve_device(device)
            self.net = OvNetwork(self.bundle.onnx_path(NET), self.bundle.inputs(NET), self.bundle.outputs(NET)[0],
                                 dev, resolve_precision(precision, dev), threads)
        else:
            raise ValueError(f"backend {backend!r}: a toy bundle runs on onnxruntime or openvino")
        m = self.bundle.manifest
        self.top_k = m["toy"]["top_k"]
        th = m["thresholds"]
        self.image_threshold = np.inf if th["image_threshold"] is None else th["image_threshold"]
        self.pixel_threshold = np.inf if th["pixel_threshold"] is None else th["pixel_threshold"]

    def predict_batch(self, x: np.ndarray) -> ToyResult:
        self.bundle.check_images(x)
        maps = self.net.run(np.ascontiguousarray(x, np.float32))[:, 0]
        flat = maps.reshape(len(maps), -1)
        k = min(self.top_k, flat.shape[1])
        score = np.sort(flat, axis=1)[:, -k:].mean(1).astype(np.float32)
        return ToyResult(score, score > self.image_threshold, maps, maps > self.pixel_threshold)

    def predict(self, images: np.ndarray, batch_size: int = 8) -> ToyResult:
        parts = [self.predict_batch(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
        return ToyResult(*(np.concatenate([getattr(p, f) for p in parts]) for f in ToyResult.__dataclass_fields__))
