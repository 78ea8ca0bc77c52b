"""Mean ± std of a headline table over independent seeds.

Each input is the ``.json`` that ``drdc ablate`` writes for one trained model (one training
seed, one detector seed). The summary keeps every seed's value beside the mean and the sample
standard deviation (n − 1), so a reader sees the spread and not only its size.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any, Mapping, Sequence

METRICS = ("image_AUROC", "pixel_AUROC", "AUPRO", "F1Max")


class SeedSummaryError(ValueError):
    """An input that cannot be summarised; the message names the file at fault."""


def _seed_of(d: Mapping[str, Any], path: str) -> dict[str, int]:
    try:
        train_seed = int(d["config"]["train"]["seed"])
    except (KeyError, TypeError, ValueError):
        raise SeedSummaryError(f"{path}: no config.train.seed (not a 'drdc ablate' result file?)") from None
    return {"train": train_seed, "detector": int(d.get("seed", 0))}


def _mean_rows(d: Mapping[str, Any], path: str) -> dict[str, dict]:
    """method -> row of the 'mean' category (the headline rows and the λ rows), and the variant
    rows of a reconstruction method's study (DiffusionAD, GLAD: ``ablation`` rows, already means,
    without a method of their own) as "<method> (<setting>)"."""
    rows = list(d.get("rows", ())) + list(d.get("lambda_rows", ()))
    out = {r["method"]: r for r in rows if r.get("category") == "mean"}
    if not out:
        raise SeedSummaryError(f"{path}: no rows with category 'mean' under 'rows' / 'lambda_rows'")
    name = next(iter(out)) if len(out) == 1 else d.get("method", "study")  # the study's own row names it
    for r in d.get("ablation", ()):
        setting = str(r.get("setting", ""))
        if "method" not in r and setting and not setting.startswith("default") and all(k in r for k in METRICS):
            out[f"{name} ({setting})"] = r
    return out


def summarize(results: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """``results``: (file name, parsed json) pairs. Methods present in every file are kept, in
    the first file's order; a repeated (train, detector) seed pair is refused because it would
    count one run twice."""
    if len(results) < 2:
        raise SeedSummaryError(f"need at least two result files, got {len(results)}")
    seeds, tables = [], []
    for path, d in results:
        s = _seed_of(d, path)
        if s in seeds:
            raise SeedSummaryError(f"{path}: seed pair {s} already given by {results[seeds.index(s)][0]}")
        seeds.append(s)
        tables.append(_mean_rows(d, path))
    methods = [m for m in tables[0] if all(m in t for t in tables[1:])]
    rows = []
    for m in methods:
        row: dict[str, Any] = {"method": m}
        for k in METRICS:
            vals = [float(t[m][k]) for t in tables]
            row[k] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals), "values": vals}
        rows.append(row)
    out = {"files": [p for p, _ in results], "seeds": seeds, "rows": rows}
    diag = _diagnostics(results)
    if diag:
        out["diagnostics"] = diag
    chosen = [d.get("synthetic_lambda") for _, d in results]
    if all(c is not None for c in chosen):
        out["synthetic_lambda"] = [c["chosen"] for c in chosen]
    return out


DIAG = ("image_AUROC", "brightness_spearman", "border_share")


def _diagnostics(results: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict]:
    """Mean ± std of the border / lighting diagnostics of the methods every file has."""
    tables = [{r["method"]: r for r in d.get("diagnostics") or ()} for _, d in results]
    if not all(tables):
        return []
    rows = []
    for m in [m for m in tables[0] if all(m in t for t in tables[1:])]:
        row: dict[str, Any] = {"method": m}
        for k in DIAG:
            vals = [t[m][k] for t in tables]
            if any(v is None for v in vals):
                continue
            row[k] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals), "values": vals}
        rows.append(row)
    return rows


def _cell(s: Mapping[str, Any]) -> str:
    if any(math.isnan(v) for v in s["values"]):
        return "–"
    return f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"


def markdown(summary: Mapping[str, Any]) -> str:
    n = len(summary["seeds"])
    lines = [f"Mean ± sample std (n − 1) over {n} seeds, %.", "",
             "| method | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for r in summary["rows"]:
        lines.append(f"| {r['method']} | " + " | ".join(_cell(r[k]) for k in METRICS) + " |")
    lines += ["", "Each seed (training seed / detector seed):", "",
              "| method | metric | " + " | ".join(f"{s['train']}/{s['detector']}" for s in summary["seeds"]) + " |",
              "|---|---|" + "---|" * n]
    for r in summary["rows"]:
        for k in METRICS:
            lines.append(f"| {r['method']} | {k} | " + " | ".join(f"{100 * v:.1f}" for v in r[k]["values"]) + " |")
    if summary.get("synthetic_lambda"):
        lines += ["", "λ chosen on synthetic anomalies, per seed: "
                  + ", ".join(f"{v:g}" for v in summary["synthetic_lambda"])]
    if summary.get("diagnostics"):
        lines += ["", "Border and lighting diagnostics (test split, good images), mean ± std:", "",
                  "| method | image_AUROC (%) | Spearman(score, brightness) | good maxima within 4 px of the edge (%) |",
                  "|---|---|---|---|"]
        for r in summary["diagnostics"]:
            cells = [_cell(r["image_AUROC"]) if "image_AUROC" in r else "–",
                     f"{r['brightness_spearman']['mean']:.2f} ± {r['brightness_spearman']['std']:.2f}"
                     if "brightness_spearman" in r else "–",
                     _cell(r["border_share"]) if "border_share" in r else "–"]
            lines.append(f"| {r['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load(paths: Sequence[str | Path]) -> list[tuple[str, dict]]:
    out = []
    for p in paths:
        try:
            out.append((str(p), json.loads(Path(p).read_text())))
        except FileNotFoundError:
            raise SeedSummaryError(f"{p}: no such file") from None
        except json.JSONDecodeError as e:
            raise SeedSummaryError(f"{p}: not JSON ({e})") from None
    return out
