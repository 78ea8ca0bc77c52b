"""DRDC's checkpoint → bundle (the registry's ``export`` entry; drdc_trt.export.exporter runs it):
base model and U-Net to ONNX, the numerics check, the loop noise of the detector seed, optional
TensorRT plans, and the manifest's DRDC fields."""

from __future__ import annotations

import time

import numpy as np

from drdc_trt.export.bundle import NOISE_FILES, PIXEL_STATS_FILES, BundleWriter
from drdc_trt.export.results import engine_fields, finish
from drdc_trt.methods.drdc.numerics import compare_networks
from drdc_trt.export.onnx_export import export_base, export_unet
from drdc_trt.export.tensorrt_build import build_plans
from drdc_trt.methods.drdc.pipeline import Detector
from drdc_trt.schedule import ddim_timesteps


def export_drdc_bundle(model, out, fp16, tensorrt, max_batch, seed, opset, exporter, check_batches, tolerance,
                       timing_cache, source, blocker, log):
    cfg = model.cfg
    with BundleWriter(out) as w:
        log("exporting base model to ONNX")
        base_info = export_base(model, w.path("base.onnx"), opset, exporter)
        log("exporting U-Net to ONNX")
        unet_info = export_unet(model, w.path("unet.onnx"), opset, exporter)
        report = None
        if check_batches:
            log(f"checking ONNX Runtime against PyTorch at batch sizes {list(check_batches)}")
            report = compare_networks(model, w.path("base.onnx"), w.path("unet.onnx"), check_batches,
                                      tolerance=tolerance, seed=seed)
            log(report.text())
        det = Detector(cfg, None, model.stats, "cpu", seed=seed)
        arrays = {"fill": det.noise.fill, "start": det.noise.start, "steps": det.noise.steps}
        noise = {}
        for key, t in arrays.items():
            a = t.cpu().numpy().astype(np.float32)
            w.save_array(NOISE_FILES[key], a)
            noise[key] = {"file": NOISE_FILES[key], "shape": list(a.shape), "dtype": "float32"}
        pixel_stats = None
        if model.stats.pixel is not None:  # fusion.diff_norm = "pixel"
            pixel_stats = {}
            for key, t in (("mean", model.stats.pixel.mean), ("std", model.stats.pixel.std)):
                a = t.cpu().numpy().astype(np.float32)
                w.save_array(PIXEL_STATS_FILES[key], a)
                pixel_stats[key] = {"file": PIXEL_STATS_FILES[key], "shape": list(a.shape), "dtype": "float32"}
        section = None
        if tensorrt and blocker is None:
            log(f"building TensorRT plans ({'fp16' if fp16 else 'fp32'}, max batch {max_batch})")
            section = build_plans({"base": w.path("base.onnx"), "unet": w.path("unet.onnx")}, w.staging,
                                  cfg.to_dict(), cfg.rows_per_image, max_batch, fp16, timing_cache)
        st = model.stats
        d, f = cfg.diffusion, cfg.fusion
        manifest = {
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "source": source,
            "config": cfg.to_dict(),
            "image": {"size": cfg.image_size, "layout": "NCHW", "channels": "RGB", "dtype": "float32",
                      "value_range": [-1.0, 1.0],
                      "note": "pixel/127.5 - 1; the backbone's ImageNet normalisation is inside base.onnx"},
            "networks": {
                "base": {"onnx": "base.onnx", "opset": base_info.opset, "exporter": exporter, "ops": base_info.ops,
                         "inputs": base_info.inputs, "outputs": base_info.outputs},
                "unet": {"onnx": "unet.onnx", "opset": unet_info.opset, "exporter": exporter, "ops": unet_info.ops,
                         "inputs": unet_info.inputs, "outputs": unet_info.outputs},
            },
            "rows_per_image": cfg.rows_per_image,
            "row_layout": "row n = (b·J + j)·K + k; row (j, k) treats set k of grid spec j as unknown",
            "label_seed": seed,
            "timesteps": ddim_timesteps(d.t0, d.num_steps),
            "noise": noise,
            "noise_source": f"drdc_trt.methods.drdc.pipeline.Detector(seed={seed}).noise (torch.Generator().manual_seed"
                            f"({seed}): randn fill, start, steps); rows of image b are tiled b-major",
            "normalization": list(st.as_tuple()),
            "fusion_stats": {k: v for k, v in vars(st).items() if k != "pixel"},
            "pixel_stats": pixel_stats,
            "fusion": {"pool_factors": list(f.pool_factors), "mean_filter": f.mean_filter, "lam": f.lam,
                       "score_window": cfg.score_window, "score_window_at_224": f.score_window_at_224},
            **engine_fields(max_batch, fp16, report, section),
        }
        path = w.commit(manifest)
    return finish(path, report, section, blocker)

