"""``drdc-bench --method <name>|both|all``: each method's rows, side by side at the same image size,
through the method registry (``drdc_trt.benchmarking.runs``: ``both`` is the first two registered
methods, ``all`` every one).

Each method's rows come from its spec's ``bench_rows`` entry point (``drdc_trt/methods/<name>/bench.py``:
``(kit, opts, size, argv, log) -> {"rows", "source", "config", "image_size", "report"}``, ``kit`` the
shared machinery of ``drdc_trt.benchmarking.rows``, passed in so that a method imports no bench
module), each row measured against eager fp32 PyTorch of the same model in the same run; the first
method of the run sets the image size of the others. A method's ``bench_markdown`` entry point, where it has one, adds a
section to the markdown; the cross-method table compares the first method with each other one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from drdc_trt import methods as registry

from . import report as R
from . import rows as kit
from .machine import environment, load_average
from .rows import log_stderr
from .runs import runs
from drdc_trt.benchmarking.options import thread_count


def run(opts, method: str, argv: list[str] | None = None, log: Callable[[str], None] = log_stderr) -> dict:
    """The report of ``--method <name>``, ``both`` or ``all`` (``drdc_trt.benchmarking.runs``)."""
    if opts.device != "cpu":
        raise ValueError(f"--method {method} measures on the CPU here (--device cpu)")
    choices = runs()
    if method not in choices:
        raise ValueError(f"--method {method}: choose one of {', '.join(choices)}")
    for name in choices[method]:
        if not registry.get(name).has("bench_rows"):
            raise ValueError(f"--method {method}: method {name!r} has no bench rows (no 'bench_rows' in its "
                             "spec's extras)")
    if opts.model and len(choices[method]) > 1:
        raise ValueError(f"--model with --method {method}: a checkpoint holds one method; bench its method alone")
    with thread_count(opts.threads):
        return _run(opts, method, argv, log)


def _run(opts, method: str, argv: list[str] | None, log: Callable[[str], None]) -> dict:
    t0 = time.perf_counter()
    env = environment(torch.device("cpu"), argv)
    suite_rep = None
    size = opts.size
    methods = runs()[method]
    rows, sources, configs = [], {}, {}
    for name in methods:  # the first method's image size is every other's
        out = registry.get(name).entry("bench_rows")(kit, opts, size, argv, log)
        rows += out["rows"]
        sources[name] = out["source"]
        if out.get("config") is not None:
            configs[name] = out["config"]
        if suite_rep is None:  # the full report of the method whose rows come from the pipeline suite (the
            suite_rep = out.get("report")  # JSON's "drdc_report", as schema drdc-bench-methods/2 names it)
        size = out["image_size"]
    env["load_average_at_end"] = load_average()
    return {"schema": "drdc-bench-methods/2", "environment": env,
            "run": {"method": method, "methods": list(methods), "image_size": size, "batches": list(opts.batches),
                    "models": sources, "configs": configs, "images": getattr(opts, "images", None),
                    "warmup_s": opts.warmup_s, "min_iters": opts.min_iters, "max_seconds": opts.max_seconds,
                    "max_iters": opts.max_iters, "seed": opts.seed, "threads": opts.threads,
                    "wall_s": round(time.perf_counter() - t0, 1)},
            "rows": rows, "drdc_report": suite_rep,
            "any_failed": any(str(r["status"]).startswith("failed") for r in rows)}


# --------------------------------------------------------------------------- report
def markdown(rep: dict) -> str:
    env, run = rep["environment"], rep["run"]
    v = env["versions"]
    specs = {m: registry.get(m) for m in run["methods"]}
    title = " vs ".join(specs[m].title for m in run["methods"])
    lines = [f"# drdc-bench — {title} at {run['image_size']}² on {env['cpu']}", "",
             f"- date: {env['date']}", f"- command: `{env['command']}`",
             f"- machine: {env['cpu']}, {env['cpu_count']} cores; load average (1/5/15 min) at start "
             f"{env.get('load_average_at_start')}, at end {env.get('load_average_at_end')}",
             f"- versions: python {v['python']}, drdc_trt {v['drdc_trt']}, torch {v['torch']}, onnxruntime "
             f"{v['onnxruntime']}, onnx {v['onnx']}, numpy {v['numpy']}"]
    lines += [f"- {specs[m].title} model: {src}" for m, src in run["models"].items()]
    lines += [f"- inputs: {'images from ' + run['images'] if run.get('images') else 'uniform random images'}",
              f"- timing: perf_counter; warm-up ≥ {run['warmup_s']} s (at least one call), then ≥ {run['min_iters']} "
              f"calls and ≥ {run['max_seconds']} s per row; latency = one `predict_batch` call", "",
              "| method | engine | batch | p50 ms | p50 ms / image | images/s | speed-up vs the method's eager fp32 |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for r in rep["rows"]:
        spec = specs[r["method"]]
        name = spec.title
        # a method of several loops (--loop) names the row's
        engine = r["engine"] + (f" (loop {r['loop']})" if len(spec.loops) > 1 else "")
        if r["status"] != "ok":
            lines.append(f"| {name} | {engine} | {r.get('batch') or '—'} | {r['status']} | | | |")
            continue
        lat = r["latency_ms"]
        sp = r.get("speedup_vs_baseline")
        per_image = R._ms(lat["per_image"]["p50_ms"])
        lines.append(f"| {name} | {engine} | {r['batch']} | {R._ms(lat['p50_ms'])} | {per_image} "
                     f"| {r['throughput_ips']:.1f} | {'—' if sp is None else f'{sp:.2f}×'} |")
    for m in run["methods"]:  # a method's own section (GLAD: the steps its rows took)
        section = specs[m].entry("bench_markdown")(rep) if specs[m].has("bench_markdown") else None
        if section:
            lines += ["", section]
    if len(run["methods"]) > 1:
        lines += ["", _cross_method(rep)]
    lines += ["", "Speed-up = p50 of the same method's PyTorch eager fp32 row at the same batch / p50 of the row, "
              "both measured in this run."]
    return "\n".join(lines) + "\n"


def _cross_method(rep: dict) -> str:
    """Per batch: the run's first method's p50 over each other method's, eager and torch-free runtime
    (onnxruntime)."""
    def p50(method, loop, backend, b):
        for r in rep["rows"]:
            if (r["method"], r.get("loop"), r.get("backend")) == (method, loop, backend) and r["status"] == "ok" \
                    and r["batch"] == b:
                return r["latency_ms"]["p50_ms"]
        return None

    first, *others = rep["run"]["methods"]
    ref = registry.get(first).title
    head = ["batch"] + [f"{ref} eager / {t} eager | {ref} runtime / {t} runtime (onnxruntime)"
                        for t in (registry.get(m).title for m in others)]
    out = ["| " + " | ".join(head) + " |", "|" + "---:|" * (1 + 2 * len(others))]
    for b in rep["run"]["batches"]:
        cells = [str(b)]
        for m in others:
            for loop, backend in (("torch", "torch"), ("runtime", "onnxruntime")):
                a, c = p50(first, loop, backend, b), p50(m, loop, backend, b)
                cells.append("—" if None in (a, c) else f"{a / c:.1f}×")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def write(rep: dict, out_dir: Path, stem: str) -> tuple[Path, Path]:
    import json

    from drdc_trt.checkpoint import atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    jp, mp = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    atomic_write_text(jp, json.dumps(rep, indent=2, default=R._json_default) + "\n")
    atomic_write_text(mp, markdown(rep))
    return jp, mp
