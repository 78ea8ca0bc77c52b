"""``drdc-bench --method diffusionad`` and ``--method both`` (DRDC and DiffusionAD side by side).

DiffusionAD rows, each against eager fp32 PyTorch of the same model in the same run:

* ``torch eager`` (the baseline): ``DiffusionADDetector.predict_batch`` (U-Net on 2 rows per image,
  the norm-guided combination in PyTorch, segmentation net, top-k score);
* ``onnxruntime (numpy combination)``: the torch-free ``DiffusionADBundleDetector`` on ONNX
  Runtime with the numpy transcription of the combination;
* ``onnxruntime (torch-free runtime)``: the same with the compiled kernel (``_C.norm_guided``);
* ``openvino (torch-free runtime)`` when ``--backends`` names openvino.

The model is a randomly initialised DiffusionAD of the preset (``--config``; latency does not
depend on the weights) or ``--model CKPT``; the engine rows run a bundle exported from it into a
temporary folder. ``--method both`` runs DRDC's own suite (its rows against DRDC's eager
baseline, onnxruntime rows on a bundle exported from its random-init model the same way) and the
DiffusionAD rows at the same image size, and writes one report with both.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from . import report as R
from .machine import environment, load_average
from .stats import summarize
from .suite import thread_count
from .timing import Clock, MemoryProbe, measure


def _log(msg: str) -> None:
    print(f"[drdc-bench] {msg}", file=sys.stderr, flush=True)


def diffusionad_model(opts, size: int | None = None):
    """(model, source text) of the options: ``--model CKPT`` or a random-init preset."""
    from drdc_trt.models.diffusionad import DiffusionADModel

    if opts.model:
        from drdc_trt.checkpoint import load_checkpoint

        model = load_checkpoint(opts.model)
        if model.cfg.method != "diffusionad":
            raise ValueError(f"--model {opts.model} holds a {model.cfg.method} model; --method diffusionad needs "
                             "a DiffusionAD checkpoint")
        return model.eval(), f"checkpoint {opts.model}"
    from drdc_trt.config import preset

    cfg = preset(opts.config or "small", "diffusionad")
    size = size or opts.size
    if size is not None and size != cfg.image_size:
        cfg = cfg.replace(image_size=size)
    torch.manual_seed(opts.seed)
    return (DiffusionADModel(cfg).eval(), f"preset {opts.config or 'small'!r} for DiffusionAD, randomly initialised "
            f"(latency does not depend on the weights)")


def diffusionad_rows(opts, model, log: Callable[[str], None] = _log) -> list[dict]:
    """The DiffusionAD rows at every batch size of ``opts``, speed-ups against its eager baseline."""
    from drdc_trt.export import export_bundle
    from drdc_trt.models.diffusionad import DiffusionADDetector
    from drdc_trt.runtime.diffusionad import DiffusionADBundleDetector

    device = torch.device("cpu")
    clock, probe = Clock(device), MemoryProbe(device)
    s = model.cfg.image_size
    gen = torch.Generator().manual_seed(opts.seed)
    inputs = {b: torch.rand(b, 3, s, s, generator=gen) * 2 - 1 for b in opts.batches}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="drdc_bench_dad_") as tmp:
        log(f"exporting the DiffusionAD model (S={s}) to a temporary bundle")
        export_bundle(model, Path(tmp) / "bundle", seed=opts.seed, check_batches=(), max_batch=max(opts.batches))
        bundle = Path(tmp) / "bundle"
        threads = opts.threads or 0
        engines = [("torch eager", "torch", "torch", lambda: DiffusionADDetector(model, "cpu", opts.seed), False),
                   ("onnxruntime (numpy combination)", "onnxruntime", "numpy",
                    lambda: DiffusionADBundleDetector(bundle, "onnxruntime", "numpy", threads=threads), True),
                   ("onnxruntime (torch-free runtime)", "onnxruntime", "runtime",
                    lambda: DiffusionADBundleDetector(bundle, "onnxruntime", "csrc", threads=threads), True)]
        if "openvino" in opts.backends:
            engines.append(("openvino (torch-free runtime)", "openvino", "runtime",
                            lambda: DiffusionADBundleDetector(bundle, "openvino", "csrc", threads=threads), True))
        for label, backend, loop, build, host in engines:
            try:
                det = build()
            except Exception as e:  # noqa: BLE001 - one engine failing must not end the run
                rows.append({"method": "diffusionad", "engine": label, "backend": backend, "loop": loop,
                             "batch": None, "baseline": backend == "torch", "status": f"failed: {e}"})
                continue
            for b in opts.batches:
                x = inputs[b].numpy() if host else inputs[b]
                probe.reset()
                with torch.no_grad():
                    m = measure(lambda d=det, a=x: d.predict_batch(a), clock, opts.warmup_s, opts.min_iters,
                                opts.max_seconds, opts.max_iters)
                lat = summarize(m.latencies_ms, b)
                rows.append({"method": "diffusionad", "engine": label, "backend": backend, "loop": loop,
                             "precision": "float32", "batch": b, "baseline": backend == "torch", "status": "ok",
                             "latency_ms": lat, "throughput_ips": lat["throughput_ips"], "memory": probe.read(),
                             "stop_reason": m.stop_reason})
                log(f"DiffusionAD {label} / batch {b}: p50 {lat['p50_ms']:.2f} ms ({lat['iterations']} calls)")
            del det
    _speedups(rows)
    return rows


def _speedups(rows: list[dict]) -> None:
    """speedup_vs_baseline: the method's own eager fp32 p50 / the row's p50, per batch."""
    base = {(r["method"], r["batch"]): r["latency_ms"]["p50_ms"] for r in rows
            if r.get("baseline") and r["status"] == "ok" and r.get("loop") == "torch"}
    for r in rows:
        if r["status"] == "ok":
            b = base.get((r["method"], r["batch"]))
            r["speedup_vs_baseline"] = b / r["latency_ms"]["p50_ms"] if b else None


def run(opts, method: str, argv: list[str] | None = None, log: Callable[[str], None] = _log) -> dict:
    """The report of ``--method diffusionad`` or ``both``."""
    if opts.device != "cpu":
        raise ValueError("--method diffusionad/both measures on the CPU here (--device cpu)")
    with thread_count(opts.threads):
        return _run(opts, method, argv, log)


def _run(opts, method: str, argv: list[str] | None, log: Callable[[str], None]) -> dict:
    t0 = time.perf_counter()
    env = environment(torch.device("cpu"), argv)
    drdc_rep = None
    size = opts.size
    if method == "both":
        drdc_rep = _drdc_report(opts, argv, log)
        size = drdc_rep["run"]["image_size"]  # the same image size for both methods
    model, source = diffusionad_model(opts, size)
    rows = diffusionad_rows(opts, model, log)
    if drdc_rep is not None:
        drdc_rows = [{**r, "method": "drdc"} for r in drdc_rep["rows"]]
        rows = drdc_rows + rows
    env["load_average_at_end"] = load_average()
    cfg = model.cfg
    return {"schema": "drdc-bench-methods/1", "environment": env,
            "run": {"method": method, "image_size": cfg.image_size, "batches": list(opts.batches),
                    "diffusionad_model": source, "diffusionad_config": cfg.to_dict(),
                    "drdc_model": drdc_rep["run"]["model_source"] if drdc_rep else None,
                    "warmup_s": opts.warmup_s, "min_iters": opts.min_iters, "max_seconds": opts.max_seconds,
                    "max_iters": opts.max_iters, "seed": opts.seed, "threads": opts.threads,
                    "wall_s": round(time.perf_counter() - t0, 1)},
            "rows": rows, "drdc_report": drdc_rep,
            "any_failed": any(str(r["status"]).startswith("failed") for r in rows)}


def _drdc_report(opts, argv, log) -> dict:
    """DRDC's own suite at the options' preset, its engine rows on a bundle of its random-init model."""
    from dataclasses import replace

    from drdc_trt.config import preset
    from drdc_trt.export import export_bundle
    from drdc_trt.models import DRDCModel

    from . import suite

    if opts.bundle or opts.model:
        return suite.run(opts, argv, log)
    cfg = preset(opts.config or "small")
    changes = {"backbone.weights": "none"}  # random init: no ImageNet download
    if opts.size is not None:
        changes["image_size"] = opts.size
    cfg = cfg.replace(**changes)
    torch.manual_seed(opts.seed)
    model = DRDCModel(cfg).eval()
    if cfg.fusion.diff_norm == "pixel":  # neutral per-pixel statistics, as the suite gives a random-init model
        from drdc_trt.fusion import PixelStats

        s = cfg.image_size
        model.stats.pixel = PixelStats(torch.zeros(s, s), torch.ones(s, s))
    with tempfile.TemporaryDirectory(prefix="drdc_bench_drdc_") as tmp:
        log(f"exporting a random-init DRDC model (S={cfg.image_size}) to a temporary bundle")
        export_bundle(model, Path(tmp) / "bundle", seed=opts.seed, check_batches=(), max_batch=max(opts.batches))
        sub = replace(opts, config=None, bundle=str(Path(tmp) / "bundle"), size=None, write=False,
                      loops=tuple(dict.fromkeys((*opts.loops, "runtime"))))
        rep = suite.run(sub, argv, log)
    rep["run"]["model_source"] = (f"preset {opts.config or 'small'!r}, randomly initialised (its engine rows run a "
                                  "bundle exported from it)")
    return rep


# --------------------------------------------------------------------------- report
def markdown(rep: dict) -> str:
    env, run = rep["environment"], rep["run"]
    v = env["versions"]
    both = run["method"] == "both"
    title = "DRDC vs DiffusionAD" if both else "DiffusionAD"
    lines = [f"# drdc-bench — {title} at {run['image_size']}² on {env['cpu']}", "",
             f"- date: {env['date']}", f"- command: `{env['command']}`",
             f"- machine: {env['cpu']}, {env['cpu_count']} cores; load average (1/5/15 min) at start "
             f"{env.get('load_average_at_start')}, at end {env.get('load_average_at_end')}",
             f"- versions: python {v['python']}, drdc_trt {v['drdc_trt']}, torch {v['torch']}, onnxruntime "
             f"{v['onnxruntime']}, onnx {v['onnx']}, numpy {v['numpy']}",
             f"- DiffusionAD model: {run['diffusionad_model']}"]
    if both:
        lines.append(f"- DRDC model: {run['drdc_model']}")
    lines += [f"- timing: perf_counter; warm-up ≥ {run['warmup_s']} s (at least one call), then ≥ {run['min_iters']} "
              f"calls and ≥ {run['max_seconds']} s per row; latency = one `predict_batch` call on random images", "",
              "| method | engine | batch | p50 ms | p50 ms / image | images/s | speed-up vs the method's eager fp32 |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for r in rep["rows"]:
        name = "DRDC" if r["method"] == "drdc" else "DiffusionAD"
        engine = r["engine"] + (f" (loop {r['loop']})" if r["method"] == "drdc" else "")
        if r["status"] != "ok":
            lines.append(f"| {name} | {engine} | {r.get('batch') or '—'} | {r['status']} | | | |")
            continue
        lat = r["latency_ms"]
        sp = r.get("speedup_vs_baseline")
        per_image = R._ms(lat["per_image"]["p50_ms"])
        lines.append(f"| {name} | {engine} | {r['batch']} | {R._ms(lat['p50_ms'])} | {per_image} "
                     f"| {r['throughput_ips']:.1f} | {'—' if sp is None else f'{sp:.2f}×'} |")
    if both:
        lines += ["", _cross_method(rep)]
    lines += ["", "Speed-up = p50 of the same method's PyTorch eager fp32 row at the same batch / p50 of the row, "
              "both measured in this run."]
    return "\n".join(lines) + "\n"


def _cross_method(rep: dict) -> str:
    """Per batch: DRDC's eager p50 / DiffusionAD's eager p50, and the same for the torch-free runtimes."""
    def p50(method, loop, backend):
        for r in rep["rows"]:
            if (r["method"], r.get("loop"), r.get("backend")) == (method, loop, backend) and r["status"] == "ok" \
                    and r["batch"] == b:
                return r["latency_ms"]["p50_ms"]
        return None

    out = ["| batch | DRDC eager / DiffusionAD eager | DRDC runtime (onnxruntime) / DiffusionAD runtime "
           "(onnxruntime) |", "|---:|---:|---:|"]
    for b in rep["run"]["batches"]:
        e = (p50("drdc", "torch", "torch"), p50("diffusionad", "torch", "torch"))
        rt = (p50("drdc", "runtime", "onnxruntime"), p50("diffusionad", "runtime", "onnxruntime"))
        cells = ["—" if None in pair else f"{pair[0] / pair[1]:.1f}×" for pair in (e, rt)]
        out.append(f"| {b} | {cells[0]} | {cells[1]} |")
    return "\n".join(out)


def write(rep: dict, out_dir: Path, stem: str) -> tuple[Path, Path]:
    import json

    from drdc_trt.checkpoint import atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    jp, mp = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    atomic_write_text(jp, json.dumps(rep, indent=2, default=R._json_default) + "\n")
    atomic_write_text(mp, markdown(rep))
    return jp, mp
