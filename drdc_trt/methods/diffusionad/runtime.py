"""DiffusionAD bundles without PyTorch: two U-Net rows per image, the norm-guided combination,
the segmentation net, the top-k score.

Per batch of B images x (B×3×S×S float32 in [-1, 1]):
``x_a = √ᾱ_a·x + √(1−ᾱ_a)·n_a``, ``x_b`` likewise at t_b (the bundle's two noises, the same for
every image); one U-Net call on the 2B rows (row 2b at t_a, 2b + 1 at t_b); x0_g by the fused
combination (``drdc_trt._C.norm_guided`` when built, else :func:`numpy_norm_guided`, its numpy
transcription); anomaly map = seg(cat(x, x0_g)); score = mean of the top-k map pixels.
Engines: ONNX Runtime, OpenVINO, TensorRT (the bundle's plans). The arithmetic is
``DiffusionADDetector``'s in float32, so both agree up to the engines' rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from drdc_trt.export.bundle import Bundle, load_bundle
from drdc_trt.methods.diffusionad.bundle import ROWS_PER_IMAGE, SEG_INPUT, SEG_OUTPUT, UNET_INPUTS, UNET_OUTPUT

from drdc_trt.runtime.schedule import f32_coefficients as coefficients
from drdc_trt.runtime.schedule import q_sample
from drdc_trt.runtime.schedule import alphas_cumprod

DIFFUSIONAD_BACKENDS = ("onnxruntime", "openvino", "tensorrt")
KERNELS = ("auto", "numpy", "csrc")


@dataclass
class DiffusionADResult:
    """Per image (anomalib field names) plus the reconstruction, all numpy."""

    pred_score: np.ndarray      # B float32, mean of the top-k map pixels
    pred_label: np.ndarray      # B bool
    anomaly_map: np.ndarray     # B×S×S float32 in [0, 1]
    pred_mask: np.ndarray       # B×S×S bool
    reconstruction: np.ndarray  # B×3×S×S float32, x0_g

    def __len__(self) -> int:
        return int(self.pred_score.shape[0])

    @staticmethod
    def concat(parts: list["DiffusionADResult"]) -> "DiffusionADResult":
        return DiffusionADResult(*(np.concatenate([getattr(p, f.name) for p in parts])
                                   for f in fields(DiffusionADResult)))

    def as_dict(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def numpy_norm_guided(x_a, e_a, x_b, e_b, ab_a, ab_b, w: float = 1.0, clamp: bool = True) -> np.ndarray:
    """x0_g: numpy transcription of ``drdc_trt.ops.reference_norm_guided`` (same float32 ops, same order)."""
    sa, sma = coefficients(ab_a)
    sb, smb = coefficients(ab_b)
    x0_b = (x_b - smb * e_b) / sb
    if clamp:
        x0_b = np.clip(x0_b, np.float32(-1), np.float32(1))
    x_a_tilde = sa * x0_b + sma * e_a
    e_hat = e_a - (np.float32(w) * sma) * (x_a_tilde - x_a)
    x0_g = (x_a - sma * e_hat) / sa
    return np.clip(x0_g, np.float32(-1), np.float32(1)) if clamp else x0_g


class NumpyCombination:
    name = "numpy"

    def norm_guided(self, x_a, e_a, x_b, e_b, ab_a, ab_b, w, clamp=True) -> np.ndarray:
        return numpy_norm_guided(x_a, e_a, x_b, e_b, ab_a, ab_b, w, clamp)


class CsrcCombination:
    """``drdc_trt._C.norm_guided`` on numpy host buffers."""

    name = "csrc"

    def __init__(self):
        from drdc_trt import _C

        if not hasattr(_C, "norm_guided"):
            raise RuntimeError("drdc_trt._C was built without the norm_guided kernel; rebuild with `pip install .`")
        self._C = _C

    def norm_guided(self, x_a, e_a, x_b, e_b, ab_a, ab_b, w, clamp=True) -> np.ndarray:
        shape = x_a.shape
        for name, a in (("x_a", x_a), ("e_a", e_a), ("x_b", x_b), ("e_b", e_b)):
            if not isinstance(a, np.ndarray) or a.dtype != np.float32:
                raise TypeError(f"{name}: expected a float32 numpy array, got {getattr(a, 'dtype', type(a).__name__)}")
            if a.shape != shape:
                raise ValueError(f"{name}: shape {a.shape}, expected {shape}")
            if not a.flags.c_contiguous:
                raise ValueError(f"{name}: must be C-contiguous (np.ascontiguousarray)")
        out = np.empty_like(x_a)
        self._C.norm_guided(device="cpu", x_a=x_a.ctypes.data, e_a=e_a.ctypes.data, x_b=x_b.ctypes.data,
                            e_b=e_b.ctypes.data, x0_g=out.ctypes.data, count=x_a.size, ab_a=float(ab_a),
                            ab_b=float(ab_b), w=float(w), clamp=bool(clamp))
        return out


def make_combination(kind: str = "auto"):
    """``numpy``, ``csrc`` (raises if drdc_trt._C lacks the kernel) or ``auto`` (csrc when built)."""
    if kind not in KERNELS:
        raise ValueError(f"kernels={kind!r}; choose one of {KERNELS}")
    if kind == "numpy":
        return NumpyCombination()
    try:
        return CsrcCombination()
    except (ImportError, RuntimeError):
        if kind == "csrc":
            raise
        return NumpyCombination()


# --------------------------------------------------------------------------- engines
class DiffusionADNetworks:
    """The bundle's U-Net and segmentation net on one engine: ``unet(x N×3×S×S, t N)``,
    ``seg(x B×6×S×S)``, numpy in and out, inputs checked against the manifest."""

    io = "numpy"

    def __init__(self, bundle: Bundle, backend: str = "onnxruntime", providers=None, threads: int = 0,
                 device: str | None = None, precision: str | None = None, rebuild: bool = False,
                 streams: int | None = None):
        if backend not in DIFFUSIONAD_BACKENDS:
            raise ValueError(f"backend {backend!r}: a DiffusionAD bundle runs on {DIFFUSIONAD_BACKENDS}")
        self.bundle, self.name = bundle, backend
        names = {"unet": (list(UNET_INPUTS), UNET_OUTPUT), "seg": ([SEG_INPUT], SEG_OUTPUT)}
        self.nets = {}
        for net, (ins, out) in names.items():
            if backend == "onnxruntime":
                from drdc_trt.backends.onnxruntime_backend import OrtNetwork

                self.nets[net] = OrtNetwork(bundle.onnx_path(net), ins, out, providers, threads)
            elif backend == "openvino":
                from drdc_trt.backends.openvino_backend import (OvNetwork, network_model, resolve_device,
                                                                 resolve_precision)

                dev = resolve_device(device)
                path, hint = network_model(bundle, net, resolve_precision(precision, dev))
                self.nets[net] = OvNetwork(path, bundle.inputs(net), bundle.outputs(net)[0], dev, hint, threads,
                                           streams=streams)
            else:
                from drdc_trt.backends.tensorrt_backend import BundlePlan

                self.nets[net] = BundlePlan(bundle, net, ins, [out], ROWS_PER_IMAGE if net == "unet" else 1, rebuild)
        self.max_batch = (min(n.max_batch for n in self.nets.values()) if backend == "tensorrt" else None)

    def unet(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        self.bundle.check_inputs("unet", [x, t])
        return self.nets["unet"].run(x, t)

    def seg(self, x: np.ndarray) -> np.ndarray:
        self.bundle.check_inputs("seg", [x])
        return self.nets["seg"].run(x)


# --------------------------------------------------------------------------- detector
class DiffusionADBundleDetector:
    """Runs a DiffusionAD bundle: ``predict(images B×3×S×S float32 in [-1, 1]) -> DiffusionADResult``.

    ``backend``: onnxruntime, openvino or tensorrt; ``kernels``: the combination, ``auto``
    (compiled when built), ``numpy`` or ``csrc``; other keyword arguments go to the engine
    (``providers``/``threads`` for ONNX Runtime, ``device``/``precision``/``threads`` for OpenVINO).
    """

    def __init__(self, bundle: Bundle | str | Path, backend: str = "onnxruntime", kernels: str = "auto",
                 verify: bool = True, **engine_kwargs):
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, verify=verify)
        if self.bundle.method != "diffusionad":
            raise ValueError(f"bundle {self.bundle.path}: method {self.bundle.method!r}, not a DiffusionAD bundle "
                             "(drdc_trt.runtime.BundleDetector runs DRDC bundles)")
        m, cfg = self.bundle.manifest, self.bundle.config
        self.runner = DiffusionADNetworks(self.bundle, backend, **engine_kwargs)
        self.kernels = make_combination(kernels)
        a = m["diffusionad"]
        self.image_size = int(cfg["image_size"])
        self.t_a, self.t_b, self.w, self.top_k = int(a["t_a"]), int(a["t_b"]), float(a["w"]), int(a["top_k"])
        d = cfg["diffusion"]
        ab = alphas_cumprod(d["num_train_timesteps"], d["beta_start"], d["beta_end"]).astype(np.float32)
        self.ab_a, self.ab_b = float(ab[self.t_a]), float(ab[self.t_b])  # float32 values, as the model's buffer
        for key, v in (("alpha_bar_a", self.ab_a), ("alpha_bar_b", self.ab_b)):
            if abs(float(a[key]) - v) > 1e-6:
                raise ValueError(f"bundle {self.bundle.path}: manifest diffusionad.{key} = {a[key]} differs from "
                                 f"the config's schedule ({v})")
        if self.top_k > self.image_size ** 2:
            raise ValueError(f"bundle {self.bundle.path}: diffusionad.top_k {self.top_k} exceeds the "
                             f"{self.image_size}² map pixels")
        noise = self.bundle._load_arrays("noise", {"a": None, "b": None})
        s = self.image_size
        for key, arr in noise.items():
            if arr.shape != (3, s, s):
                raise ValueError(f"bundle {self.bundle.path}: noise.{key} has shape {arr.shape}, expected (3, {s}, {s})")
        self.noise_a, self.noise_b = noise["a"], noise["b"]
        th = m["thresholds"]
        self.image_threshold = np.inf if th["image_threshold"] is None else float(th["image_threshold"])
        self.pixel_threshold = np.inf if th["pixel_threshold"] is None else float(th["pixel_threshold"])

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        """x0_g of images x (B×3×S×S float32)."""
        b = x.shape[0]
        x_a, x_b = q_sample(x, self.ab_a, self.noise_a), q_sample(x, self.ab_b, self.noise_b)
        rows = np.ascontiguousarray(np.stack([x_a, x_b], 1).reshape(2 * b, *x.shape[1:]), dtype=np.float32)
        t = np.tile(np.array([self.t_a, self.t_b], dtype=np.float32), b)
        eps = np.asarray(self.runner.unet(rows, t), dtype=np.float32).reshape(b, 2, *x.shape[1:])
        e_a, e_b = np.ascontiguousarray(eps[:, 0]), np.ascontiguousarray(eps[:, 1])
        return self.kernels.norm_guided(np.ascontiguousarray(x_a), e_a, np.ascontiguousarray(x_b), e_b, self.ab_a,
                                        self.ab_b, self.w)

    def predict_batch(self, images: np.ndarray) -> DiffusionADResult:
        self.bundle.check_images(images)
        x = np.ascontiguousarray(images, dtype=np.float32)
        x0_g = self.reconstruct(x)
        maps = np.asarray(self.runner.seg(np.ascontiguousarray(np.concatenate([x, x0_g], 1))),
                          dtype=np.float32)[:, 0]
        flat = maps.reshape(maps.shape[0], -1)
        k = self.top_k
        score = np.partition(flat, flat.shape[1] - k, axis=1)[:, -k:].mean(1, dtype=np.float32)
        return DiffusionADResult(pred_score=score, pred_label=~(score <= self.image_threshold), anomaly_map=maps,
                                 pred_mask=~(maps <= self.pixel_threshold), reconstruction=x0_g)

    def predict(self, images: np.ndarray, batch_size: int = 8) -> DiffusionADResult:
        self.bundle.check_images(images)
        limit = self.runner.max_batch
        step = max(1, min(batch_size, limit) if limit else batch_size)
        return DiffusionADResult.concat([self.predict_batch(images[i:i + step])
                                         for i in range(0, images.shape[0], step)])
