"""The C++ host (`drdc_host --backend openvino`) against the Python torch-free runtime on the same
bundle, precision and images, in one run: rounds alternate host, Python, host, Python, ... so that
load on the machine hits both alike. Each round scores the images one at a time (batch 1, as a line
scores parts); the host's own first pass is untimed (`--repeat 2`), the Python runtime gets a warm-up
call before the rounds. Prints one JSON line: median ms per image of each and host / Python.

    python3 benchmarks/host_vs_python.py HOST_EXE BUNDLE PRECISION ROUNDS IMAGE.bmp...
"""
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def host_round(exe: str, bundle: str, precision: str, images: list[str]) -> list[float]:
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run([exe, "--bundle", bundle, "--backend", "openvino", "--precision", precision,
                               "--threads", "2", "--repeat", "2", "--out", out, *images],
                              capture_output=True, text=True, check=True)
    m = re.search(r"latency per image: median ([\d.]+) ms", proc.stdout)
    if not m:
        raise RuntimeError(f"no latency line in the host's output:\n{proc.stdout}")
    return [float(m.group(1))]


def main(exe: str, bundle: str, precision: str, rounds: int, images: list[str]) -> dict:
    from drdc_trt.data.folder import image_array
    from drdc_trt.runtime import load_detector

    det = load_detector(bundle, backend="openvino", precision=precision, threads=2)
    s = det.bundle.image_size
    x = np.stack([image_array(p, s).transpose(2, 0, 1) for p in images]).astype(np.float32)
    det.predict(x[:1])
    host, py = [], []
    for _ in range(rounds):
        host += host_round(exe, bundle, precision, images)
        for i in range(len(x)):
            t = time.perf_counter()
            det.predict(x[i:i + 1], batch_size=1)
            py.append((time.perf_counter() - t) * 1e3)
    h, p = statistics.median(host), statistics.median(py)
    return {"bundle": bundle, "precision": precision, "images": len(images), "rounds": rounds,
            "host_median_ms_per_image": h, "python_median_ms_per_image": p, "host_over_python": h / p}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:])))
