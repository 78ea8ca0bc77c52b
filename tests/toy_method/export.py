"""The toy bundle: one ONNX network (image → map), its thresholds and top-k."""

from __future__ import annotations

import time

import torch

from drdc_trt.export.bundle import BundleWriter
from drdc_trt.export.numerics import NumericsReport, compare_arrays, sample_images
from drdc_trt.export.results import engine_fields, finish

NET, INPUT, OUTPUT = "map", "image", "map"


def io_specs(s: int):
    return ([{"name": INPUT, "shape": ["batch", 3, s, s], "dtype": "float32"}],
            [{"name": OUTPUT, "shape": ["batch", 1, s, s], "dtype": "float32"}])


def export_toy_bundle(model, out, fp16, tensorrt, max_batch, seed, opset, exporter, check_batches, tolerance,
                      timing_cache, source, blocker, log):
    cfg, s = model.cfg, model.cfg.image_size
    net = model.network().eval()
    with BundleWriter(out) as w:
        log("exporting the toy map network to ONNX")
        torch.onnx.export(net, (torch.zeros(1, 3, s, s),), str(w.path(f"{NET}.onnx")), input_names=[INPUT],
                          output_names=[OUTPUT], dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
                          opset_version=opset, dynamo=False)
        report = None
        if check_batches:
            from drdc_trt.backends.onnxruntime_backend import OrtNetwork

            ort = OrtNetwork(w.path(f"{NET}.onnx"), [INPUT], OUTPUT)
            report = NumericsReport(tolerance, ort.providers)
            for b in check_batches:
                x = sample_images(s, b, seed)
                with torch.no_grad():
                    ref = net(x).numpy()
                report.comparisons.append(compare_arrays(NET, b, ref, ort.run(x.numpy()), tolerance))
            report.raise_if_failed()
        ins, outs = io_specs(s)
        st = model.stats
        manifest = {
            "method": "toy",
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "source": source,
            "config": cfg.to_dict(),
            "networks": {NET: {"onnx": f"{NET}.onnx", "opset": opset, "exporter": "torchscript",
                               "inputs": ins, "outputs": outs}},
            "toy": {"top_k": cfg.toy.top_k},
            "noise_seed": seed,
            "thresholds": {"image_threshold": st.image_threshold, "pixel_threshold": st.pixel_threshold,
                           "num_images": st.num_images, "detector_seed": st.detector_seed},
            **engine_fields(max_batch, fp16, report, None),
        }
        path = w.commit(manifest)
    return finish(path, report, None, blocker)


def validate_manifest(m, where, files, error=ValueError, manifest_name="manifest.json", check_tensor=None,
                      check_array=None) -> None:
    missing = [k for k in ("config", "networks", "toy", "thresholds", "noise_seed", "max_batch") if k not in m]
    if missing:
        raise error(f"bundle {where}: {manifest_name} of a toy bundle lacks field(s) {missing}")
    net = m["networks"].get(NET) if isinstance(m["networks"], dict) else None
    if not isinstance(net, dict) or net.get("onnx") not in files:
        raise error(f"bundle {where}: {manifest_name}: networks.{NET}.onnx is missing or not among its files")
    for role in ("inputs", "outputs"):
        for i, d in enumerate(net.get(role) or ()):
            check_tensor(d, f"networks.{NET}.{role}[{i}]")
    k = m["toy"].get("top_k") if isinstance(m["toy"], dict) else None
    if not (isinstance(k, int) and k >= 1):
        raise error(f"bundle {where}: {manifest_name}: toy.top_k must be a positive int, got {k!r}")
