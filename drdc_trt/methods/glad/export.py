"""GLAD checkpoint → bundle (``drdc export`` of a model whose config has method = "glad").

1. the U-Net (x_t N×C×S×S, t N → ε̂) and the frozen backbone stages GLAD reads (image N×3×S×S →
   one output per stage of sorted(set(map_stages) | {trigger_stage})) → ONNX, batch dynamic (the
   runtime runs the rows still denoising only), checked for TensorRT 10 like DRDC's graphs;
2. ONNX Runtime vs PyTorch (:func:`compare_glad`): the U-Net on the very rows the detector's
   adaptive loop feeds it (up to four steps), the features on cat(images, reconstructions);
   same tolerance rule as DRDC's (``numerics.Tolerance``);
3. the detector's noise ε for ``seed`` (noise.npy), the DDIM timesteps and their ᾱ as the
   PyTorch loop forms them (float32), τ and the thresholds of the checkpoint's stats, so that the
   torch-free runtime computes what ``GLADDetector(seed=seed)`` computes;
4. optionally TensorRT plans of both networks (:func:`build_glad_plans`);
5. manifest (``export.glad_bundle``) + hashes, written atomically.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from drdc_trt.export.bundle import BundleWriter
from drdc_trt.methods.glad.bundle import (
    FEATURES_INPUT,
    NOISE_FILES,
    OUTPUTS,
    UNET_INPUTS,
    UNET_OUTPUT,
    feature_stages,
    io_specs,
    stage_output,
)
from drdc_trt.export.numerics import NumericsReport, Tolerance, compare_arrays, sample_images
from drdc_trt.export.onnx_export import DEFAULT_OPSET, OnnxInfo, export_network
from drdc_trt.export.tensorrt_build import build_plan_set


class GLADStages(torch.nn.Module):
    """The frozen backbone as GLAD reads it: image (in [-1, 1]) → the given stages' maps."""

    def __init__(self, backbone, stages: Sequence[int]):
        super().__init__()
        self.backbone, self.which = backbone, [int(s) for s in stages]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.backbone.stages(x)
        return tuple(feats[s] for s in self.which)


def model_stages(model) -> list[int]:
    g = model.cfg.glad
    return feature_stages(g.map_stages, g.trigger_stage)


def stage_channels(model) -> dict[int, int]:
    chans = model.backbone.net.feature_info.channels()
    return {s: int(chans[s]) for s in model_stages(model)}


def glad_io(model) -> dict[str, tuple[list, list]]:
    return io_specs(model.cfg.image_size, model.cfg.unet.in_channels, stage_channels(model))


# --------------------------------------------------------------------------- ONNX
def export_glad_unet(model, path: str | Path, opset: int = DEFAULT_OPSET, exporter: str = "torchscript",
                     example_batch: int = 2) -> OnnxInfo:
    """``model.unet`` (C = unet.in_channels input channels) → ONNX at ``path``, checked."""
    s, c = model.cfg.image_size, model.cfg.unet.in_channels
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(example_batch, c, s, s, generator=gen)
    t = torch.full((example_batch,), float(model.cfg.glad.t0))
    ins, outs = glad_io(model)["unet"]
    return export_network(model.unet, (x, t), path, "glad.unet", ins, outs, opset, exporter)


def export_glad_features(model, path: str | Path, opset: int = DEFAULT_OPSET, exporter: str = "torchscript",
                         example_batch: int = 2) -> OnnxInfo:
    """The backbone stages GLAD reads → ONNX at ``path``, checked."""
    s = model.cfg.image_size
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(example_batch, 3, s, s, generator=gen) * 2 - 1
    ins, outs = glad_io(model)["features"]
    return export_network(GLADStages(model.backbone, model_stages(model)), (x,), path, "glad.features", ins, outs,
                          opset, exporter)


# --------------------------------------------------------------------------- numerics
def detector_rows(model, images: torch.Tensor, seed: int = 0):
    """(every U-Net call (x, t, ε̂) of the detector's adaptive loop, without compaction; the
    features input cat(images, reconstructions); its PyTorch stage outputs) for ``seed`` (eager, CPU)."""
    from drdc_trt.methods.glad.detector import GLADDetector
    from drdc_trt.methods.glad.adaptive import adaptive_loop

    det = GLADDetector(model, "cpu", seed, compact=False)
    g = model.cfg.glad
    calls = []

    def eps_fn(x_t, t, cond):
        inp = torch.cat([x_t, cond], 1) if g.conditioned else x_t
        tt = torch.full((x_t.shape[0],), float(t))
        out = model.unet(inp, tt)
        calls.append((inp.clone(), tt, out.clone()))
        return out

    with torch.no_grad():
        x = images.float().contiguous()
        state = adaptive_loop(x, det.noise.expand_as(x).contiguous(), det.timesteps, model.alphas_cumprod, eps_fn,
                              model.trigger_distance, det.tau, g.min_step, g.trigger_top_k, compact=False,
                              saff=g.saff_weight, fallback=g.fallback)
        feats_in = torch.cat([x, state.recon]).contiguous()
        feats = GLADStages(model.backbone, model_stages(model))(feats_in)
    return calls, feats_in, feats


def compare_glad(model, unet_onnx, features_onnx, batch_sizes: Sequence[int] = (1, 3),
                 images: torch.Tensor | None = None, tolerance: Tolerance = Tolerance(), seed: int = 0,
                 providers: Sequence[str] | None = ("CPUExecutionProvider",), check: bool = True,
                 max_steps: int = 4) -> NumericsReport:
    """Both ONNX graphs against the PyTorch model on the detector's own inputs; raise
    NumericsError when ``check`` and a comparison exceeds the tolerance. The U-Net is compared at
    up to ``max_steps`` loop steps (first and last included; the worst is reported), the features
    network per stage on cat(images, reconstructions) (2·batch rows)."""
    from drdc_trt.backends.onnxruntime_backend import OrtNetwork
    from drdc_trt.methods.glad.runtime import OrtStages

    model = model.float().eval().cpu()
    s, need = model.cfg.image_size, max(batch_sizes)
    if images is None:
        images = sample_images(s, need, seed)
    if images.shape[0] < need or tuple(images.shape[1:]) != (3, s, s):
        raise ValueError(f"images: need at least {need}×3×{s}×{s}, got {tuple(images.shape)}")
    unet = OrtNetwork(unet_onnx, list(UNET_INPUTS), UNET_OUTPUT, providers)
    feats = OrtStages(features_onnx, [stage_output(st) for st in model_stages(model)], providers)
    report = NumericsReport(tolerance, list(unet.providers))
    for b in batch_sizes:
        calls, feats_in, ref = detector_rows(model, images[:b], seed)
        picks = sorted({round(i * (len(calls) - 1) / max(1, max_steps - 1)) for i in range(max_steps)})
        worst = None
        for xin, t, eps in (calls[i] for i in picks):
            c = compare_arrays("unet", xin.shape[0], eps.numpy(), unet.run(xin.numpy(), t.numpy()), tolerance)
            if worst is None or c.max_abs - c.limit > worst.max_abs - worst.limit:
                worst = c
        report.comparisons.append(worst)
        got = feats.run(feats_in.numpy())
        for stage, r, o in zip(model_stages(model), ref, got):
            report.comparisons.append(compare_arrays(f"features.{stage_output(stage)}", b, r.numpy(), o, tolerance))
    if check:
        report.raise_if_failed()
    return report


# --------------------------------------------------------------------------- TensorRT
def plan_profiles(image_size: int, in_channels: int, max_batch: int) -> dict[str, dict[str, tuple]]:
    """Optimisation profiles: the U-Net sees 1..max_batch rows (the rows still denoising), the
    features network 1..2·max_batch (x0_in and x0_gen of the checking rows; input and
    reconstruction for the map)."""
    s, c = image_size, in_channels
    return {"unet": {UNET_INPUTS[0]: ((1, c, s, s), (max_batch, c, s, s), (max_batch, c, s, s)),
                     UNET_INPUTS[1]: ((1,), (max_batch,), (max_batch,))},
            "features": {FEATURES_INPUT: ((1, 3, s, s), (2 * max_batch, 3, s, s), (2 * max_batch, 3, s, s))}}


def build_glad_plans(onnx: dict[str, Path], out_dir: str | Path, image_size: int, in_channels: int, max_batch: int,
                     fp16: bool = False, timing_cache: str | Path | None = None, device: int = 0) -> dict:
    """TensorRT 10 plans of both networks into ``out_dir``; the manifest's ``tensorrt`` section.
    fp16 pins the U-Net's timestep path and the normalisation layers to float32 (as DRDC's)."""
    return build_plan_set({net: onnx[net] for net in ("unet", "features")}, out_dir,
                          plan_profiles(image_size, in_channels, max_batch), max_batch, fp16, timing_cache,
                          device=device)


# --------------------------------------------------------------------------- bundle
def glad_section(model) -> dict:
    """The manifest's ``glad`` section: the loop's and the map's settings as the PyTorch detector
    uses them (ᾱ of each DDIM timestep: the float32 values of the model's schedule)."""
    from drdc_trt.schedule import ddim_timesteps

    cfg, g = model.cfg, model.cfg.glad
    ts = ddim_timesteps(g.t0, g.num_steps)
    return {"t0": g.t0, "num_steps": g.num_steps, "timesteps": ts,
            "alpha_bar": [float(model.alphas_cumprod[t]) for t in ts], "min_step": g.min_step,
            "trigger_top_k": g.trigger_top_k, "trigger_stage": g.trigger_stage, "map_stages": list(g.map_stages),
            "feature_stages": model_stages(model), "blur_sigma": float(cfg.glad_blur_sigma), "top_k": cfg.glad_top_k,
            "clip": True, "conditioned": bool(g.conditioned), "saff_weight": g.saff_weight, "fallback": g.fallback,
            "step_rule": "drdc_trt.methods.glad.adaptive.adaptive_step (numpy / compiled: "
                         "drdc_trt.runtime.glad_kernels)"}


def export_glad_bundle(model, out: str | Path, fp16: bool = False, tensorrt: bool = False, max_batch: int = 8,
                       seed: int = 0, opset: int = DEFAULT_OPSET, exporter: str = "torchscript",
                       check_batches: Sequence[int] = (1, 3), tolerance: Tolerance = Tolerance(),
                       timing_cache: str | Path | None = None, source: dict | None = None,
                       blocker: Exception | None = None, log: Callable[[str], None] = lambda s: None):
    """Export a GLADModel to the bundle folder ``out`` (see the module doc); the arguments mean
    what they mean for ``exporter.export_bundle``, which calls this for GLAD models."""
    from drdc_trt.methods.glad.detector import GLADDetector

    from drdc_trt.export.results import engine_fields, finish

    model = model.float().eval().cpu()
    cfg = model.cfg
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    with BundleWriter(out) as w:
        log("exporting the GLAD U-Net to ONNX")
        unet_info = export_glad_unet(model, w.path("unet.onnx"), opset, exporter)
        log(f"exporting the backbone stages {model_stages(model)} to ONNX")
        feat_info = export_glad_features(model, w.path("features.onnx"), opset, exporter)
        report = None
        if check_batches:
            log(f"checking ONNX Runtime against PyTorch at batch sizes {list(check_batches)}")
            report = compare_glad(model, w.path("unet.onnx"), w.path("features.onnx"), check_batches,
                                  tolerance=tolerance, seed=seed)
            log(report.text())
        eps = GLADDetector(model, "cpu", seed).noise.cpu().numpy().astype(np.float32)
        w.save_array(NOISE_FILES["eps"], eps)
        noise = {"eps": {"file": NOISE_FILES["eps"], "shape": list(eps.shape), "dtype": "float32"}}
        section = None
        if tensorrt and blocker is None:
            log(f"building TensorRT plans ({'fp16' if fp16 else 'fp32'}, max batch {max_batch})")
            section = build_glad_plans({"unet": w.path("unet.onnx"), "features": w.path("features.onnx")}, w.staging,
                                       cfg.image_size, cfg.unet.in_channels, max_batch, fp16, timing_cache)
        nets = {}
        for net, info in (("unet", unet_info), ("features", feat_info)):
            nets[net] = {"onnx": f"{net}.onnx", "opset": info.opset, "exporter": exporter, "ops": info.ops,
                         "inputs": info.inputs, "outputs": info.outputs}
        st = model.stats
        manifest = {
            "method": "glad",
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "source": source or {"checkpoint": None, "weights_sha256": None},
            "config": cfg.to_dict(),
            "image": {"size": cfg.image_size, "layout": "NCHW", "channels": "RGB", "dtype": "float32",
                      "value_range": [-1.0, 1.0],
                      "note": "pixel/127.5 - 1; the backbone's ImageNet normalisation is inside features.onnx"},
            "networks": nets,
            "glad": glad_section(model),
            "noise": noise,
            "noise_seed": seed,
            "noise_source": f"drdc_trt.models.glad.GLADDetector(seed={seed}).noise: torch.Generator()"
                            f".manual_seed({seed}), randn 3×S×S, the same ε for every image",
            "thresholds": {"image_threshold": st.image_threshold, "pixel_threshold": st.pixel_threshold,
                           "num_images": st.num_images, "detector_seed": st.detector_seed, "tau": st.tau},
            "outputs": list(OUTPUTS),
            **engine_fields(max_batch, fp16, report, section),
        }
        path = w.commit(manifest)
    return finish(path, report, section, blocker)


__all__ = ["GLADStages", "build_glad_plans", "compare_glad", "detector_rows", "export_glad_bundle",
           "export_glad_features", "export_glad_unet", "glad_section", "plan_profiles"]
