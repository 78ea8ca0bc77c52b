"""A bundle's U-Net in each OpenVINO precision split, on the same rows of its own loop: the ONNX
graph compiled f32 and bf16, and the int8 IR (``drdc export --int8``) with the layers NNCF kept in
float compiled f32 (what ``--precision int8`` runs) or bf16 (a mixed split). Each is scored against
f32 as the export's check scores int8 (rms(x − f32) / rms(f32) on held-out loop rows) and timed on
batches of 32 rows (median of the calls). Prints one JSON line per split.

    python3 benchmarks/unet_precisions.py BUNDLE CALIB_DATA [IMAGES] [CALLS]

IMAGES (16) normal training images of CALIB_DATA run through the loop on OpenVINO f32 give the rows.
"""
import json
import sys
import time

import numpy as np

from drdc_trt.backends.openvino_backend import core, supports_bf16
from drdc_trt.export.bundle import load_bundle
from drdc_trt.export.int8 import calibration_images, record_rows


def main(bundle_dir: str, calib: str, images: int = 16, calls: int = 10, net: str = "unet") -> None:
    b = load_bundle(bundle_dir)
    section = b.manifest.get("int8") or {}
    if net not in section.get("networks", {}):
        raise SystemExit(f"{bundle_dir}: no int8 {net} (drdc export --int8 --calib DATA)")
    imgs, _ = calibration_images(calib, b.image_size, images)
    rows = record_rows(b, imgs, 10_000, seed=0)[net].rows
    names = [s.name for s in b.inputs(net)]
    batch = {n: np.concatenate([r[i] for r in rows[:32]]) for i, n in enumerate(names)}
    held = rows[32:96]
    onnx, xml = str(b.onnx_path(net)), str(b.file(section["networks"][net]["xml"]))
    splits = [("f32", onnx, "f32"), ("int8 (float layers f32)", xml, "f32")]
    if supports_bf16():
        splits += [("bf16", onnx, "bf16"), ("int8 (float layers bf16)", xml, "bf16")]
    ref = None
    for label, path, hint in splits:
        cm = core().compile_model(core().read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                                     "PERFORMANCE_HINT": "LATENCY"})
        req = cm.create_infer_request()
        outs = [req.infer(dict(zip(names, r)))[0].copy() for r in held]
        got = np.concatenate(outs).astype(np.float64)
        if ref is None:
            ref = got
        rms = float(np.sqrt(((got - ref) ** 2).mean()) / np.sqrt((ref ** 2).mean()))
        req.infer(batch)
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            req.infer(batch)
            times.append(time.perf_counter() - t0)
        print(json.dumps({"split": label, "rms_vs_f32": round(rms, 5), "rows": 32,
                          "median_ms": round(1e3 * float(np.median(times)), 1),
                          "held_rows": len(held)}), flush=True)


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], *(int(v) for v in a[2:4]))
