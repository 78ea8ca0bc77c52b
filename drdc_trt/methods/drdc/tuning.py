"""Choosing inference settings without test labels (``fusion.select = "synthetic"``).

The paper's λ = 0.9 presumes a diffusion map at least as good as the base map, and
its heat ‖x − x̂0‖ follows the lighting; a short or small training, or a line whose
lighting varies, may break either. The held-out normal images (those the statistics
are measured on) are scored twice: as they are, and with one synthetic anomaly
pasted into each (``data.anomalies``), its source the image's own pixels shuffled in
strips: an anomaly of structure, with the part's own colours and intensities. (Colourful
procedural textures on a grey part are found by any pixel difference, so they favour the
diffusion map: on magnetic tiles they chose λ = 0.6 where the real defects are best
served near 0.25, self-shuffled sources chose 0.3 — benchmarks/results/magnetic_tile_cpu_v2_*.) For every heat normalisation of
``config.HEAT_NORMS`` (one loop pass serves all: they only divide its heat) the
statistics are measured on the normal images, and every λ of ``LAMBDA_GRID``
re-blends the maps; the pair with the best mean of image AUROC, pixel AUROC and
AUPRO on that synthetic set is kept (ties: the paper's heat, then the larger λ).
No test image or label is touched.

Two families of synthetic anomalies (``fusion.synthetic_families``): ``patches`` (the Perlin masks
above) and ``small`` (spots, thin scratches and local blur of 0.05–1 % of the image,
``data.small_defects``). Each family is scored on its own, and every metric and the objective of
a (heat_norm, λ) row is the mean over the families: a diffusion map that finds large patches but
misses small defects does not win the selection on the patches alone.
"""

from __future__ import annotations

from typing import Sequence

import torch

from drdc_trt import distributed, metrics
from drdc_trt.methods.drdc import ops
from drdc_trt.methods.drdc.config import HEAT_NORMS, SYNTHETIC_FAMILIES
from drdc_trt.methods.drdc.contrast import heat_divisor, local_window
from drdc_trt.methods.drdc.margin import crop
from drdc_trt.methods.drdc.fusion import FusionStats, PixelStats, measure_stats, normalised_blend, pixel_window

LAMBDA_GRID = tuple(i / 10 for i in range(11))
SYNTHETIC_SEED = 1234  # anomalies differ from any training draw
SOURCES = ("shuffled",)  # see the module docstring


def raw_maps(det, images: torch.Tensor, batch_size: int, progress: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(heat sum B×S×S before any normalisation, base map B×h×w, terms per pixel) of a Detector; the
    ranks of a distributed run share the batches (every rank gets all rows)."""
    return distributed.split_pass(lambda part: _raw_maps(det, part, batch_size, progress), images, batch_size)


@torch.no_grad()
def _raw_maps(det, images: torch.Tensor, batch_size: int, progress: bool) -> tuple[torch.Tensor, torch.Tensor, int]:
    from tqdm import tqdm

    heats, bases, count = [], [], 1
    for i in tqdm(range(0, len(images), batch_size), desc="calibration", unit="batch", leave=False,
                  disable=not progress):
        x = det._check_images(images[i:i + batch_size])
        res = det.loop_heat(x)
        heats.append(crop(res.heat, det.cfg.diffusion.margin).cpu())
        bases.append(det.runner.base(x).float().cpu())
        count = res.count
    return torch.cat(heats), torch.cat(bases), count


def fused_maps(cfg, images: torch.Tensor, heat: torch.Tensor, base: torch.Tensor, count: int, heat_norm: str,
               pixel_stats: PixelStats | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(filtered diffusion map, up-sampled base map) of raw maps under ``heat_norm`` and, when
    given, the per-pixel statistics — what the Detector's fusion computes before its blend."""
    div = heat_divisor(images.float().cpu(), heat_norm, local_window(cfg.diffusion.grid_sizes))
    h = heat if div is None else heat / div
    if pixel_stats is not None:
        h = pixel_stats.apply(h, count)
    _, hd, hb, _ = ops.reference_fuse(h, count, base, cfg.fusion.mean_filter, (0.0, 1.0, 0.0, 1.0), 0.0,
                                      cfg.score_window)
    return hd, hb


def statistics(cfg, images: torch.Tensor, raw: tuple[torch.Tensor, torch.Tensor, int], heat_norm: str,
               lam: float) -> tuple[FusionStats, tuple[torch.Tensor, torch.Tensor]]:
    """Calibration from the raw maps of normal images: the per-pixel statistics (when the config
    asks for them, in ``stats.pixel``), then the global ones and thresholds; also the fused maps
    they came from."""
    heat, base, count = raw
    pixel = None
    if cfg.fusion.diff_norm == "pixel":
        div = heat_divisor(images.float().cpu(), heat_norm, local_window(cfg.diffusion.grid_sizes))
        pixel = PixelStats.measure((heat if div is None else heat / div) / count, pixel_window(cfg.diffusion.grid_sizes))
    maps = fused_maps(cfg, images, heat, base, count, heat_norm, pixel)
    stats = measure_stats(*maps, lam, cfg.score_window)
    stats.pixel = pixel
    return stats, maps


def lambda_rows(good: tuple[torch.Tensor, torch.Tensor], anomalous: tuple[torch.Tensor, torch.Tensor],
                masks: torch.Tensor, stats: FusionStats, window: int, grid: Sequence[float] = LAMBDA_GRID) -> list[dict]:
    """Metrics on the synthetic set for every λ of ``grid``: ``good`` and ``anomalous`` are
    (diffusion map, base map) of the normal images and of the same images with anomalies
    (masks B×1×S×S)."""
    labels = torch.cat([torch.zeros(len(good[0])), torch.ones(len(anomalous[0]))]).long()
    gt = torch.cat([torch.zeros_like(masks[:, 0]), masks[:, 0]]) > 0.5
    rows = []
    for lam in grid:
        maps = torch.cat([normalised_blend(d, b, stats, lam) for d, b in (good, anomalous)])
        r = metrics.evaluate(labels, ops.image_score(maps, window), gt, maps)
        rows.append({"lam": lam, **r, "objective": (r["image_AUROC"] + r["pixel_AUROC"] + r["AUPRO"]) / 3})
    return rows


def synthetic_set(images: torch.Tensor, family: str, seed: int = SYNTHETIC_SEED
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(images with one anomaly of ``family`` each, masks B×1×S×S)."""
    if family == "patches":
        from drdc_trt.data.anomalies import paste_anomalies

        return paste_anomalies(images.cpu(), seed, SOURCES)
    if family == "small":
        from drdc_trt.data.small_defects import paste_small_defects

        anomalous, masks, _ = paste_small_defects(images.cpu(), seed)
        return anomalous, masks
    raise ValueError(f"synthetic family {family!r}: choose from {SYNTHETIC_FAMILIES}")


METRIC_KEYS = ("image_AUROC", "pixel_AUROC", "AUPRO", "F1Max", "objective")


def mean_over_families(per_family: Sequence[Sequence[dict]]) -> list[dict]:
    """Rows of several families (same λ order) → one row per λ: every metric the families' mean."""
    out = []
    for group in zip(*per_family):
        if len({r["lam"] for r in group}) != 1:
            raise ValueError("families' rows must list the same λ in the same order")
        row = {"lam": group[0]["lam"]}
        for k in METRIC_KEYS:
            if all(k in r for r in group):
                row[k] = sum(r[k] for r in group) / len(group)
        out.append(row)
    return out


def select(cfg, det, images: torch.Tensor, batch_size: int, heat_norms: Sequence[str] = HEAT_NORMS,
           seed: int = SYNTHETIC_SEED, good_raw=None) -> dict:
    """Score ``images`` (normal; ``good_raw``: their raw maps if already computed) and one
    synthetic-anomaly copy of them per family once; return the table of every (heat_norm, λ)
    (metrics the mean over families; each family's own in ``family_rows``) and the chosen pair."""
    families = tuple(cfg.fusion.synthetic_families)
    sets = [synthetic_set(images, fam, seed) for fam in families]
    good_raw = raw_maps(det, images, batch_size) if good_raw is None else good_raw
    anom_raws = [raw_maps(det, anomalous, batch_size) for anomalous, _ in sets]
    rows, family_rows = [], {fam: [] for fam in families}
    for norm in heat_norms:
        stats, good = statistics(cfg, images, good_raw, norm, cfg.fusion.lam)
        per = []
        for fam, (anomalous, masks), raw in zip(families, sets, anom_raws):
            anom = fused_maps(cfg, anomalous, *raw, norm, stats.pixel)
            fam_rows = lambda_rows(good, anom, masks, stats, cfg.score_window)
            family_rows[fam] += [{"heat_norm": norm, **r} for r in fam_rows]
            per.append(fam_rows)
        rows += [{"heat_norm": norm, **r} for r in mean_over_families(per)]
    best = choose(rows)
    return {"heat_norm": best["heat_norm"], "lam": best["lam"], "images": len(images), "families": list(families),
            "rows": rows, "family_rows": family_rows}


def choose(rows: list[dict]) -> dict:
    """The best objective; ties: the paper's heat first (the order of HEAT_NORMS), then the larger λ."""
    best = max(r["objective"] for r in rows)
    tied = [r for r in rows if r["objective"] >= best - 1e-12]
    order = {n: i for i, n in enumerate(HEAT_NORMS)}
    return min(tied, key=lambda r: (order.get(r.get("heat_norm", "none"), 0), -r["lam"]))


def markdown(rows: list[dict], chosen: dict) -> str:
    lines = ["| heat_norm | λ | image_AUROC | pixel_AUROC | AUPRO | mean |", "|---|---|---|---|---|---|"]
    for r in rows:
        norm = r.get("heat_norm", "")
        mark = " ← chosen" if (norm, r["lam"]) == (chosen.get("heat_norm", ""), chosen["lam"]) else ""
        lines.append(f"| {norm} | {r['lam']:g}{mark} | {100 * r['image_AUROC']:.1f} | {100 * r['pixel_AUROC']:.1f} | "
                     f"{100 * r['AUPRO']:.1f} | {100 * r['objective']:.1f} |")
    return "\n".join(lines)
