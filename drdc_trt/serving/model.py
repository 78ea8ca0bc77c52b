"""What the server does with a request, without Triton: decode and check the images, read them as
``drdc detect`` does (same reader, same resize), run one prediction for a group of requests and
split the results back per request.

A request's images are refused with a :class:`RequestError` naming the request, the image and
what is wrong; Triton itself refuses a wrong dtype, rank, channel count or a batch above
``max_batch`` before the model sees it (the model's config declares them).
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass

import numpy as np

from . import INPUT_ENCODED, INPUT_RAW, OUTPUT_STEPS

# Map values are scores of a few units; fp16 keeps ~3 significant digits and halves the response.
MAP_DTYPE = np.float16


class RequestError(ValueError):
    """A bad request; the message names the request and image at fault."""


class _Named(io.BytesIO):
    """Encoded bytes whose str() names the request image (the image reader's errors print it)."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name = name

    def __str__(self) -> str:
        return self.name

    __repr__ = __str__  # PIL's "cannot identify image file" message shows the repr


def _pixels_image(arr: np.ndarray, where: str):
    from PIL import Image

    from drdc_trt.data.folder import MIN_IMAGE_SIDE

    if arr.dtype != np.uint8:
        raise RequestError(f"{where}: dtype {arr.dtype}, expected uint8 pixels (0..255); send other bit depths "
                           f"as encoded PNG bytes to the {INPUT_ENCODED!r} input")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise RequestError(f"{where}: shape {tuple(arr.shape)}, expected H×W×3 (RGB)")
    h, w = arr.shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE:
        raise RequestError(f"{where}: image is {w}×{h} px, smaller than {MIN_IMAGE_SIDE} px a side")
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")


def read_pixels(arr: np.ndarray, size: int, where: str) -> np.ndarray:
    """One H×W×3 uint8 image → 3×S×S float32 in [-1, 1], as drdc detect reads the same pixels from a
    file (drdc_trt.data.folder.image_array: bilinear resize, v / 127.5 − 1)."""
    from drdc_trt.data.folder import image_array

    return image_array(_pixels_image(arr, where), size).transpose(2, 0, 1)


def read_encoded(data, size: int, where: str) -> np.ndarray:
    """One encoded image file (bytes) → 3×S×S float32 in [-1, 1], read exactly as drdc detect reads
    the file: 8-bit grey/RGB/palette and 16-bit grey; transparency, truncated or corrupt data,
    decompression bombs and images under 8 px a side refused."""
    from drdc_trt.data.folder import DatasetError, image_array

    if isinstance(data, np.ndarray):  # Triton BYTES element of shape (1,)
        data = data.reshape(-1)[0] if data.size == 1 else data
    if not isinstance(data, (bytes, bytearray)):
        raise RequestError(f"{where}: expected the bytes of one encoded image, got {type(data).__name__}")
    if len(data) == 0:
        raise RequestError(f"{where}: empty image (0 bytes)")
    try:
        return image_array(_Named(bytes(data), where), size).transpose(2, 0, 1)
    except DatasetError as e:
        raise RequestError(str(e)) from None


@dataclass
class Prediction:
    """Per image: the fields drdc detect reports (numpy, batch first)."""

    pred_score: np.ndarray   # B float32
    pred_label: np.ndarray   # B bool
    pred_mask: np.ndarray    # B×S×S bool
    anomaly_map: np.ndarray  # B×S×S float16
    steps: np.ndarray | None = None  # B int32, U-Net steps each image took (GLAD); None otherwise

    def split(self, sl: slice) -> dict[str, np.ndarray]:
        """The outputs of the images ``sl`` (one request of a dynamic batch), by output name."""
        out = {"pred_score": self.pred_score[sl], "pred_label": self.pred_label[sl],
               "pred_mask": self.pred_mask[sl], "anomaly_map": self.anomaly_map[sl]}
        if self.steps is not None:
            out[OUTPUT_STEPS] = self.steps[sl]
        return out


class ServingModel:
    """``predict(x B×3×S×S float32 in [-1, 1])`` behind request decoding. One per Triton model
    instance; a lock serialises predictions (the runtime's per-batch buffers are not thread-safe,
    and the two models of an instance share it). ``steps``: the predictions carry the U-Net steps
    each image took (GLAD), answered as the extra output ``steps``."""

    def __init__(self, predict, image_size: int, image_threshold: float, max_batch: int, description: str = "",
                 steps: bool = False):
        self._predict = predict
        self.image_size = int(image_size)
        self.image_threshold = float(image_threshold)
        self.max_batch = int(max_batch)
        self.description = description
        self.steps = bool(steps)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, bundle=None, model=None, backend: str | None = None, loop: str = "auto", device: str = "cpu",
             max_batch: int = 8) -> "ServingModel":
        """The predictor ``drdc detect`` builds for the same options (drdc_trt.predictors), for every
        method: a bundle runs on the torch-free runtime's load_detector, a checkpoint on PyTorch."""
        from drdc_trt import methods
        from drdc_trt.checkpoint import load_config
        from drdc_trt.export.bundle import read_manifest
        from drdc_trt.predictors import detect_predictor

        predict, size, stats = detect_predictor(model, bundle, backend, loop, None, device, False)
        own = read_manifest(bundle).get("method", "drdc") if bundle is not None else load_config(model).method
        spec = methods.get(own)
        src = f"bundle {bundle}" if bundle is not None else f"checkpoint {model}"
        return cls(predict, size, stats.image_threshold, max_batch, f"{src} ({getattr(predict, 'engine', None) or backend or 'torch'})",
                   steps="steps" in spec.outputs)  # GLAD's results carry the steps each image took

    def predict(self, x: np.ndarray) -> Prediction:
        import torch

        with self._lock, torch.inference_mode():
            r = self._predict(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                              batch_size=self.max_batch)
        return Prediction(pred_score=r.pred_score.cpu().numpy().astype(np.float32),
                          pred_label=r.pred_label.cpu().numpy().astype(bool),
                          pred_mask=r.pred_mask.cpu().numpy().astype(bool),
                          anomaly_map=r.anomaly_map.cpu().numpy().astype(MAP_DTYPE),
                          steps=r.steps.cpu().numpy().astype(np.int32) if self.steps else None)

    def decode(self, request: dict, index: int = 0) -> np.ndarray:
        """A request's images (inputs ``images``: B×H×W×3 uint8, or ``image_bytes``: B×1 encoded)
        → B×3×S×S float32."""
        raw, enc = request.get(INPUT_RAW), request.get(INPUT_ENCODED)
        if (raw is None) == (enc is None):
            raise RequestError(f"request {index}: send exactly one of the inputs {INPUT_RAW!r} (uint8 B×H×W×3) "
                               f"or {INPUT_ENCODED!r} (B×1 encoded images); got {sorted(request)}")
        arr = np.asarray(raw if raw is not None else enc)
        if raw is not None and arr.ndim != 4:
            raise RequestError(f"request {index}: input {INPUT_RAW!r} has shape {tuple(arr.shape)}, expected "
                               "B×H×W×3 uint8")
        if arr.ndim == 0 or arr.shape[0] == 0:
            raise RequestError(f"request {index}: no images (input shape {tuple(arr.shape)})")
        if arr.shape[0] > self.max_batch:
            raise RequestError(f"request {index}: {arr.shape[0]} images, more than max batch {self.max_batch}")
        s = self.image_size
        if raw is not None:
            imgs = [read_pixels(a, s, f"request {index} image {i}") for i, a in enumerate(arr)]
        else:
            imgs = [read_encoded(a, s, f"request {index} image {i}") for i, a in enumerate(arr)]
        return np.stack(imgs)

    def infer(self, requests: list[dict]) -> list[dict[str, np.ndarray]]:
        """Triton's group of requests (dynamic batching) → one prediction → per-request outputs.
        Every request is decoded first, so a bad one raises before any work is done."""
        xs = [self.decode(r, i) for i, r in enumerate(requests)]
        pred = self.predict(np.concatenate(xs))
        out, start = [], 0
        for x in xs:
            sl = slice(start, start + x.shape[0])
            start += x.shape[0]
            out.append(pred.split(sl))
        return out
