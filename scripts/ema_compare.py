"""EMA vs raw U-Net weights of the same training runs, on the label-free synthetic set that
calibration scores (held-out normal images ± anomalies from their own pixels): the diffusion
map alone (λ = 1, paper's heat) and the chosen settings, per seed and mean ± std.

    python scripts/ema_compare.py --ema runs/mt_v2_s{0..4}_cal --raw runs/mt_v2_s{0..4}_raw_cal
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

KEYS = ("image_AUROC", "pixel_AUROC", "AUPRO")


def row(folder: str) -> dict:
    sel = json.loads((Path(folder) / "calibration_report.json").read_text())["selection"]
    diff_only = next(r for r in sel["rows"] if r["heat_norm"] == "none" and r["lam"] == 1.0)
    chosen = next(r for r in sel["rows"] if (r["heat_norm"], r["lam"]) == (sel["heat_norm"], sel["lam"]))
    return {"diff_only": {k: diff_only[k] for k in KEYS}, "chosen": {k: chosen[k] for k in KEYS},
            "setting": f"{sel['heat_norm']}, λ={sel['lam']:g}"}


def cell(vals: list[float]) -> str:
    return f"{100 * statistics.fmean(vals):.1f} ± {100 * statistics.stdev(vals):.1f}" if len(vals) > 1 else \
        f"{100 * vals[0]:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ema", nargs="+", required=True)
    ap.add_argument("--raw", nargs="+", required=True)
    a = ap.parse_args()
    groups = {"raw weights": [row(f) for f in a.raw], "EMA (0.9999, warm-up)": [row(f) for f in a.ema]}
    print("| U-Net weights | runs | map | " + " | ".join(KEYS) + " | chosen settings |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in groups.items():
        for part in ("diff_only", "chosen"):
            label = "diffusion only (λ=1)" if part == "diff_only" else "DRDC at the chosen settings"
            cells = [cell([r[part][k] for r in rows]) for k in KEYS]
            chosen = "; ".join(r["setting"] for r in rows) if part == "chosen" else "–"
            print(f"| {name} | {len(rows)} | {label} | " + " | ".join(cells) + f" | {chosen} |")


if __name__ == "__main__":
    main()
