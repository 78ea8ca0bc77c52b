"""GLAD bundles without PyTorch: the adaptive denoising loop with rows that stop early, the
multi-stage feature map, the top-k score.

Per batch of B images x (B×3×S×S float32 in [-1, 1]) and the bundle's ε (one for every image):
x_T = √ᾱ_0·x + √(1 − ᾱ_0)·ε; then, at each DDIM step k while a row is not done,

    ε̂               U-Net on the active rows (compacted; zeros elsewhere)
    x0_gen, x0_in   ``glad_kernels.predict`` (the element-wise part)
    A               nearest-patch distance of x0_in's trigger-stage features to x0_gen's, on the
                    rows still looking for their step (the features network on those rows only)
    score, w        mean of the top-k of A; the SAFF weight σ(A) (or A min–max normalised), up-sampled
    rows            ``glad_kernels.update`` (the per-row rule: trigger, fallback, DDIM, done)

and the map of the input to its reconstruction (``glad_features``), score = mean of the top-k map
pixels. Engines: ONNX Runtime, OpenVINO, TensorRT (the bundle's plans); step kernels: compiled
(``drdc_trt._C``) when built, else numpy. The arithmetic is ``GLADDetector``'s in float32
(``drdc_trt.methods.glad.adaptive``), so both agree up to the engines' rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from drdc_trt.export.bundle import Bundle, load_bundle
from drdc_trt.methods.glad.bundle import FEATURES_INPUT, UNET_INPUTS, UNET_OUTPUT, stage_output

from drdc_trt.runtime.schedule import q_sample
from drdc_trt.methods.glad.runtime_features import anomaly_map, nearest_patch_distance, saff_weight, top_k_score
from drdc_trt.runtime.schedule import alphas_cumprod, ddim_timesteps

GLAD_BACKENDS = ("onnxruntime", "openvino", "tensorrt")
KERNELS = ("auto", "numpy", "csrc")
NONE, TRIGGERED, FALLBACK = 0, 1, 2  # trigger_kind codes (drdc_trt.models.glad.adaptive)


def steps_histogram(steps: np.ndarray) -> dict[int, int]:
    """{steps taken: number of rows}."""
    values, counts = np.unique(np.asarray(steps), return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


@dataclass
class GLADResult:
    """Per image (anomalib field names), the reconstruction and the adaptive loop's per-row
    record (GLADBatch's fields), all numpy."""

    pred_score: np.ndarray      # B float32, mean of the top-k anomaly-map pixels
    pred_label: np.ndarray      # B bool
    anomaly_map: np.ndarray     # B×S×S float32
    pred_mask: np.ndarray       # B×S×S bool
    reconstruction: np.ndarray  # B×3×S×S float32 in [-1, 1]
    steps: np.ndarray           # B int64, U-Net evaluations the image took
    trigger_step: np.ndarray    # B int64, step of its trigger or fallback (−1: neither)
    trigger_kind: np.ndarray    # B int64, NONE / TRIGGERED / FALLBACK
    max_score: np.ndarray       # B float32, its largest trigger score

    def __len__(self) -> int:
        return int(self.pred_score.shape[0])

    @staticmethod
    def concat(parts: list["GLADResult"]) -> "GLADResult":
        return GLADResult(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(GLADResult)))

    def as_dict(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def step_report(self, num_steps: int) -> dict:
        """The distribution of steps taken and the U-Net rows the compacted loop saves against
        running every row for all ``num_steps`` steps (GLADBatch.step_report)."""
        full = num_steps * len(self)
        taken = int(self.steps.sum())
        return {"steps_histogram": steps_histogram(self.steps), "mean_steps": taken / max(1, len(self)),
                "unet_rows_run": taken, "unet_rows_full": full, "unet_rows_saved": full - taken,
                "triggered": int((self.trigger_kind == TRIGGERED).sum()),
                "fallback": int((self.trigger_kind == FALLBACK).sum())}


# --------------------------------------------------------------------------- engines
class OrtStages:
    """The features graph on ONNX Runtime: every stage output."""

    def __init__(self, path, outputs: list[str], providers=None, threads: int = 0):
        import onnxruntime as ort

        from drdc_trt.backends.onnxruntime_backend import resolve_providers

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=resolve_providers(providers))
        got_in = [i.name for i in self.session.get_inputs()]
        got_out = [o.name for o in self.session.get_outputs()]
        if got_in != [FEATURES_INPUT] or not set(outputs) <= set(got_out):
            raise ValueError(f"{path}: graph has inputs {got_in} and outputs {got_out}; manifest.json says inputs "
                             f"{[FEATURES_INPUT]} and outputs {outputs}")
        self.outputs = outputs

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.outputs, {FEATURES_INPUT: np.ascontiguousarray(x)})


class _OvStages:
    """The features graph compiled by OpenVINO: every stage output."""

    def __init__(self, path, specs_in, specs_out, device, precision, threads: int = 0, streams: int | None = None):
        from drdc_trt.backends.openvino_backend import OvNetwork

        self.net = OvNetwork(path, specs_in, specs_out[0], device, precision, threads,
                             outputs=[s.name for s in specs_out], streams=streams)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.net.infer([np.ascontiguousarray(x)])


class GLADNetworks:
    """The bundle's U-Net and features network on one engine, numpy in and out, inputs checked
    against the manifest: ``unet(x N×C×S×S, t N) -> ε̂``, ``features(x N×3×S×S) -> [stage maps]``
    in the order of ``glad.feature_stages``."""

    io = "numpy"

    def __init__(self, bundle: Bundle, backend: str = "onnxruntime", providers=None, threads: int = 0,
                 device: str | None = None, precision: str | None = None, rebuild: bool = False,
                 streams: int | None = None):
        if backend not in GLAD_BACKENDS:
            raise ValueError(f"backend {backend!r}: a GLAD bundle runs on {GLAD_BACKENDS}")
        self.bundle, self.name = bundle, backend
        stages = [stage_output(s) for s in bundle.manifest["glad"]["feature_stages"]]
        self.max_batch = None
        if backend == "onnxruntime":
            from drdc_trt.backends.onnxruntime_backend import OrtNetwork

            self._unet = OrtNetwork(bundle.onnx_path("unet"), list(UNET_INPUTS), UNET_OUTPUT, providers, threads)
            self._features = OrtStages(bundle.onnx_path("features"), stages, providers, threads)
        elif backend == "openvino":
            from drdc_trt.backends.openvino_backend import OvNetwork, network_model, resolve_device, resolve_precision

            dev = resolve_device(device)
            prec = resolve_precision(precision, dev)
            path, hint = network_model(bundle, "unet", prec)
            self._unet = OvNetwork(path, bundle.inputs("unet"), bundle.outputs("unet")[0], dev, hint, threads,
                                   streams=streams)
            path, hint = network_model(bundle, "features", prec)
            self._features = _OvStages(path, bundle.inputs("features"), bundle.outputs("features"), dev, hint, threads,
                                       streams)
        else:
            from drdc_trt.backends.tensorrt_backend import BundlePlan

            self._unet = BundlePlan(bundle, "unet", list(UNET_INPUTS), [UNET_OUTPUT], 1, rebuild)
            self._features = BundlePlan(bundle, "features", [FEATURES_INPUT], stages, 2, rebuild,  # x0_in, x0_gen
                                        as_list=True)
            self.max_batch = min(self._unet.max_batch, self._features.max_batch)

    def unet(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        self.bundle.check_inputs("unet", [x, t])
        return np.asarray(self._unet.run(x, t), dtype=np.float32)

    def features(self, x: np.ndarray) -> list[np.ndarray]:
        self.bundle.check_inputs("features", [x])
        return [np.asarray(f, dtype=np.float32) for f in self._features.run(x)]


# --------------------------------------------------------------------------- detector
class GLADBundleDetector:
    """Runs a GLAD bundle: ``predict(images B×3×S×S float32 in [-1, 1]) -> GLADResult``.

    ``backend``: onnxruntime, openvino or tensorrt; ``kernels``: the per-row step
    (``drdc_trt.methods.glad.runtime_kernels``), ``auto`` (compiled when built), ``numpy`` or ``csrc``;
    ``compact``: the U-Net runs on the active rows only and the features network on the rows still
    looking for their step only (False: every row, every step; the same results up to the engines'
    batch-size rounding); ``tau`` overrides the bundle's τ. Other keyword arguments go to the
    engine (``providers``/``threads`` for ONNX Runtime, ``device``/``precision``/``threads`` for
    OpenVINO).
    """

    def __init__(self, bundle: Bundle | str | Path, backend: str = "onnxruntime", kernels: str = "auto",
                 verify: bool = True, compact: bool = True, tau: float | None = None, **engine_kwargs):
        from drdc_trt.methods.glad.runtime_kernels import GladRows, make_glad_kernels

        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, verify=verify)
        if self.bundle.method != "glad":
            raise ValueError(f"bundle {self.bundle.path}: method {self.bundle.method!r}, not a GLAD bundle "
                             "(drdc_trt.runtime.load_detector picks the bundle's own detector)")
        if kernels not in KERNELS:
            raise ValueError(f"kernels={kernels!r}; choose one of {KERNELS}")
        where = f"bundle {self.bundle.path}: manifest.json"
        m, cfg = self.bundle.manifest, self.bundle.config
        g = m["glad"]
        self.image_size = s = int(cfg["image_size"])
        self.timesteps = [int(t) for t in g["timesteps"]]
        if self.timesteps != ddim_timesteps(int(g["t0"]), int(g["num_steps"])):
            raise ValueError(f"{where}: glad.timesteps {self.timesteps} differ from the DDIM schedule of t0 = "
                             f"{g['t0']}, num_steps = {g['num_steps']}")
        d = cfg["diffusion"]
        ab = alphas_cumprod(d["num_train_timesteps"], d["beta_start"], d["beta_end"]).astype(np.float32)
        self.alpha_bar = [float(a) for a in g["alpha_bar"]]  # float32 values, as the PyTorch loop reads them
        want = [float(ab[t]) for t in self.timesteps]
        if self.alpha_bar != want:
            raise ValueError(f"{where}: glad.alpha_bar {self.alpha_bar} differ from the config's schedule {want}")
        self.num_steps = len(self.timesteps)
        self.min_step, self.trigger_top_k = int(g["min_step"]), int(g["trigger_top_k"])
        self.feature_stages = [int(v) for v in g["feature_stages"]]
        self.trigger_index = self.feature_stages.index(int(g["trigger_stage"]))
        self.map_index = [self.feature_stages.index(int(v)) for v in g["map_stages"]]
        self.blur_sigma, self.top_k = float(g["blur_sigma"]), int(g["top_k"])
        self.clip, self.conditioned = bool(g["clip"]), bool(g["conditioned"])
        self.saff = str(g.get("saff_weight", "minmax"))  # absent: a bundle written before σ(A)
        self.fallback = str(g.get("fallback", "stop"))  # absent: written when a fallen-back row stopped
        if self.top_k > s * s:
            raise ValueError(f"{where}: glad.top_k {self.top_k} exceeds the {s}² map pixels")
        c = 6 if self.conditioned else 3
        if self.bundle.inputs("unet")[0].shape[1] != c:
            raise ValueError(f"{where}: networks.unet takes {self.bundle.inputs('unet')[0].shape[1]} channels, "
                             f"glad.conditioned = {self.conditioned} needs {c}")
        noise = self.bundle._load_arrays("noise", {"eps": None})["eps"]
        if noise.shape != (3, s, s):
            raise ValueError(f"{where}: noise.eps has shape {noise.shape}, expected (3, {s}, {s})")
        self.noise = noise
        th = m["thresholds"]
        self.image_threshold = np.inf if th["image_threshold"] is None else float(th["image_threshold"])
        self.pixel_threshold = np.inf if th["pixel_threshold"] is None else float(th["pixel_threshold"])
        bundle_tau = np.inf if th["tau"] is None else float(th["tau"])
        self.tau = bundle_tau if tau is None else float(tau)
        self.compact = bool(compact)
        self.runner = GLADNetworks(self.bundle, backend, **engine_kwargs)
        self.kernels = make_glad_kernels(kernels)
        self._rows = GladRows

    # ---- the loop -------------------------------------------------------------
    def _on_rows(self, fn, mask: np.ndarray, *arrays: np.ndarray) -> np.ndarray:
        """fn on the rows ``mask`` selects (compact) or on every row, scattered back into a B-row
        zero array (as adaptive._on_rows)."""
        if not self.compact:
            return fn(*arrays)
        idx = np.flatnonzero(mask)
        sub = fn(*(np.ascontiguousarray(a[idx]) for a in arrays))
        out = np.zeros((mask.shape[0], *sub.shape[1:]), dtype=sub.dtype)
        out[idx] = sub
        return out

    def _eps(self, t: int):
        def run(x_t: np.ndarray, x: np.ndarray) -> np.ndarray:
            inp = np.concatenate([x_t, x], 1) if self.conditioned else x_t
            return self.runner.unet(np.ascontiguousarray(inp, dtype=np.float32),
                                    np.full((x_t.shape[0],), float(t), dtype=np.float32))
        return run

    def trigger_distance(self, x0_in: np.ndarray, x0_gen: np.ndarray) -> np.ndarray:
        """A: each patch of x0_in's trigger-stage features to its nearest patch of x0_gen's (B×h×w)."""
        n = x0_in.shape[0]
        f = self.runner.features(np.ascontiguousarray(np.concatenate([x0_in, x0_gen])))[self.trigger_index]
        return nearest_patch_distance(f[:n], f[n:])

    def adaptive_loop(self, x: np.ndarray):
        """The rows' final state (``glad_kernels.GladRows``) for images x (B×3×S×S float32)."""
        b, s = x.shape[0], self.image_size
        noise = np.ascontiguousarray(np.broadcast_to(self.noise, x.shape), dtype=np.float32)
        rows = self._rows.start(np.ascontiguousarray(q_sample(x, self.alpha_bar[0], noise), dtype=np.float32))
        for k, t in enumerate(self.timesteps):
            if bool(rows.done.all()):
                break
            ab = self.alpha_bar[k]
            ab_next = self.alpha_bar[k + 1] if k + 1 < self.num_steps else 1.0
            active = ~rows.done
            checking = rows.looking()
            eps = np.ascontiguousarray(self._on_rows(self._eps(t), active, rows.x_t, x), dtype=np.float32)
            x0_gen, x0_in = self.kernels.predict(rows.x_t, x, noise, eps, ab, self.clip)
            if bool(checking.any()):
                A = self._on_rows(self.trigger_distance, checking, x0_in, x0_gen)
                score = top_k_score(A, self.trigger_top_k)
                w = saff_weight(A, s, self.saff)
            else:  # no row looks for its step: the score and the weight are not read
                score = np.zeros(b, dtype=np.float32)
                w = np.zeros((b, 1, s, s), dtype=np.float32)
            self.kernels.update(rows, x0_gen, x0_in, eps, np.ascontiguousarray(w), np.ascontiguousarray(score), k,
                                t, ab_next, self.tau, self.min_step, self.fallback)
        return rows

    # ---- results ----------------------------------------------------------------
    def anomaly_map(self, x: np.ndarray, recon: np.ndarray) -> np.ndarray:
        """The blurred multi-stage distance map of the input to its reconstruction (B×S×S)."""
        b = x.shape[0]
        f = self.runner.features(np.ascontiguousarray(np.concatenate([x, recon]), dtype=np.float32))
        return anomaly_map([f[i][:b] for i in self.map_index], [f[i][b:] for i in self.map_index], self.image_size,
                           self.blur_sigma)

    def predict_batch(self, images: np.ndarray) -> GLADResult:
        self.bundle.check_images(images)
        x = np.ascontiguousarray(images, dtype=np.float32)
        rows = self.adaptive_loop(x)
        recon = np.ascontiguousarray(rows.recon, dtype=np.float32)
        maps = self.anomaly_map(x, recon)
        score = top_k_score(maps, self.top_k)
        return GLADResult(pred_score=score, pred_label=~(score <= self.image_threshold), anomaly_map=maps,
                          pred_mask=~(maps <= self.pixel_threshold), reconstruction=recon,
                          steps=np.asarray(rows.steps, dtype=np.int64).copy(),
                          trigger_step=np.asarray(rows.trigger_step, dtype=np.int64).copy(),
                          trigger_kind=np.asarray(rows.trigger_kind, dtype=np.int64).copy(),
                          max_score=np.asarray(rows.max_score, dtype=np.float32).copy())

    def predict(self, images: np.ndarray, batch_size: int = 8) -> GLADResult:
        self.bundle.check_images(images)
        limit = self.runner.max_batch
        step = max(1, min(batch_size, limit) if limit else batch_size)
        return GLADResult.concat([self.predict_batch(images[i:i + step]) for i in range(0, images.shape[0], step)])
