"""The whole pipeline from a bundle, without PyTorch.

base map (engine) → DDIM inpainting loop (engine U-Net + prepare/step kernels)
→ fusion and scores. Engines: ONNX Runtime or TensorRT (numpy runners of
``drdc_trt.backends``); kernels: the compiled ``drdc_trt._C`` CPU kernels when
built, else their numpy transcription (``drdc_trt.methods.drdc.runtime_kernels``). The
labels come from the manifest's seed through the same SplitMix64 generator the
PyTorch Detector uses, and the loop noise is the Detector's own (stored in the
bundle by the exporter), so both compute the same numbers up to float32
rounding and engine differences.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from drdc_trt.export.bundle import Bundle, load_bundle

from drdc_trt.methods.drdc.runtime_kernels import CsrcKernels, heat_divisor, image_score, make_kernels, normalised
from drdc_trt.methods.drdc.gridsets import grid_labels, pad_labels, symmetric_index
from drdc_trt.runtime.schedule import alphas_cumprod, coefficients, ddim_timesteps

RUNTIME_BACKENDS = ("onnxruntime", "openvino", "tensorrt")


@dataclass
class Result:
    """Per image (anomalib field names) plus the two raw maps, all numpy."""

    pred_score: np.ndarray   # B float32
    pred_label: np.ndarray   # B bool
    anomaly_map: np.ndarray  # B×S×S float32
    pred_mask: np.ndarray    # B×S×S bool
    base_map: np.ndarray     # B×S×S float32, up-sampled base heatmap (raw)
    diff_map: np.ndarray     # B×S×S float32, filtered diffusion heatmap (raw)
    base_score: np.ndarray   # B float32, score of the base map alone

    def __len__(self) -> int:
        return int(self.pred_score.shape[0])

    @staticmethod
    def concat(parts: list["Result"]) -> "Result":
        return Result(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Result)))

    def as_dict(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class BundleDetector:
    """Runs a bundle: ``predict(images B×3×S×S float32 in [-1, 1]) -> Result``.

    ``backend``: ``onnxruntime``, ``openvino`` or ``tensorrt``; ``kernels``: ``auto`` (compiled when
    available), ``numpy`` or ``csrc``; other keyword arguments go to the runner
    (e.g. ``providers=[...]`` for ONNX Runtime, ``device="CPU", precision="bf16"`` for OpenVINO,
    ``rebuild=True`` for TensorRT).
    """

    def __init__(self, bundle: Bundle | str | Path, backend: str = "onnxruntime", kernels: str = "auto",
                 verify: bool = True, **runner_kwargs):
        if backend not in RUNTIME_BACKENDS:
            raise ValueError(f"backend {backend!r}: the torch-free runtime runs {RUNTIME_BACKENDS} "
                             "(the torch backends run a checkpoint with drdc_trt.methods.drdc.pipeline.Detector)")
        from drdc_trt.backends import make_runner

        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, verify=verify)
        if self.bundle.method != "drdc":
            raise ValueError(f"bundle {self.bundle.path}: method {self.bundle.method!r}; BundleDetector runs DRDC "
                             "bundles (drdc_trt.runtime.load_detector picks the bundle's own)")
        self.runner = make_runner(backend, bundle=self.bundle, **runner_kwargs)
        self.kernels = make_kernels(kernels)
        m, cfg = self.bundle.manifest, self.bundle.config
        d = cfg["diffusion"]
        self.image_size = int(cfg["image_size"])
        # configs written before these settings existed mean: no margin, the paper's heat
        self.margin = int(d.get("margin", 0))
        self.loop_size = self.image_size + 2 * self.margin
        self.heat_norm = str(cfg["fusion"].get("heat_norm", "none"))
        self.contrast_window = 2 * max(int(g) for g in d["grid_sizes"]) + 1
        self.num_sets = int(d["num_sets"])
        self.num_steps = int(d["num_steps"])
        self.clip_x0 = bool(d["clip_x0"])
        self.labels = pad_labels(grid_labels(self.image_size, d["grid_sizes"], self.num_sets, int(m["label_seed"])),
                                 self.margin)
        self.alphas_cumprod = alphas_cumprod(d["num_train_timesteps"], d["beta_start"], d["beta_end"])
        self.t0 = int(d["t0"])
        self.timesteps = ddim_timesteps(self.t0, self.num_steps)
        if self.timesteps != list(m["timesteps"]):
            raise ValueError(f"bundle {self.bundle.path}: manifest timesteps {m['timesteps']} differ from the "
                             f"config's DDIM schedule {self.timesteps}")
        self.noise = self.bundle.load_noise()
        self.pixel_stats = self.bundle.load_pixel_stats()
        self.rows_per_image = self.bundle.rows_per_image
        if self.labels.shape[0] * self.num_sets != self.rows_per_image:
            raise ValueError(f"bundle {self.bundle.path}: rows_per_image {self.rows_per_image} != specs × sets")
        f = self.bundle.fusion
        self.pool_factors = [int(p) for p in f["pool_factors"]]
        self.mean_filter, self.lam, self.score_window = int(f["mean_filter"]), float(f["lam"]), int(f["score_window"])
        self.stats = self.bundle.normalization
        self.image_threshold = self.bundle.threshold("image_threshold")
        self.pixel_threshold = self.bundle.threshold("pixel_threshold")
        self.net_dtype = np.dtype(self.bundle.inputs("unet")[0].dtype)
        self._refiners: dict = {}

    @property
    def loop(self) -> str:
        """Who drives the DDIM loop: ``refiner`` (the C++ _C.Refiner, network via a Python
        callback), ``csrc`` (Python loop, compiled kernels) or ``numpy``."""
        if isinstance(self.kernels, CsrcKernels):
            return "refiner" if hasattr(self.kernels._C, "Refiner") else "csrc"
        return "numpy"

    def heat(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """(heat sum B×S×S, terms per pixel) of images x (B×3×S×S): the loop on the margin-padded
        images, cropped back and divided by the contrast scale (as drdc_trt.methods.drdc.pipeline.Detector)."""
        m = self.margin
        idx = symmetric_index(self.image_size, m)
        heat, count = self.loop_heat(np.ascontiguousarray(x[:, :, idx][:, :, :, idx]) if m else x)
        if m:
            heat = np.ascontiguousarray(heat[:, m:m + self.image_size, m:m + self.image_size])
        div = heat_divisor(x, self.heat_norm, self.contrast_window)
        if div is not None:
            heat = (heat / div).astype(np.float32)
        if self.pixel_stats is not None:  # per-pixel z-scores (drdc_trt.methods.drdc.fusion.PixelStats.apply)
            p = self.pixel_stats
            heat = ((heat / np.float32(count) - p["mean"]) / p["std"] * np.float32(count)).astype(np.float32)
        return heat, count

    def loop_heat(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """The inpainting loop on x (B×3×L×L, L = loop size): (heat sum B×L×L, terms per pixel)."""
        b, s = x.shape[0], self.loop_size
        n = b * self.rows_per_image
        fill = np.ascontiguousarray(np.tile(self.noise["fill"], (b, 1, 1, 1)))
        start = np.ascontiguousarray(np.tile(self.noise["start"], (b, 1, 1, 1)))
        steps = np.ascontiguousarray(np.tile(self.noise["steps"], (1, b, 1, 1, 1)))
        if self.loop == "refiner":
            return self._refiner_heat(x, fill, start, steps)
        k, ts, ab = self.kernels, self.timesteps, self.alphas_cumprod
        a0, s0 = coefficients(ab, ts[0])
        xt, unet_in = k.prepare(x, self.labels, self.num_sets, fill, start, a0, s0, self.net_dtype)
        heat = np.zeros((b, s, s), dtype=np.float32)
        for i, t in enumerate(ts):
            t_next = ts[i + 1] if i + 1 < len(ts) else -1
            t_batch = np.full((n,), float(t), dtype=np.float32)
            eps = np.ascontiguousarray(self.runner.unet(unet_in, t_batch), dtype=unet_in.dtype)
            a_t, s_t = coefficients(ab, t)
            a_n, s_n = coefficients(ab, t_next)
            xt, unet_in, heat = k.step(x, self.labels, self.num_sets, xt, eps, np.ascontiguousarray(steps[i]),
                                       unet_in, heat, a_t, s_t, a_n, s_n, self.pool_factors, self.clip_x0)
        return heat, self.num_steps * self.labels.shape[0] * len(self.pool_factors)

    def _refiner_heat(self, x, fill, start, steps) -> tuple[np.ndarray, int]:
        """The whole loop in C++ (``_C.Refiner``); the engine is called back with numpy
        views of the refiner's buffers."""
        C = self.kernels._C
        b, s = x.shape[0], self.loop_size
        refiner = self._refiners.get(b)
        if refiner is None:
            runner = self.runner

            def eps_fn(inp, timesteps, out, _stream):
                out[...] = runner.unet(inp, timesteps)

            callback = C.PythonRunner(eps_fn, device="cpu", net_dtype=self.net_dtype.name)
            refiner = self._refiners[b] = C.Refiner(
                callback, device="cpu", batch=b, height=s, width=s, num_sets=self.num_sets,
                t0=self.t0, num_steps=self.num_steps, pool_factors=self.pool_factors,
                clip_x0=self.clip_x0, cuda_graph=False, labels=self.labels, alphas_cumprod=self.alphas_cumprod)
        heat = np.empty((b, s, s), dtype=np.float32)
        count = refiner.run(x=x.ctypes.data, heat=heat.ctypes.data, fill=fill.ctypes.data, start=start.ctypes.data,
                            steps=steps.ctypes.data, stream=0)
        return heat, int(count)

    def predict_batch(self, images: np.ndarray) -> Result:
        self.bundle.check_images(images)
        x = np.ascontiguousarray(images, dtype=np.float32)
        base = np.ascontiguousarray(self.runner.base(x), dtype=np.float32)
        heat, count = self.heat(x)
        final, hd, hb, score = self.kernels.fuse(heat, count, base, self.mean_filter, self.stats, self.lam,
                                                 self.score_window)
        mu_b, sd_b = self.stats[2], self.stats[3]
        return Result(pred_score=score, pred_label=~(score <= self.image_threshold), anomaly_map=final,
                      pred_mask=~(final <= self.pixel_threshold), base_map=hb, diff_map=hd,
                      base_score=image_score(normalised(hb, mu_b, sd_b), self.score_window))

    def predict(self, images: np.ndarray, batch_size: int = 8) -> Result:
        self.bundle.check_images(images)
        limit = getattr(self.runner, "max_batch", None)
        step = max(1, min(batch_size, limit) if limit else batch_size)
        return Result.concat([self.predict_batch(images[i:i + step]) for i in range(0, images.shape[0], step)])
