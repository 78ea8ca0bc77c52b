"""Engines of the torch-free runtime on one bundle, timed in one run: a warm-up call each, then calls
interleaved (ORT, OV, ORT, OV, ...) so that load on the machine hits all alike; prints the median per
engine and each engine's time over the first one's as one JSON line.

    python3 benchmarks/ort_vs_ov.py BUNDLE BATCH CALLS [ENGINE ...]

ENGINE: ``onnxruntime`` or ``openvino:f32|bf16|int8[:STREAMS]`` [default: onnxruntime openvino:f32];
int8 needs a bundle written with ``drdc export --int8``; STREAMS 0 keeps OpenVINO's latency request
only (the default splits calls of several rows over OpenVINO's CPU streams).
"""
import json
import statistics
import sys
import time

import numpy as np

from drdc_trt.runtime import load_bundle, load_detector

DEFAULT_ENGINES = ("onnxruntime", "openvino:f32")


def _detector(bundle: str, engine: str):
    backend, *rest = engine.split(":")
    kw = {"precision": rest[0]} if rest else {}
    if len(rest) > 1:
        kw["streams"] = int(rest[1])
    return load_detector(bundle, backend=backend, **kw)


def main(bundle: str, batch: int, calls: int, engines=DEFAULT_ENGINES) -> dict:
    dets = {e: _detector(bundle, e) for e in engines}
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
    first = engines[0]
    out = {"bundle": bundle, "batch": batch, "calls": calls, "median_ms": med,
           "over_first": {k: v / med[first] for k, v in med.items()}}
    if "onnxruntime" in med and "openvino:f32" in med:
        out["ort_over_ov"] = med["onnxruntime"] / med["openvino:f32"]
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), tuple(sys.argv[4:]) or DEFAULT_ENGINES)))
