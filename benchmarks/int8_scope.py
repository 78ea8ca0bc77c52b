"""What int8 must leave in float: the U-Net of a bundle quantized four ways with NNCF, each scored
against f32 on held-out rows of the loop's own inputs (rms(int8 − f32) / rms(f32), as the export's
check) and timed on 32 of those rows. Prints one JSON line per variant.

    python3 benchmarks/int8_scope.py BUNDLE CALIB_DATA [NETWORK]

Variants: ``all`` (every op NNCF would quantize), ``timestep`` (the time-step path in float),
``transformer`` (+ NNCF's transformer scheme), ``first_last`` (+ the first and last weighted layers:
what ``drdc export --int8`` does).
"""
import json
import sys
import time

import numpy as np

from drdc_trt.backends.openvino_backend import core
from drdc_trt.export.bundle import load_bundle
from drdc_trt.export.int8 import CALIB_ROWS, CHECK_ROWS, calibration_images, check, float_scope, import_nncf, record_rows


def main(bundle_dir: str, calib: str, net: str = "unet") -> None:
    nncf = import_nncf()
    b = load_bundle(bundle_dir)
    images, _ = calibration_images(calib, b.image_size)
    rows = record_rows(b, images, CALIB_ROWS + CHECK_ROWS, seed=0)[net].rows
    order = np.random.default_rng(0).permutation(len(rows))
    held, calib_rows = [rows[i] for i in order[:CHECK_ROWS]], [rows[i] for i in order[CHECK_ROWS:]]
    names = [s.name for s in b.inputs(net)]
    path = str(b.onnx_path(net))
    scope = float_scope(core().read_model(path))
    variants = {
        "all": {},
        "timestep": {"ignored_scope": nncf.IgnoredScope(names=scope["timestep"], validate=False)},
        "transformer": {"model_type": nncf.ModelType.TRANSFORMER,
                        "ignored_scope": nncf.IgnoredScope(names=scope["timestep"], validate=False)},
        "first_last": {"model_type": nncf.ModelType.TRANSFORMER,
                       "ignored_scope": nncf.IgnoredScope(names=scope["timestep"] + scope["first"] + scope["last"],
                                                          validate=False)},
    }
    feed = {n: np.concatenate([r[i] for r in held[:32]]) for i, n in enumerate(names)}
    f32 = core().compile_model(core().read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for name, kw in variants.items():
        q = nncf.quantize(core().read_model(path), nncf.Dataset(calib_rows, lambda r: dict(zip(names, r))),
                          subset_size=len(calib_rows), **kw)
        res = check(core().read_model(path), q, held, names, b.outputs(net)[0].name)
        cq = core().compile_model(q, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        ms = {}
        for label, c in (("f32", f32), ("int8", cq)):
            c(feed)
            t = time.perf_counter()
            for _ in range(8):
                c(feed)
            ms[label] = (time.perf_counter() - t) / 8 * 1e3
        print(json.dumps({"variant": name, "rel_rms": round(res["rel_rms"], 4), "int8_layers": res["int8_layers"],
                          "ms_32_rows": {k: round(v, 1) for k, v in ms.items()},
                          "int8_over_f32": round(ms["int8"] / ms["f32"], 3)}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
