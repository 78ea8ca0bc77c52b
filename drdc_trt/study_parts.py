"""What every quality study shares (``drdc ablate`` on any method's model): config keys of the
varied settings and their labels, the resumable result cache under the work folder, per-defect
rows, and the pieces of the written reports."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import platform
import re
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from safetensors.torch import load_file

from drdc_trt import viz
from drdc_trt.checkpoint import CONFIG, PIXEL_STATS, STATS, WEIGHTS, atomic_save_tensors, atomic_write_text
from drdc_trt.data import Loaded
from drdc_trt.evaluate import example_rows, method_outputs


def config_value(cfg, key: str):
    node = cfg
    for part in key.split("."):
        if not hasattr(node, part):
            raise KeyError(f"unknown config key {key!r}")
        node = getattr(node, part)
    return node


def label(changes: Mapping[str, Any]) -> str:
    return ", ".join(f"{SHORT.get(k, k)}={v}" for k, v in changes.items()) or "default"


def variant_changes(cfg, factors: Mapping[str, Sequence], grid: bool = False) -> list[dict[str, Any]]:
    """The settings to run besides the model's own: one factor at a time (each
    value that differs from the model's), or every combination (``grid``)."""
    default = {k: plain(config_value(cfg, k)) for k in factors}
    factors = {k: [plain(v) for v in vals] for k, vals in factors.items()}
    if grid:
        combos = [dict(zip(factors, vals)) for vals in itertools.product(*factors.values())]
        return [{k: v for k, v in c.items() if v != default[k]} for c in combos if c != default]
    return [{k: v} for k, vals in factors.items() for v in vals if v != default[k]]


def plain(v):
    """Tuples as lists, so a list setting compares equal to the same values given on the command line."""
    return [plain(x) for x in v] if isinstance(v, (list, tuple)) else v


def slug(changes: Mapping[str, Any]) -> str:
    """A file-name-safe name of a variant (numbers kept as they are: diffusion-t0=150)."""
    raw = "_".join(f"{k.replace('.', '-')}={v}" for k, v in changes.items()) or "default"
    return re.sub(r"[^A-Za-z0-9_.=+-]", "", raw.replace(", ", "+"))


def json_clean(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: json_clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_clean(x) for x in v]
    return v


def machine_info(device: str = "cpu") -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "device": str(device)}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


class ResultCache:
    """Finished pieces under ``work``, valid only for the same model, data and settings."""

    def __init__(self, work: Path, fingerprint: str):
        self.dir = Path(work)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fp = fingerprint

    def get_json(self, name: str) -> dict | None:
        p = self.dir / f"{name}.json"
        if not p.is_file():
            return None
        d = json.loads(p.read_text())
        return d if d.get("fingerprint") == self.fp else None

    def put_json(self, name: str, d: dict) -> None:
        atomic_write_text(self.dir / f"{name}.json", json.dumps(json_clean({**d, "fingerprint": self.fp}), indent=2))

    def get_tensors(self, name: str) -> dict[str, torch.Tensor] | None:
        meta = self.get_json(name)
        p = self.dir / f"{name}.safetensors"
        return load_file(str(p)) if meta is not None and p.is_file() else None

    def put_tensors(self, name: str, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        atomic_save_tensors(tensors, self.dir / f"{name}.safetensors")
        self.put_json(name, meta)  # the JSON last: it says the tensors are complete

    def drop_parts(self, name: str) -> None:
        for p in self.dir.glob(f"{name}.part*"):
            p.unlink()


FIELDS = ("pred_score", "pred_label", "anomaly_map", "pred_mask", "base_map", "diff_map", "base_score")


def fingerprint(model_dir: Path, test: Loaded, calib_names: Sequence[str], extra: Mapping) -> str:
    h = hashlib.sha256()
    for name in (WEIGHTS, CONFIG, STATS, PIXEL_STATS):
        if (Path(model_dir) / name).is_file():
            h.update((Path(model_dir) / name).read_bytes())
    h.update(json.dumps([str(s.path.name) + s.defect for s in test.samples]).encode())
    h.update(json.dumps(list(calib_names)).encode())
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------- output
def mean_row(rows: Sequence[dict], method: str) -> dict | None:
    return next((r for r in rows if r["category"] == "mean" and r["method"] == method), None)


def pct(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def per_defect_rows(res) -> list[dict]:
    """Each method of a study on each defect type alone (``defect_rows``)."""
    ev = res.eval
    return defect_rows(ev.data, method_outputs(ev.out, res.stats, res.cfg, ev.knn))


def defect_rows(data: Loaded, methods: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> list[dict]:
    """Each method (name → (scores, maps)) on each defect type alone: that type's images against all
    good test images (image AUROC, pixel AUROC, AUPRO), plus the defect-area median (% of the image)."""
    from drdc_trt import metrics

    good = [i for i, s in enumerate(data.samples) if s.defect == "good"]
    rows = []
    for defect in sorted({s.defect for s in data.samples} - {"good"}):
        own = [i for i, s in enumerate(data.samples) if s.defect == defect]
        idx = good + own
        area = data.masks[own, 0].flatten(1).mean(1).median().item()
        for name, (scores, maps) in methods.items():
            rows.append({"defect": defect, "images": len(own), "median_area_pct": 100 * area, "method": name,
                         "image_AUROC": metrics.auroc(data.labels[idx], scores[idx]),
                         "pixel_AUROC": metrics.auroc(data.masks[idx, 0] > 0.5, maps[idx]),
                         "AUPRO": metrics.aupro(data.masks[idx, 0] > 0.5, maps[idx])})
    return rows


def per_defect_markdown(rows: Sequence[dict]) -> str:
    lines = ["| defect | images | median area % | method | image_AUROC | pixel_AUROC | AUPRO |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['defect']} | {r['images']} | {r['median_area_pct']:.2f} | {r['method']} | "
                     f"{pct(r['image_AUROC'])} | {pct(r['pixel_AUROC'])} | {pct(r['AUPRO'])} |")
    return "\n".join(lines)


def pick_examples(data: Loaded, defect: str, n: int) -> list[int]:
    """``n`` images of a defect type spread over the type's list (deterministic)."""
    idx = [i for i, s in enumerate(data.samples) if s.defect == defect]
    if len(idx) <= n:
        return idx
    return [idx[round(j * (len(idx) - 1) / max(1, n - 1))] for j in range(n)]


def example_pngs(ev, stats, prefix: Path, defects: Sequence[str], per_type: int) -> list[Path]:
    """``<prefix>_examples_<defect>.png``: a grid of ``per_type`` test images of each defect type with
    every method's map (``stats``: DRDC's, None for a reconstruction method's own row)."""
    pngs = []
    for defect in defects:
        idx = pick_examples(ev.data, defect, per_type)
        if not idx:
            continue
        rows, headers, caps = example_rows(ev, stats, idx)
        scale = max(1, 128 // ev.data.images.shape[-1])
        p = prefix.with_name(f"{prefix.name}_examples_{defect}.png")
        p.write_bytes(viz.grid_png(rows, headers, caps, scale, title=f"{defect}: red outline = ground truth",
                                   max_side=128))
        pngs.append(p)
    return pngs


def report_header(title: str, meta: Mapping[str, Any], num_test: int) -> list[str]:
    """The first lines of every method's ablation report: title, date, machine, data."""
    md = [f"# {title}", "", f"- date: {meta.get('date', time.strftime('%Y-%m-%d %H:%M:%S'))}"]
    m = meta.get("machine", {})
    if m:
        md.append("- machine: " + ", ".join(f"{k} {v}" for k, v in m.items()))
    if meta.get("data"):
        md.append(f"- data: `{meta['data']}` ({num_test} test images)")
    return md


SHORT = {"diffusion.grid_sizes": "g", "diffusion.num_sets": "K", "diffusion.num_steps": "steps", "diffusion.t0": "t0",
         "fusion.lam": "λ", "diffusion.margin": "margin", "fusion.heat_norm": "heat_norm"}


def eval_sections(ev, stats, cfg) -> dict:
    """What ``drdc eval`` adds to its table: each row's method on each defect type alone
    (``defect_rows``), and where the result batch names its diagnostic maps (DRDC: base, the diffusion
    map alone, the blend) the border / lighting diagnostics of those maps and their own table (the
    diffusion map alone tells an undertrained U-Net from a fusion that loses a good map)."""
    from drdc_trt import diagnostics
    from drdc_trt.evaluate import table

    rows = method_outputs(ev.out, stats, cfg, ev.knn)
    out = {"per_defect": defect_rows(ev.data, rows)}
    if ev.out is not None and hasattr(ev.out, "diagnostic_maps"):
        maps = ev.out.diagnostic_maps(stats, cfg)
        out["diagnostics"] = diagnostics.diagnose(ev.data.images, ev.data.labels, maps)
        # Metrics only for the maps the tables above do not hold already (AUPRO at 224² costs ~10 s each)
        new = {k: v for k, v in maps.items()
               if not any(torch.equal(v[0], s) and torch.equal(v[1], m) for s, m in rows.values())}
        out["diagnostic_rows"] = table(ev.data, new)
        out["diagnostic_defect_rows"] = defect_rows(ev.data, new)
    return out


def eval_sections_markdown(sections: Mapping[str, Any], size: int) -> str:
    from drdc_trt import diagnostics
    from drdc_trt.evaluate import COLUMNS

    parts = ["## Per defect type (that type's images against every good test image)", "",
             per_defect_markdown(sections["per_defect"])]
    if "diagnostics" in sections:
        means = [r for r in sections["diagnostic_rows"] if r["category"] == "mean"]
        parts += ["", "## The maps the blend is made of, where not in the tables above", "",
                  viz.markdown_table(means, COLUMNS), "",
                  per_defect_markdown(sections["diagnostic_defect_rows"]), "",
                  "## Border and lighting diagnostics (good test images)", "",
                  diagnostics.markdown(sections["diagnostics"], size)]
    return "\n".join(parts)
