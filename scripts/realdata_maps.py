"""Real-data run split in two: inference writes compact maps (GPU machine), everything else
reads them (CPU).

``infer`` runs the trained model's base network and DDIM loop on the test split and writes,
per shard of images, the base heatmap (B×h×w float32, h = S/16) and the diffusion heat
averaged over its terms (B×S×S, float16) to ``<out>/maps_NN.npz``, plus ``index.json``
(images relative to the data root, the model's config, its normalisation statistics, loop
settings, seconds). That is all the fusion needs: ``report`` recomputes the fused maps and
scores with the reference fusion (``drdc_trt.ops.fuse``, as the pipeline does), at the
model's λ and at λ values chosen after the fact, then the metric tables, the per-defect
table and the HTML report, on the CPU, where metric sorting costs no GPU minutes.

    python scripts/realdata_maps.py infer  --model runs/mt_gpu --data .data/magnetic_tile_defects --out DIR
    python scripts/realdata_maps.py report --maps DIR --data .data/magnetic_tile_defects --results PREFIX
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

SHARD = 96  # images per .npz file: ~9.6 MB of fp16 heat at 224²


def infer(model_dir: str, data_root: str, out: str, device: str, batch: int, seed: int, loop: str) -> Path:
    from drdc_trt.loading import load_checkpoint
    from drdc_trt.data import load_split
    from drdc_trt.methods.drdc.pipeline import Detector

    t_start = time.perf_counter()
    model = load_checkpoint(model_dir)
    cfg = model.cfg
    det = Detector.from_model(model, device=device, loop=loop, seed=seed)
    data = load_split(data_root, "test", cfg.image_size)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    root = Path(data_root).resolve()
    t_inf = time.perf_counter()
    count = None
    shards = []
    for s0 in range(0, len(data), SHARD):
        heats, bases = [], []
        for i in range(s0, min(s0 + SHARD, len(data)), batch):
            x = data.images[i:min(i + batch, s0 + SHARD, len(data))].to(det.device)
            with torch.no_grad():
                base = det.runner.base(x).float()
                res = det.heat(x)
            count = int(res.count)
            heats.append((res.heat / res.count).to(torch.float16).cpu())
            bases.append(base.cpu())
        name = f"maps_{len(shards):02d}.npz"
        np.savez_compressed(out_dir / name, heat_mean=torch.cat(heats).numpy(), base=torch.cat(bases).numpy())
        shards.append(name)
    if det.device.type == "cuda":
        torch.cuda.synchronize(det.device)
    seconds = time.perf_counter() - t_inf
    index = {
        "images": [str(Path(s.path).resolve().relative_to(root)) for s in data.samples],
        "shards": shards, "shard_size": SHARD, "count": count, "config": cfg.to_dict(),
        "stats": json.loads(model.stats.to_json()), "seed": seed, "loop": loop, "device": str(det.device),
        "inference_seconds": round(seconds, 2), "images_per_second": round(len(data) / seconds, 2),
        "total_seconds": round(time.perf_counter() - t_start, 2), "storage": "heat_mean float16, base float32",
    }
    (out_dir / "index.json").write_text(json.dumps(index, indent=2))
    print(f"{len(data)} images in {seconds:.1f} s ({len(data) / seconds:.2f} images/s); maps in {out_dir}")
    return out_dir


def load_maps(maps_dir: str) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """(index, heat mean B×S×S float32, base B×h×w float32) from ``infer``'s folder."""
    d = Path(maps_dir)
    index = json.loads((d / "index.json").read_text())
    heats, bases = [], []
    for name in index["shards"]:
        with np.load(d / name) as z:
            heats.append(torch.from_numpy(z["heat_mean"].astype(np.float32)))
            bases.append(torch.from_numpy(z["base"]))
    heat, base = torch.cat(heats), torch.cat(bases)
    if heat.shape[0] != len(index["images"]):
        raise ValueError(f"{d}: {heat.shape[0]} maps for {len(index['images'])} images in index.json")
    return index, heat, base


def fused(heat_mean: torch.Tensor, base: torch.Tensor, cfg, stats, lam: float):
    """InferenceBatch of the pipeline's fusion on stored maps (``Detector.predict_batch``'s tail)."""
    from drdc_trt.methods.drdc import ops
    from drdc_trt.methods.drdc.fusion import normalised_blend
    from drdc_trt.methods.drdc.pipeline import InferenceBatch

    f = cfg.fusion
    final, hd, hb, score = ops.fuse(heat_mean, 1, base, f.mean_filter, stats.as_tuple(), lam, cfg.score_window,
                                    impl="torch")
    return InferenceBatch(
        pred_score=score, pred_label=score > stats.image_threshold, anomaly_map=final,
        pred_mask=final > stats.pixel_threshold, base_map=hb, diff_map=hd,
        base_score=ops.image_score(normalised_blend(hd, hb, stats, 0.0), cfg.score_window))


def report(maps_dir: str, data_root: str, results: str, title: str, lams: list[float], provenance: str | None):
    from drdc_trt import metrics, viz
    from drdc_trt.config import ModelConfig
    from drdc_trt.data import load_split
    from drdc_trt.evaluate import COLUMNS, EvalResult, method_outputs, report_html, table
    from drdc_trt.methods.drdc.fusion import FusionStats

    t0 = time.perf_counter()
    index, heat, base = load_maps(maps_dir)
    cfg = ModelConfig.from_dict(index["config"])
    stats = FusionStats.from_dict(index["stats"])
    data = load_split(data_root, "test", cfg.image_size)
    root = Path(data_root).resolve()
    have = {str(Path(s.path).resolve().relative_to(root)): i for i, s in enumerate(data.samples)}
    missing = [p for p in index["images"] if p not in have]
    if missing:
        raise ValueError(f"{data_root}: {len(missing)} image(s) of the maps are not in the test split, e.g. "
                         f"{missing[0]}")
    data = data.subset([have[p] for p in index["images"]])
    out = fused(heat, base, cfg, stats, cfg.fusion.lam)
    methods = method_outputs(out, stats, cfg)
    methods[f"DRDC (λ = {cfg.fusion.lam:g})"] = methods.pop("DRDC")
    for lam in lams:
        if lam != cfg.fusion.lam:
            o = fused(heat, base, cfg, stats, lam)
            methods[f"DRDC (λ = {lam:g}, chosen after the fact)"] = (o.pred_score, o.anomaly_map)
    rows = table(data, methods)
    per_defect = []
    good = [i for i, s in enumerate(data.samples) if s.defect == "good"]
    for defect in sorted({s.defect for s in data.samples} - {"good"}):
        idx = good + [i for i, s in enumerate(data.samples) if s.defect == defect]
        for name in ("base (UniAD)", f"DRDC (λ = {cfg.fusion.lam:g})"):
            scores, maps = methods[name]
            m = metrics.evaluate(data.labels[idx], scores[idx], data.masks[idx, 0], maps[idx])
            per_defect.append({"category": f"{defect} (+ all good)", "method": name, **m})
    result = EvalResult(data, out, rows, index.get("inference_seconds", 0.0))
    prefix = Path(results)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    notes = [f"maps: {maps_dir} ({index['storage']}), {len(data)} test images, inference on {index['device']} "
             f"({index.get('images_per_second')} images/s), loop {index['loop']}, seed {index['seed']}",
             "metrics, λ values after the fact, per-defect rows and this report were computed on the CPU from "
             "the stored maps"]
    md = [f"# {title}", "", *[f"- {n}" for n in notes], "", "## Metrics (%)", "", viz.markdown_table(rows, COLUMNS),
          "", "## Per defect type (that type's images + all good images)", "",
          viz.markdown_table(per_defect, COLUMNS)]
    if provenance and Path(provenance).is_file():
        md += ["", Path(provenance).read_text().replace("# ", "## ", 1)]
    prefix.with_suffix(".md").write_text("\n".join(md) + "\n")
    clean = lambda rs: [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in rs]  # noqa: E731
    prefix.with_suffix(".json").write_text(json.dumps(
        {"title": title, "notes": notes, "rows": clean(rows), "per_defect": clean(per_defect), "index": index},
        indent=2))
    html = Path(f"{prefix}_report.html")
    html.write_text(report_html(result, title, stats, notes, per_type=2))
    print(f"wrote {prefix.with_suffix('.md')}, .json and {html} ({time.perf_counter() - t0:.1f} s on the CPU)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("infer")
    a.add_argument("--model", required=True)
    a.add_argument("--data", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--device", default="cuda")
    a.add_argument("--batch", type=int, default=16)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--loop", default="torch", choices=["torch", "csrc"])
    r = sub.add_parser("report")
    r.add_argument("--maps", required=True)
    r.add_argument("--data", required=True)
    r.add_argument("--results", required=True, help="path prefix of the .md / .json / _report.html files")
    r.add_argument("--title", default="DRDC on magnetic-tile defects (GPU maps, CPU metrics)")
    r.add_argument("--lam", type=float, action="append", default=None, help="λ values to add [0.5]")
    r.add_argument("--provenance", help="a *_provenance.md to append")
    args = p.parse_args(argv)
    if args.cmd == "infer":
        infer(args.model, args.data, args.out, args.device, args.batch, args.seed, args.loop)
    else:
        report(args.maps, args.data, args.results, args.title, args.lam or [0.5], args.provenance)
    return 0


if __name__ == "__main__":
    sys.exit(main())
