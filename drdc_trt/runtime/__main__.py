"""``python -m drdc_trt.runtime BUNDLE IMAGES.npy --out RESULTS.npz`` (no torch, no click).

IMAGES.npy: B×3×S×S float32 in [-1, 1] (RGB). RESULTS.npz: the Result fields
(pred_score, pred_label, anomaly_map, pred_mask, base_map, diff_map, base_score; a DiffusionAD
bundle: pred_score, pred_label, anomaly_map, pred_mask, reconstruction; a GLAD bundle adds steps,
trigger_step, trigger_kind, max_score).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from . import load_detector
from drdc_trt.runtime import RUNTIME_BACKENDS


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m drdc_trt.runtime", description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("images", help="B×3×S×S float32 .npy in [-1, 1]")
    p.add_argument("--out", required=True, help="results .npz")
    p.add_argument("--backend", default="auto", choices=("auto",) + RUNTIME_BACKENDS,
                   help="auto: the fastest engine here (drdc_trt/runtime/choice.py) [auto]")
    p.add_argument("--kernels", default="auto", choices=("auto", "numpy", "csrc"))
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--ov-device", default=None, help="openvino: device (CPU, GPU, NPU, AUTO) [CPU]")
    p.add_argument("--ov-precision", default=None, choices=("f32", "bf16"), help="openvino: inference precision [f32]")
    p.add_argument("--rebuild-plans", action="store_true", help="TensorRT: rebuild plans that do not fit this machine")
    a = p.parse_args(argv)
    if a.batch_size < 1:
        p.error(f"--batch-size {a.batch_size}: must be >= 1")
    try:
        try:
            images = np.load(a.images, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise ValueError(f"{a.images}: not a readable .npy array ({e})") from None
        if not isinstance(images, np.ndarray):  # an .npz archive
            raise ValueError(f"{a.images}: expected an .npy array, got an .npz archive")
        kwargs = {"rebuild": True} if a.rebuild_plans and a.backend == "tensorrt" else {}
        if a.backend == "openvino":
            kwargs = {"device": a.ov_device, "precision": a.ov_precision}
        elif a.backend == "auto" and (a.ov_device or a.ov_precision):
            raise ValueError("--ov-device / --ov-precision pin OpenVINO: give --backend openvino with them")
        det = load_detector(a.bundle, backend=a.backend, kernels=a.kernels, **kwargs)
        try:
            res = det.predict(images, batch_size=a.batch_size)
        except ValueError as e:
            raise ValueError(f"{a.images}: {e}") from None
        tmp = f"{a.out}.tmp{os.getpid()}.npz"
        np.savez(tmp, **res.as_dict())
        os.replace(tmp, a.out)
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"images": len(res), "kernels": det.kernels.name, "backend": det.runner.name,
                      "pred_score": [float(s) for s in res.pred_score]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
