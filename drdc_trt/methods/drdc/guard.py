"""The reliability guard of calibration (``fusion.guard``): DRDC never below its own base model
because of a diffusion map that does not work, decided without test labels.

The λ blend adds the diffusion map to the base map. A diffusion map that finds the image border
or the lighting instead of defects makes the blend worse than the base map alone at every λ > 0,
and the synthetic anomalies the selection pastes in (``tuning``) do not always show it: on a real
line with tiny dark defects the selection liked λ = 0.4 while every λ > 0 lost to λ = 0 on the
real defects. So after λ is chosen the guard looks at the diffusion-only map of the held-out
normal images and at the selection's own margin, and stores λ = 0 (the base map under the same
normalisation) when one check fails:

* ``border``: the share of normal images whose diffusion-map maximum lies within ``border_px``
  (4 px at 64², scaled with the side) of the edge. With no border bias the count is binomial
  with p = the share of pixels there; the check fails when the share exceeds p by more than
  ``BORDER_EXCESS`` (0.2) and by more than 3 binomial standard deviations (√(p(1−p)/n)).
* ``brightness``: |Spearman| of the normal images' diffusion-only image scores with their mean
  intensity. Independent ranks give a standard deviation of 1/√(n−1); the check fails above
  max(``BRIGHTNESS_RHO`` (0.5), 3/√(n−1)).
* ``synthetic_margin`` (``fusion.select = "synthetic"`` only): the selection objective (mean of
  image AUROC, pixel AUROC and AUPRO on the synthetic set) of the chosen λ minus that of λ = 0,
  at the chosen heat normalisation; fails below ``MIN_GAIN`` (0.01, one point): a tie is not a
  reason to trust the diffusion map.

The per-pixel statistics (``fusion.diff_norm = "pixel"``) are measured on the same images the
guard looks at, and a z-score against a pixel's own mean removes exactly the bias ``border``
looks for. The maps are therefore cross-fitted: the images are split in two halves (even and odd
positions), each half's diffusion map normalised by statistics measured on the other half; with
fewer than 4 images the guard does not run and says so.
"""

from __future__ import annotations

import math

import torch

from drdc_trt import diagnostics
from drdc_trt.methods.drdc import ops
from drdc_trt.methods.drdc.contrast import heat_divisor, local_window
from drdc_trt.methods.drdc.fusion import PixelStats, pixel_window
from drdc_trt.methods.drdc.tuning import fused_maps

BORDER_PX_AT_64 = 4
BORDER_EXCESS = 0.2
BRIGHTNESS_RHO = 0.5
MIN_GAIN = 0.01
MIN_IMAGES = 4  # two halves of at least two images each


def border_px(size: int) -> int:
    """The border band: 4 px at 64², scaled with the side (14 px at 224²)."""
    return max(1, round(BORDER_PX_AT_64 * size / 64))


def diffusion_only_maps(cfg, images: torch.Tensor, heat: torch.Tensor, base: torch.Tensor, count: int,
                        heat_norm: str) -> torch.Tensor:
    """The filtered diffusion map (B×S×S) of each normal image, with per-pixel statistics (when the
    config uses them) measured on the other half of the images (module doc)."""
    if cfg.fusion.diff_norm != "pixel":
        return fused_maps(cfg, images, heat, base, count, heat_norm)[0]
    n = len(images)
    if n < MIN_IMAGES:
        raise ValueError(f"the reliability guard needs at least {MIN_IMAGES} held-out normal images, got {n}")
    div = heat_divisor(images.float().cpu(), heat_norm, local_window(cfg.diffusion.grid_sizes))
    means = (heat if div is None else heat / div) / count
    window = pixel_window(cfg.diffusion.grid_sizes)
    out = torch.empty(heat.shape, dtype=torch.float32)
    halves = (torch.arange(0, n, 2), torch.arange(1, n, 2))
    for own, other in (halves, halves[::-1]):
        stats = PixelStats.measure(means[other], window)
        out[own] = fused_maps(cfg, images[own], heat[own], base[own], count, heat_norm, stats)[0].float()
    return out


def _check(name: str, value: float, bound: float, passed: bool, says: str) -> dict:
    return {"check": name, "value": value, "bound": bound, "passed": bool(passed), "says": says}


def evaluate(cfg, images: torch.Tensor, raw: tuple[torch.Tensor, torch.Tensor, int], heat_norm: str, lam: float,
             selection_rows: list[dict] | None = None) -> dict:
    """The guard's checks on the held-out normal images (``raw``: tuning.raw_maps of them) for the
    chosen heat normalisation and λ; returns the record stored in the reports: every check with
    its value and bound, ``passed``, ``lam_chosen`` and the ``lam`` to store (0 when a check fails)."""
    heat, base, count = raw
    if cfg.fusion.diff_norm == "pixel" and len(images) < MIN_IMAGES:
        return {"passed": True, "lam_chosen": lam, "lam": lam, "images": len(images), "checks": [],
                "skipped": f"needs at least {MIN_IMAGES} held-out normal images to cross-fit, got {len(images)}"}
    maps = diffusion_only_maps(cfg, images, heat, base, count, heat_norm)
    return judge(maps, images, cfg.score_window, heat_norm, lam, selection_rows)


def judge(maps: torch.Tensor, images: torch.Tensor, score_window: int, heat_norm: str, lam: float,
          selection_rows: list[dict] | None = None) -> dict:
    """The checks on given diffusion-only maps (B×S×S) of normal images (B×3×S×S); see evaluate."""
    n, size = maps.shape[0], maps.shape[-1]
    b = border_px(size)
    p = diagnostics.edge_fraction(size, b)
    share = diagnostics.border_share(maps, b)
    border_bound = p + max(BORDER_EXCESS, 3 * math.sqrt(p * (1 - p) / n))
    scores = ops.image_score(maps, score_window)
    rho = diagnostics.spearman(scores, diagnostics.brightness(images.float().cpu()))
    rho_bound = max(BRIGHTNESS_RHO, 3 / math.sqrt(max(1, n - 1)))
    checks = [
        _check("border", share, border_bound, share <= border_bound,
               f"{100 * share:.0f} % of the normal images' diffusion-map maxima lie within {b} px of the edge "
               f"(pixels there: {100 * p:.0f} %; bound {100 * border_bound:.0f} %)"),
        _check("brightness", rho, rho_bound, not abs(rho) > rho_bound,  # NaN (constant scores) fails
               f"Spearman of the diffusion-only score with mean intensity {rho:+.2f} on normal images "
               f"(bound ±{rho_bound:.2f})"),
    ]
    if selection_rows is not None and lam > 0:
        at = {r["lam"]: r["objective"] for r in selection_rows if r.get("heat_norm", heat_norm) == heat_norm}
        gain = at[lam] - at[0.0]
        checks.append(_check("synthetic_margin", gain, MIN_GAIN, gain >= MIN_GAIN,
                             f"λ = {lam:g} beats λ = 0 by {100 * gain:.1f} points on the synthetic anomalies "
                             f"(needs {100 * MIN_GAIN:.0f})"))
    passed = all(c["passed"] for c in checks)
    return {"passed": passed, "lam_chosen": lam, "lam": lam if passed else 0.0, "images": n, "border_px": b,
            "checks": checks}


def warning(record: dict) -> str | None:
    """The one line ``drdc train`` / ``drdc calibrate`` print when the guard set λ = 0; None otherwise."""
    if record.get("skipped"):
        return f"note: the reliability guard did not run ({record['skipped']}); λ = {record['lam']:g} as chosen"
    if record["passed"] or record["lam_chosen"] == 0:
        return None
    failed = "; ".join(c["says"] for c in record["checks"] if not c["passed"])
    return (f"warning: the diffusion map failed the reliability guard, λ = 0 stored instead of "
            f"{record['lam_chosen']:g} (DRDC = its base map): {failed}")


def stored_record(model_dir) -> dict | None:
    """The guard's record a checkpoint folder keeps (calibration_report.json of a re-calibration,
    else train_report.json); None when there is none (a model calibrated without the guard)."""
    import json
    from pathlib import Path

    if not model_dir:
        return None
    for name in ("calibration_report.json", "train_report.json"):
        p = Path(model_dir) / name
        if p.is_file():
            sel = json.loads(p.read_text()).get("selection") or {}
            return sel.get("guard")
    return None


def markdown(record: dict) -> str:
    """The checks as a table, and what was stored."""
    if record.get("skipped"):
        return f"Did not run: {record['skipped']}."
    head = (f"On {record['images']} held-out normal images: "
            + ("every check passed, λ as chosen." if record["passed"]
               else f"a check failed: λ = 0 stored instead of {record['lam_chosen']:g}."))
    lines = [head, "", "| check | value | bound | passed | |", "|---|---|---|---|---|"]
    for c in record["checks"]:
        lines.append(f"| {c['check']} | {c['value']:.3f} | {c['bound']:.3f} | {'yes' if c['passed'] else 'no'} | "
                     f"{c['says']} |")
    return "\n".join(lines)


def html(record: dict) -> str:
    import html as _html

    rows = "".join(f"<tr><td>{_html.escape(c['check'])}</td><td>{c['value']:.3f}</td><td>{c['bound']:.3f}</td>"
                   f"<td>{'yes' if c['passed'] else '<b>no</b>'}</td><td>{_html.escape(c['says'])}</td></tr>"
                   for c in record["checks"])
    if record.get("skipped"):
        return f"<p>Did not run: {_html.escape(record['skipped'])}.</p>"
    stored = "λ as chosen" if record["passed"] else f"λ = 0 stored instead of {record['lam_chosen']:g}"
    return (f"<p>{record['images']} held-out normal images; {stored}.</p><table><tr><th>check</th><th>value</th>"
            f"<th>bound</th><th>passed</th><th></th></tr>{rows}</table>")
