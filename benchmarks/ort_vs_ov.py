"""ONNX Runtime f32 against OpenVINO f32 in the torch-free runtime on one bundle: a warm-up call each,
then calls interleaved (ORT, OV, ORT, OV, ...) so that load on the machine hits both alike; prints the
median per engine and their ratio as one JSON line.

    python3 benchmarks/ort_vs_ov.py BUNDLE BATCH CALLS
"""
import json
import statistics
import sys
import time

import numpy as np

from drdc_trt.runtime import load_bundle, load_detector


def main(bundle: str, batch: int, calls: int) -> dict:
    dets = {"onnxruntime": load_detector(bundle, backend="onnxruntime"),
            "openvino f32": load_detector(bundle, backend="openvino", precision="f32")}
    s = load_bundle(bundle).image_size
    x = np.random.default_rng(0).uniform(-1, 1, (batch, 3, s, s)).astype(np.float32)
    for d in dets.values():
        d.predict(x)
    times = {k: [] for k in dets}
    for _ in range(calls):
        for k, d in dets.items():
            t = time.perf_counter()
            d.predict(x)
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return {"bundle": bundle, "batch": batch, "calls": calls, "median_ms": med,
            "ort_over_ov": med["onnxruntime"] / med["openvino f32"]}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
