"""Where does the diffusion map's border and brightness error come from? One loop pass
per border margin over the held-out calibration images and (a subset of) the test set;
every heat normalisation and λ is then evaluated from the same raw heat.

    python scripts/heat_probe.py --model runs/mt_cpu_msnr --data ../shared/data/magnetic_tile_defects \
        --margin 8 --subset 200 --out runs/probe_m8.json

Writes the raw maps (safetensors, beside --out) and a JSON of rows; ``--report a.json b.json``
prints the Markdown table of several such files.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from drdc_trt import diagnostics, metrics, ops
from drdc_trt.methods.drdc import tuning
from drdc_trt.loading import load_checkpoint
from drdc_trt.config import HEAT_NORMS
from drdc_trt.data import load_split
from drdc_trt.methods.drdc.fusion import measure_stats
from drdc_trt.methods.drdc.pipeline import Detector
from drdc_trt.training import split_calibration

LAMS = (0.0, 0.5, 0.9, 1.0)
RINGS = ((0, 2), (2, 4), (4, 8), (8, 10**6))


def subset_index(labels: torch.Tensor, n: int) -> list[int]:
    """Every k-th image (deterministic, keeps the good/defect mix)."""
    if n <= 0 or n >= len(labels):
        return list(range(len(labels)))
    step = len(labels) / n
    return sorted({int(i * step) for i in range(n)})


def ring_profile(maps: torch.Tensor) -> list[float]:
    """Mean map value by distance to the nearest edge."""
    s = maps.shape[-1]
    r = torch.arange(s)
    dist = torch.minimum(torch.minimum(r, s - 1 - r).view(-1, 1), torch.minimum(r, s - 1 - r).view(1, -1))
    return [float(maps[:, (dist >= a) & (dist < b)].mean()) for a, b in RINGS]


def evaluate(cfg, calib_x, calib, test, sel) -> list[dict]:
    rows = []
    f = cfg.fusion
    for norm in HEAT_NORMS:  # global normalisation (the paper's), every heat normalisation from one pass
        maps = {name: tuning.fused_maps(cfg, x, heat, base, count, norm)
                for name, x, heat, base, count in (("calib", calib_x, *calib), ("test", test[0], *test[1:]))}
        stats = measure_stats(*maps["calib"], f.lam, cfg.score_window)
        hd, hb = maps["test"]
        mu_d, sd_d, mu_b, sd_b = stats.as_tuple()
        prof = ring_profile((maps["calib"][0] - mu_d) / sd_d)
        for lam in LAMS:
            m = lam * (hd - mu_d) / sd_d + (1 - lam) * (hb - mu_b) / sd_b
            score = ops.image_score(m, cfg.score_window)
            r = metrics.evaluate(sel["labels"], score, sel["masks"], m)
            good = sel["labels"] == 0
            rows.append({"heat_norm": norm, "lam": lam, **r,
                         "brightness_spearman": diagnostics.spearman(score[good], diagnostics.brightness(test[0])[good]),
                         "border_share": diagnostics.border_share(m[good], 4),
                         "calib_ring_profile": prof})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--data")
    ap.add_argument("--margin", type=int, default=0)
    ap.add_argument("--subset", type=int, default=200)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out")
    ap.add_argument("--report", nargs="*")
    a = ap.parse_args()
    if a.report:
        print("| margin | heat_norm | λ | image_AUROC | pixel_AUROC | AUPRO | Spearman(score, brightness) | border share "
              "| calib diffusion map by edge distance 0-1/2-3/4-7/8+ px (σ units) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for p in a.report:
            d = json.loads(Path(p).read_text())
            for r in d["rows"]:
                prof = "/".join(f"{v:.2f}" for v in r["calib_ring_profile"])
                print(f"| {d['margin']} | {r['heat_norm']} | {r['lam']:g} | {100 * r['image_AUROC']:.1f} | "
                      f"{100 * r['pixel_AUROC']:.1f} | {100 * r['AUPRO']:.1f} | {r['brightness_spearman']:.2f} | "
                      f"{100 * r['border_share']:.0f} % | {prof} |")
        return
    model = load_checkpoint(a.model)
    cfg = model.cfg.replace(**{"diffusion.margin": a.margin, "fusion.heat_norm": "none"})
    test = load_split(a.data, "test", cfg.image_size)
    sel_idx = subset_index(test.labels, a.subset)
    test = test.subset(sel_idx)
    train = load_split(a.data, "train", cfg.image_size)
    _, calib_idx = split_calibration(len(train), cfg.train.calib_fraction, cfg.train.seed)
    calib_x = train.images[calib_idx]
    det = Detector(cfg, Detector.from_model(model).runner, model.stats)
    cache = Path(a.out).with_suffix(".safetensors")
    t0 = time.perf_counter()
    if cache.is_file():
        c = load_file(str(cache))
        calib, tst, count = (c["ch"], c["cb"]), (c["th"], c["tb"]), int(c["count"])
    else:
        ch, cb, count = tuning.raw_maps(det, calib_x, a.batch)
        th, tb, _ = tuning.raw_maps(det, test.images, a.batch)
        save_file({"ch": ch, "cb": cb, "th": th, "tb": tb, "count": torch.tensor(count)}, str(cache))
        calib, tst = (ch, cb), (th, tb)
    sec = time.perf_counter() - t0
    sel = {"labels": test.labels, "masks": test.masks[:, 0]}
    rows = evaluate(cfg, calib_x, (*calib, count), (test.images, *tst, count), sel)
    Path(a.out).write_text(json.dumps({"margin": a.margin, "test_images": len(test), "seconds": sec,
                                       "rows": rows}, indent=2))
    print(f"margin {a.margin}: {len(test)} test images, {sec:.0f} s")


if __name__ == "__main__":
    main()
