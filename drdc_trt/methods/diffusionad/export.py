"""DiffusionAD checkpoint → bundle (``drdc export`` of a model whose config has method = "diffusionad").

1. the reconstruction U-Net (x_t N×3×S×S, t) and the segmentation net (B×6×S×S) → ONNX, checked
   for TensorRT 10 like DRDC's graphs (``onnx_export.check_onnx``);
2. ONNX Runtime vs PyTorch (:func:`compare_diffusionad`): the U-Net on the very rows the detector
   feeds it (x noised to t_a and t_b with its noises), the segmentation net on cat(x, x0_g) of the
   PyTorch reconstruction; same tolerance rule as DRDC's (``numerics.Tolerance``);
3. the detector's two noises for ``seed`` (noise_a.npy, noise_b.npy), so that the torch-free
   runtime computes what ``DiffusionADDetector(seed=seed)`` computes;
4. optionally TensorRT plans of both networks (:func:`build_diffusionad_plans`);
5. manifest (``export.diffusionad_bundle``) + hashes, written atomically.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from drdc_trt.export.bundle import BundleWriter
from drdc_trt.methods.diffusionad.bundle import (
    NOISE_FILES,
    ROWS_PER_IMAGE,
    SEG_INPUT,
    SEG_OUTPUT,
    UNET_INPUTS,
    UNET_OUTPUT,
    io_specs,
)
from drdc_trt.export.numerics import NumericsReport, Tolerance, compare_arrays, sample_images
from drdc_trt.export.onnx_export import DEFAULT_OPSET, OnnxInfo, export_network
from drdc_trt.export.tensorrt_build import build_plan_set


# --------------------------------------------------------------------------- ONNX
def export_diffusionad_unet(model, path: str | Path, opset: int = DEFAULT_OPSET, exporter: str = "torchscript",
                            example_batch: int = 2) -> OnnxInfo:
    """``model.unet`` (3 input channels, no condition) → ONNX at ``path``, checked."""
    s = model.cfg.image_size
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(example_batch, 3, s, s, generator=gen)
    t = torch.tensor([float(model.cfg.diffusionad.t_a), float(model.cfg.diffusionad.t_b)] * example_batch)[
        :example_batch]
    ins, outs = io_specs(s)["unet"]
    return export_network(model.unet, (x, t), path, "diffusionad.unet", ins, outs, opset, exporter)


def export_segmentation(model, path: str | Path, opset: int = DEFAULT_OPSET, exporter: str = "torchscript",
                        example_batch: int = 2) -> OnnxInfo:
    """``model.seg`` (cat(image, x0_g) → anomaly map) → ONNX at ``path``, checked."""
    s = model.cfg.image_size
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(example_batch, 6, s, s, generator=gen) * 2 - 1
    ins, outs = io_specs(s)["seg"]
    return export_network(model.seg, (x,), path, "diffusionad.seg", ins, outs, opset, exporter)


# --------------------------------------------------------------------------- numerics
def detector_rows(model, images: torch.Tensor, seed: int = 0):
    """(U-Net rows B·2×3×S×S, their timesteps, the PyTorch ε, seg input cat(x, x0_g) B×6×S×S, the
    PyTorch map) of the detector with ``seed`` on ``images`` (eager, CPU)."""
    from drdc_trt.methods.diffusionad.detector import DiffusionADDetector
    from drdc_trt.methods.diffusionad.norm_guided import norm_guided_x0

    det = DiffusionADDetector(model, "cpu", seed)
    b, a = images.shape[0], model.cfg.diffusionad
    t_a, t_b = torch.full((b,), a.t_a), torch.full((b,), a.t_b)
    with torch.no_grad():
        x_a, e_a, x_b, e_b = model.two_scales(images, t_a, t_b, det.noise_a.expand(b, -1, -1, -1),
                                              det.noise_b.expand(b, -1, -1, -1))
        rows = torch.stack([x_a, x_b], 1).flatten(0, 1).contiguous()
        t = torch.stack([t_a, t_b], 1).flatten().float()
        eps = torch.stack([e_a, e_b], 1).flatten(0, 1)
        x0_g, _ = norm_guided_x0(x_a, e_a, x_b, e_b, model.alpha_bar(t_a), model.alpha_bar(t_b), a.w)
        seg_in = torch.cat([images, x0_g], 1).contiguous()
        maps = model.seg(seg_in)
    return rows, t, eps, seg_in, maps


def compare_diffusionad(model, unet_onnx, seg_onnx, batch_sizes: Sequence[int] = (1, 2),
                        images: torch.Tensor | None = None, tolerance: Tolerance = Tolerance(), seed: int = 0,
                        providers: Sequence[str] | None = ("CPUExecutionProvider",),
                        check: bool = True) -> NumericsReport:
    """Both ONNX graphs against the PyTorch model on the detector's own inputs; raise
    NumericsError when ``check`` and a comparison exceeds the tolerance. Batch sizes count images
    (the U-Net sees 2 rows per image)."""
    from drdc_trt.backends.onnxruntime_backend import OrtNetwork

    model = model.float().eval().cpu()
    s, need = model.cfg.image_size, max(batch_sizes)
    if images is None:
        images = sample_images(s, need, seed)
    if images.shape[0] < need or tuple(images.shape[1:]) != (3, s, s):
        raise ValueError(f"images: need at least {need}×3×{s}×{s}, got {tuple(images.shape)}")
    unet = OrtNetwork(unet_onnx, list(UNET_INPUTS), UNET_OUTPUT, providers)
    seg = OrtNetwork(seg_onnx, [SEG_INPUT], SEG_OUTPUT, providers)
    report = NumericsReport(tolerance, list(unet.providers))
    for b in batch_sizes:
        rows, t, eps, seg_in, maps = detector_rows(model, images[:b].float().contiguous(), seed)
        report.comparisons.append(compare_arrays("unet", rows.shape[0], eps.numpy(), unet.run(rows.numpy(), t.numpy()),
                                           tolerance))
        report.comparisons.append(compare_arrays("seg", b, maps.numpy(), seg.run(seg_in.numpy()), tolerance))
    if check:
        report.raise_if_failed()
    return report


# --------------------------------------------------------------------------- TensorRT
def plan_profiles(image_size: int, max_batch: int) -> dict[str, dict[str, tuple]]:
    """Optimisation profiles: the U-Net sees 2 rows per image, the segmentation net one."""
    s, lo, hi = image_size, ROWS_PER_IMAGE, ROWS_PER_IMAGE * max_batch
    return {"unet": {"x": ((lo, 3, s, s), (hi, 3, s, s), (hi, 3, s, s)), "timesteps": ((lo,), (hi,), (hi,))},
            "seg": {SEG_INPUT: ((1, 6, s, s), (max_batch, 6, s, s), (max_batch, 6, s, s))}}


def build_diffusionad_plans(onnx: dict[str, Path], out_dir: str | Path, image_size: int, max_batch: int,
                            fp16: bool = False, timing_cache: str | Path | None = None, device: int = 0) -> dict:
    """TensorRT 10 plans of both networks into ``out_dir``; the manifest's ``tensorrt`` section.
    fp16 pins the U-Net's timestep path and the normalisation layers to float32 (as DRDC's)."""
    return build_plan_set({net: onnx[net] for net in ("unet", "seg")}, out_dir, plan_profiles(image_size, max_batch),
                          max_batch, fp16, timing_cache, device=device)


# --------------------------------------------------------------------------- bundle
def export_diffusionad_bundle(model, out: str | Path, fp16: bool = False, tensorrt: bool = False, max_batch: int = 8,
                              seed: int = 0, opset: int = DEFAULT_OPSET, exporter: str = "torchscript",
                              check_batches: Sequence[int] = (1, 2), tolerance: Tolerance = Tolerance(),
                              timing_cache: str | Path | None = None, source: dict | None = None,
                              blocker: Exception | None = None, log: Callable[[str], None] = lambda s: None):
    """Export a DiffusionADModel to the bundle folder ``out`` (see the module doc); the arguments
    mean what they mean for ``exporter.export_bundle``, which calls this for DiffusionAD models."""
    from drdc_trt.methods.diffusionad.detector import DiffusionADDetector

    from drdc_trt.export.results import engine_fields, finish

    model = model.float().eval().cpu()
    cfg, a = model.cfg, model.cfg.diffusionad
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    with BundleWriter(out) as w:
        log("exporting the DiffusionAD U-Net to ONNX")
        unet_info = export_diffusionad_unet(model, w.path("unet.onnx"), opset, exporter)
        log("exporting the segmentation net to ONNX")
        seg_info = export_segmentation(model, w.path("seg.onnx"), opset, exporter)
        report = None
        if check_batches:
            log(f"checking ONNX Runtime against PyTorch at batch sizes {list(check_batches)}")
            report = compare_diffusionad(model, w.path("unet.onnx"), w.path("seg.onnx"), check_batches,
                                         tolerance=tolerance, seed=seed)
            log(report.text())
        det = DiffusionADDetector(model, "cpu", seed)
        noise = {}
        for key, t in (("a", det.noise_a), ("b", det.noise_b)):
            arr = t.cpu().numpy().astype(np.float32)
            w.save_array(NOISE_FILES[key], arr)
            noise[key] = {"file": NOISE_FILES[key], "shape": list(arr.shape), "dtype": "float32"}
        section = None
        if tensorrt and blocker is None:
            log(f"building TensorRT plans ({'fp16' if fp16 else 'fp32'}, max batch {max_batch})")
            section = build_diffusionad_plans({"unet": w.path("unet.onnx"), "seg": w.path("seg.onnx")}, w.staging,
                                              cfg.image_size, max_batch, fp16, timing_cache)
        nets = {}
        for net, info in (("unet", unet_info), ("seg", seg_info)):
            nets[net] = {"onnx": f"{net}.onnx", "opset": info.opset, "exporter": exporter, "ops": info.ops,
                         "inputs": info.inputs, "outputs": info.outputs}
        st = model.stats
        manifest = {
            "method": "diffusionad",
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "source": source or {"checkpoint": None, "weights_sha256": None},
            "config": cfg.to_dict(),
            "image": {"size": cfg.image_size, "layout": "NCHW", "channels": "RGB", "dtype": "float32",
                      "value_range": [-1.0, 1.0], "note": "pixel/127.5 - 1"},
            "networks": nets,
            "rows_per_image": ROWS_PER_IMAGE,
            "row_layout": "U-Net row 2b: image b noised to t_a with noise_a; row 2b + 1: to t_b with noise_b",
            "diffusionad": {"t_a": a.t_a, "t_b": a.t_b, "w": a.w, "alpha_bar_a": float(model.alphas_cumprod[a.t_a]),
                            "alpha_bar_b": float(model.alphas_cumprod[a.t_b]), "top_k": cfg.top_k,
                            "combination": "drdc_trt.ops.reference_norm_guided (fused: drdc_trt._C.norm_guided)"},
            "noise": noise,
            "noise_seed": seed,
            "noise_source": f"drdc_trt.models.diffusionad.DiffusionADDetector(seed={seed}): torch.Generator()"
                            f".manual_seed({seed}), randn noise_a then noise_b, each 3×S×S",
            "thresholds": {"image_threshold": st.image_threshold, "pixel_threshold": st.pixel_threshold,
                           "num_images": st.num_images, "detector_seed": st.detector_seed},
            **engine_fields(max_batch, fp16, report, section),
        }
        path = w.commit(manifest)
    return finish(path, report, section, blocker)


__all__ = ["build_diffusionad_plans", "compare_diffusionad", "detector_rows",
           "export_diffusionad_bundle", "export_diffusionad_unet", "export_segmentation", "plan_profiles"]
