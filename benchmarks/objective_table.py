"""DRDC's training objective on magnetic tiles: the label-free selection and the test split side by
side, per model and as mean ± sample std per objective (the table behind README's choice).

    python3 benchmarks/objective_table.py RUNS_DIR RESULTS_PREFIX OUT.md
        model folders  RUNS_DIR/<run of objective o, seed s>  (names in RUNS below)
        results        RESULTS_PREFIX_<o>_<date>_seed<s>.json (drdc ablate --results)
"""
import json
import statistics
import sys
from pathlib import Path

RUNS = {("aligned", 0): "mt_drdc", ("aligned", 1): "mt_drdc_aligned_s1", ("aligned", 2): "mt_drdc_aligned_s2",
        ("eps", 0): "mt_drdc_eps_s0", ("eps", 1): "mt_drdc_eps_s1", ("eps", 2): "mt_drdc_eps_s2"}
METRICS = ("image_AUROC", "pixel_AUROC", "AUPRO")


def row(results: dict, method: str) -> dict:
    return next(r for r in results["rows"] if r["category"] == "mean" and r["method"] == method) \
        if any(r["category"] == "mean" for r in results["rows"]) else \
        next(r for r in results["rows"] if r["method"] == method)


def lam_row(results: dict, lam: float) -> dict:
    want = f"λ={lam:g} (post hoc)"
    return next(r for r in results["ablation"] if r["setting"] == want and r["method"] == "DRDC")


def main(runs: Path, prefix: str, out: Path, date: str = "2026-12-07") -> None:
    per = {}
    for (obj, seed), run in RUNS.items():
        f = Path(f"{prefix}_{obj}_{date}_seed{seed}.json")
        if not f.is_file() or not (runs / run / "train_report.json").is_file():
            continue
        res = json.loads(f.read_text())
        sel = json.loads((runs / run / "train_report.json").read_text())["selection"]
        chosen = next(r for r in sel["rows"] if r["heat_norm"] == sel["heat_norm"] and r["lam"] == sel["lam"])
        at1 = next(r for r in sel["rows"] if r["heat_norm"] == sel["heat_norm"] and r["lam"] == 1.0)
        per[(obj, seed)] = {"selection": chosen["objective"], "selection_diffusion_only": at1["objective"],
                            "heat_norm": sel["heat_norm"], "lam": sel["lam"], "base": row(res, "base (UniAD)"),
                            "drdc": row(res, "DRDC"), "diffusion_only": lam_row(res, 1.0)}
        fam = runs / f"{run}_fam" / "calibration_report.json"
        if fam.is_file():  # re-calibrated with both synthetic families: its λ read off the post-hoc λ rows
            fsel = json.loads(fam.read_text())["selection"]
            p = per[(obj, seed)]
            p["families"] = (fsel["heat_norm"], fsel["lam"])
            try:
                p["drdc_families"] = lam_row(res, fsel["lam"]) if fsel["heat_norm"] == sel["heat_norm"] else None
            except StopIteration:
                p["drdc_families"] = None
            own = runs / f"{run}_fam_eval" / "metrics.json"   # its own pass (drdc eval --model <run>_fam)
            if p["drdc_families"] is None and own.is_file():
                p["drdc_families"] = row(json.loads(own.read_text()), "DRDC")
                p["families_own_pass"] = True
    lines = ["| objective | seed | selection: heat, λ | selection objective (synthetic, label-free) | "
             "selection, diffusion only (λ=1) | base: image / pixel / AUPRO | DRDC: image / pixel / AUPRO | "
             "DRDC − base: pixel / AUPRO | diffusion only: pixel / AUPRO |", "|---|---|---|---|---|---|---|---|---|"]
    pct = lambda v: f"{100 * v:.1f}"
    for (obj, seed), p in sorted(per.items()):
        b, d, o = p["base"], p["drdc"], p["diffusion_only"]
        lines.append(f"| {obj} | {seed} | {p['heat_norm']}, {p['lam']:g} | {pct(p['selection'])} | "
                     f"{pct(p['selection_diffusion_only'])} | " + " / ".join(pct(b[m]) for m in METRICS) + " | "
                     + " / ".join(pct(d[m]) for m in METRICS) + f" | {100 * (d['pixel_AUROC'] - b['pixel_AUROC']):+.1f} / "
                     f"{100 * (d['AUPRO'] - b['AUPRO']):+.1f} | {pct(o['pixel_AUROC'])} / {pct(o['AUPRO'])} |")
    fams = [(k, p) for k, p in sorted(per.items()) if "families" in p]
    if fams:
        lines += ["", "Re-calibrated with both synthetic families (patches + small; `drdc calibrate --set "
                  "fusion.synthetic_families=[\"patches\",\"small\"]`); the test row is the post-hoc λ row of "
                  "the same ablation (same heat normalisation, same statistics):", "",
                  "| objective | seed | patches only: heat, λ | both families: heat, λ | DRDC (both families): image / "
                  "pixel / AUPRO | − base: image / pixel / AUPRO |", "|---|---|---|---|---|---|"]
        for (obj, seed), p in fams:
            d, b = p["drdc_families"], p["base"]
            got = ("heat differs: needs its own pass" if d is None else " / ".join(pct(d[m]) for m in METRICS) + " | "
                   + " / ".join(f"{100 * (d[m] - b[m]):+.1f}" for m in METRICS))
            own = " (own pass: `drdc eval --model` of the re-calibrated model)" if p.get("families_own_pass") else ""
            lines.append(f"| {obj} | {seed} | {p['heat_norm']}, {p['lam']:g} | {p['families'][0]}, "
                         f"{p['families'][1]:g}{own} | {got} |")
    lines += ["", "Mean ± sample std over the seeds present:", "",
              "| objective | n | selection objective | selection, diffusion only | DRDC image / pixel / AUPRO | "
              "DRDC − base: pixel / AUPRO | diffusion only: pixel / AUPRO |", "|---|---|---|---|---|---|---|"]

    def ms(vals):
        vals = [100 * v for v in vals]
        return f"{statistics.mean(vals):.1f} ± {statistics.stdev(vals):.1f}" if len(vals) > 1 else f"{vals[0]:.1f}"

    for obj in ("aligned", "eps"):
        ps = [p for (o, _), p in per.items() if o == obj]
        if not ps:
            continue
        lines.append(f"| {obj} | {len(ps)} | {ms([p['selection'] for p in ps])} | "
                     f"{ms([p['selection_diffusion_only'] for p in ps])} | "
                     + " / ".join(ms([p['drdc'][m] for p in ps]) for m in METRICS) + " | "
                     f"{ms([p['drdc']['pixel_AUROC'] - p['base']['pixel_AUROC'] for p in ps])} / "
                     f"{ms([p['drdc']['AUPRO'] - p['base']['AUPRO'] for p in ps])} | "
                     f"{ms([p['diffusion_only']['pixel_AUROC'] for p in ps])} / "
                     f"{ms([p['diffusion_only']['AUPRO'] for p in ps])} |")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
