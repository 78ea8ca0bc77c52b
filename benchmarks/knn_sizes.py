"""The engine's patch-kNN (drdc_trt/models/knn.py, lite0 ImageNet features, the defaults of
`drdc ablate`'s kNN row) on an MVTec-layout data set at several image sizes: the trend with size that
the diffusion methods are measured against. The bank is built from the training split minus the
held-out calibration images (train.seed 0, as every method's training divides it).

    python3 benchmarks/knn_sizes.py DATA OUT_STEM [--sizes 64,128,224]

Writes OUT_STEM.json and OUT_STEM.md: the four metrics per size, the per-defect table, seconds.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from drdc_trt import metrics
from drdc_trt.benchmarking.machine import cpu_model
from drdc_trt.config import preset
from drdc_trt.data import load_split
from drdc_trt.models.backbone import Backbone
from drdc_trt.models.knn import KNNConfig, PatchKNN
from drdc_trt.study_parts import defect_rows, per_defect_markdown
from drdc_trt.training import split_calibration


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--sizes", default="64,128,224")
    a = ap.parse_args()
    knn_cfg = KNNConfig()
    out = {"command": "python3 benchmarks/knn_sizes.py " + " ".join(sys.argv[1:]),
           "machine": f"{cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "knn": knn_cfg.to_dict(), "sizes": []}
    for size in (int(s) for s in a.sizes.split(",")):
        cfg = preset("small").replace(image_size=size)
        t0 = time.perf_counter()
        train = load_split(a.data, "train", size)
        test = load_split(a.data, "test", size)
        train_idx, calib_idx = split_calibration(len(train), cfg.train.calib_fraction, cfg.train.seed)
        knn = PatchKNN(Backbone(cfg.backbone, cfg.feature_size), size, cfg.score_window, knn_cfg)
        knn.fit(train.images[train_idx], train.images[calib_idx])
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores, maps = knn.predict(test.images)
        t_pred = time.perf_counter() - t0
        row = metrics.evaluate(test.labels, scores, test.masks[:, 0], maps)
        name = f"kNN {size}²"
        out["sizes"].append({"size": size, **row, "fit_s": t_fit, "predict_s": t_pred,
                             "ms_per_image": 1e3 * t_pred / len(test), "per_defect": defect_rows(test, {name: (scores, maps)})})
        print(size, {k: round(100 * v, 1) for k, v in row.items()}, f"fit {t_fit:.0f} s, predict {t_pred:.0f} s",
              flush=True)
    stem = Path(a.out)
    stem.with_suffix(".json").write_text(json.dumps(out, indent=2))
    lines = [f"# The engine's patch-kNN on {Path(a.data).name} at {a.sizes.replace(',', ', ')} px",
             "", f"- date: {out['date']}", f"- machine: {out['machine']}", f"- command: `{out['command']}`",
             f"- kNN: {json.dumps(out['knn'])}; bank from the training split minus the 10 % held out "
             "(train.seed 0), map statistics from the held-out images; lite0 ImageNet weights (package)", "",
             "| size | image_AUROC | pixel_AUROC | AUPRO | F1Max | fit s | ms / test image |",
             "|---|---|---|---|---|---|---|"]
    for r in out["sizes"]:
        lines.append(f"| {r['size']}² | {100 * r['image_AUROC']:.1f} | {100 * r['pixel_AUROC']:.1f} | "
                     f"{100 * r['AUPRO']:.1f} | {100 * r['F1Max']:.1f} | {r['fit_s']:.0f} | {r['ms_per_image']:.0f} |")
    lines += ["", "## Per defect type (each type's images against all good test images, %)", "",
              per_defect_markdown([d for r in out["sizes"] for d in r["per_defect"]])]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {stem.with_suffix('.md')}, {stem.with_suffix('.json')}")


if __name__ == "__main__":
    main()
