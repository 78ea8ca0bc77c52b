"""Why the diffusion map does (not) help on magnetic tiles: diagnostics from the
cached default pass of `drdc ablate` (no inference is run).

    python scripts/realdata_diagnostics.py --model runs/mt_cpu --work runs/mt_cpu_ablation \
        --data ../shared/data/magnetic_tile_defects

Prints Markdown: (1) Spearman correlation of each method's image score with the
image's mean intensity on the good test images, and the image AUROC of the
mean intensity itself as a score (a score that knows no defect); (2) mean good-image score and
image AUROC per lighting condition (`exp1`…`exp6` in the file names); (3) the
fraction of good-image map maxima within `border` px of the image edge; (4) image
AUROC with that border cut away. Maps are the normalised ones of the fusion
(λ = 0: base model, λ = 1: diffusion map alone). With ``--pixel-mean`` (runs one
inference pass over the held-out calibration images): (5) the λ sweep again with a
per-pixel mean map of the calibration images subtracted from each raw map (global σ
kept) — does removing the fixed spatial pattern of normal images help?
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from drdc_trt import metrics, ops
from drdc_trt.checkpoint import load_config
from drdc_trt.data import load_split
from drdc_trt.methods.drdc.fusion import FusionStats, normalised_blend


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--border", type=int, default=4)
    ap.add_argument("--pixel-mean", action="store_true", help="also (5): needs one calibration pass")
    ap.add_argument("--device", default="cpu", help="torch device of that pass")
    a = ap.parse_args()
    cfg = load_config(a.model)
    stats = FusionStats.from_dict(json.loads((Path(a.model) / "stats.json").read_text()))
    cached = load_file(str(Path(a.work) / "default_pass.safetensors"))
    data = load_split(a.data, "test", cfg.image_size)
    s, w, b = cfg.image_size, cfg.score_window, a.border
    print("## Diagnostics: where the diffusion map fails\n")
    print(f"`python scripts/realdata_diagnostics.py {' '.join(sys.argv[1:])}` (cached default pass; "
          "Markdown, appended to the result file).\n")
    maps = {"base (λ=0)": normalised_blend(cached["diff_map"], cached["base_map"], stats, 0.0),
            "diffusion only (λ=1)": normalised_blend(cached["diff_map"], cached["base_map"], stats, 1.0),
            f"DRDC (λ={cfg.fusion.lam:g})": normalised_blend(cached["diff_map"], cached["base_map"], stats,
                                                            cfg.fusion.lam)}
    scores = {k: ops.image_score(m, w) for k, m in maps.items()}
    good = data.labels == 0
    bright = data.images.mean((1, 2, 3))
    light = torch.tensor([int(m.group(1)) if (m := re.match(r"exp(\d)", x.path.name)) else 0
                          for x in data.samples])
    print("| method | Spearman(score, brightness), good | image AUROC | AUROC, "
          f"{b}-px border cut | good maxima within {b} px of the edge |")
    print("|---|---|---|---|---|")
    for k, m in maps.items():
        inner = ops.image_score(m[:, b:s - b, b:s - b], w)
        arg = m[good].flatten(1).argmax(1)
        ys, xs = arg // s, arg % s
        edge = ((ys < b) | (ys >= s - b) | (xs < b) | (xs >= s - b)).double().mean()
        print(f"| {k} | {spearman(scores[k][good], bright[good]):.2f} | "
              f"{100 * metrics.auroc(data.labels, scores[k]):.1f} | {100 * metrics.auroc(data.labels, inner):.1f} | "
              f"{100 * float(edge):.0f} % |")
    # a score that knows no defect: how far does brightness alone separate the test images?
    print(f"| mean intensity alone (no model) | 1.00 | {100 * metrics.auroc(data.labels, bright):.1f} | – | – |")
    print()
    names = list(maps)
    print("| lighting | good images | mean intensity | " + " | ".join(f"mean good score, {n}" for n in names)
          + " | " + " | ".join(f"image AUROC, {n}" for n in names) + " |")
    print("|---" * (3 + 2 * len(names)) + "|")
    for lv in sorted(set(light.tolist())):
        sel = light == lv
        g = sel & good
        if not g.any():
            continue
        row = [f"exp{lv}", str(int(g.sum())), f"{float(bright[g].mean()):.2f}"]
        row += [f"{float(scores[n][g].mean()):.2f}" for n in names]
        row += [f"{100 * metrics.auroc(data.labels[sel], scores[n][sel]):.1f}" for n in names]
        print("| " + " | ".join(row) + " |")
    if a.pixel_mean:
        pixel_mean_sweep(a, cfg, stats, cached, data)


def pixel_mean_sweep(a, cfg, stats, cached, data) -> None:
    from drdc_trt.loading import load_checkpoint
    from drdc_trt.methods.drdc.pipeline import Detector
    from drdc_trt.training import split_calibration

    train = load_split(a.data, "train", cfg.image_size)
    _, calib_idx = split_calibration(len(train), cfg.train.calib_fraction, cfg.train.seed)
    c = Detector.from_model(load_checkpoint(a.model), device=a.device).predict(train.images[calib_idx], batch_size=8)
    mu_d, mu_b = c.diff_map.cpu().mean(0), c.base_map.cpu().mean(0)
    print()
    print(f"Per-pixel mean of {len(calib_idx)} calibration maps subtracted (global σ kept):")
    print()
    print("| λ | image AUROC | pixel AUROC | AUPRO | image AUROC, global mean only |")
    print("|---|---|---|---|---|")
    for lam in (0.0, 0.5, 0.9, 1.0):
        m = lam * (cached["diff_map"] - mu_d) / stats.diff_std + (1 - lam) * (cached["base_map"] - mu_b) / stats.base_std
        plain = normalised_blend(cached["diff_map"], cached["base_map"], stats, lam)
        r = metrics.evaluate(data.labels, ops.image_score(m, cfg.score_window), data.masks[:, 0], m)
        print(f"| {lam:g} | {100 * r['image_AUROC']:.1f} | {100 * r['pixel_AUROC']:.1f} | {100 * r['AUPRO']:.1f} | "
              f"{100 * metrics.auroc(data.labels, ops.image_score(plain, cfg.score_window)):.1f} |")


if __name__ == "__main__":
    main()
