"""What every method's ``drdc-bench --method`` rows share: the model of the options, the inputs,
the measured engine rows on a temporary bundle, the speed-ups against the method's own eager fp32
PyTorch, the export and the engine suite.

A method's ``bench.py`` (``drdc_trt/methods/<name>/bench.py``, its spec's ``bench_rows``) gets this
module as its first argument (``kit``), builds its engines and calls ``kit.engine_rows``: the method
imports nothing of the bench (the application), and this module names no method and imports none:
what it needs of one (its spec, its model class) comes in as arguments.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Callable

import torch

from drdc_trt.method_spec import MethodSpec

from .stats import summarize
from .timing import Clock, MemoryProbe, measure


def log_stderr(msg: str) -> None:
    """The bench's progress line (stderr, tagged)."""
    print(f"[drdc-bench] {msg}", file=sys.stderr, flush=True)


def method_model(opts, spec: MethodSpec, factory: Callable, size: int | None = None):
    """(model, source text) of the options for the method of ``spec``: ``--model CKPT`` (refused when
    it holds another method's model) or ``factory(cfg)`` on the method's random-init preset at
    ``size`` (else ``--size``, else the preset's)."""
    if opts.model:
        from drdc_trt.loading import load_checkpoint

        model = load_checkpoint(opts.model)
        if model.cfg.method != spec.name:
            raise ValueError(f"--model {opts.model} holds a {model.cfg.method} model; --method {spec.name} needs "
                             f"a {spec.title} checkpoint")
        return model.eval(), f"checkpoint {opts.model}"
    from drdc_trt.config import preset

    cfg = preset(opts.config or "small", spec.name)
    size = size or opts.size
    if size is not None and size != cfg.image_size:
        cfg = cfg.replace(image_size=size)
    torch.manual_seed(opts.seed)
    model = factory(cfg)
    return (model.eval(), f"preset {opts.config or 'small'!r} for {spec.title}, randomly initialised "
            f"(latency does not depend on the weights)")


def bench_inputs(opts, size: int, batches) -> dict[int, torch.Tensor]:
    """{batch: B×3×S×S in [-1, 1]}: ``--images``, max(batches) of them evenly spaced over the sorted
    folder, read as ``drdc detect`` reads them (cycled to fill a batch), else uniform random images
    from the seed."""
    if getattr(opts, "images", None):
        from drdc_trt.data import load_image
        from drdc_trt.data.folder import IMAGE_SUFFIXES

        root = Path(opts.images)
        files = sorted(f for f in root.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES) if root.is_dir() else []
        if not files:
            raise ValueError(f"--images {root}: no images found (a folder of {', '.join(sorted(IMAGE_SUFFIXES))})")
        n = min(len(files), max(batches))  # spread over the folder (sorted: one defect type after another)
        pool = torch.stack([load_image(files[i * len(files) // n], size) for i in range(n)])
        return {b: pool[torch.arange(b) % pool.shape[0]] for b in batches}
    gen = torch.Generator().manual_seed(opts.seed)
    return {b: torch.rand(b, 3, size, size, generator=gen) * 2 - 1 for b in batches}


def engine_rows(spec: MethodSpec, model, opts, engines, log: Callable[[str], None],
                steps_of: Callable | None = None) -> list[dict]:
    """Measure each engine (label, backend, loop, build(bundle) → detector, takes numpy[, precision])
    at every batch of ``opts`` on a bundle exported from ``model`` into a temporary folder (with
    ``opts.int8_calib``, its denoisers also quantized to int8 on those images); ``steps_of(out)``:
    extra per-row facts from one more call's output (an adaptive loop: the steps its images took). Rows carry
    ``method`` = ``spec.name``; speed-ups against the method's eager fp32 row (loop ``torch``)."""
    method = spec.name
    device = torch.device("cpu")
    clock, probe = Clock(device), MemoryProbe(device)
    s = model.cfg.image_size
    inputs = bench_inputs(opts, s, opts.batches)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix=f"drdc_bench_{method}_") as tmp:
        log(f"exporting the {spec.title} model (S={s}) to a temporary bundle")
        bundle = Path(tmp) / "bundle"
        export_bundle(model, bundle, seed=opts.seed, check_batches=(), max_batch=max(opts.batches))
        if opts.int8_calib:
            add_int8_networks(bundle, opts.int8_calib, s, log, opts.int8_calib_images)
        for label, backend, loop, build, host, *precision in engines:
            try:
                det = build(bundle)
            except Exception as e:  # noqa: BLE001 - one engine failing must not end the run
                rows.append({"method": method, "engine": label, "backend": backend, "loop": loop, "batch": None,
                             "baseline": loop == "torch", "status": f"failed: {e}"})
                continue
            for b in opts.batches:
                x = inputs[b].numpy() if host else inputs[b]
                probe.reset()
                with torch.no_grad():
                    m = measure(lambda d=det, a=x: d.predict_batch(a), clock, opts.warmup_s, opts.min_iters,
                                opts.max_seconds, opts.max_iters)
                lat = summarize(m.latencies_ms, b)
                row = {"method": method, "engine": label, "backend": backend, "loop": loop,
                       "precision": precision[0] if precision else "float32",
                       "batch": b, "baseline": loop == "torch", "status": "ok", "latency_ms": lat,
                       "throughput_ips": lat["throughput_ips"], "memory": probe.read(), "stop_reason": m.stop_reason}
                note = ""
                if steps_of is not None:
                    with torch.no_grad():
                        row.update(steps_of(det.predict_batch(x)))
                    note = f", mean steps {row['steps']['mean_steps']:.2f}"
                rows.append(row)
                log(f"{spec.title} {label} / batch {b}: p50 {lat['p50_ms']:.2f} ms ({lat['iterations']} calls){note}")
            del det
    speedups(rows)
    return rows


def add_int8_networks(bundle: Path, calib: str, size: int, log: Callable[[str], None], count: int = 64) -> None:
    """``drdc export --int8 --calib --calib-images count`` on the temporary bundle (its default networks,
    the denoisers)."""
    from drdc_trt.export.int8 import add_int8, calibration_images

    images, _ = calibration_images(calib, size, count)
    sec = add_int8(bundle, images, str(calib), log=log)
    for net, why in sec["kept_f32"].items():
        log(f"int8: {net} stays f32: {why}")


def speedups(rows: list[dict]) -> None:
    """speedup_vs_baseline: the method's own eager fp32 p50 / the row's p50, per batch."""
    base = {(r["method"], r["batch"]): r["latency_ms"]["p50_ms"] for r in rows
            if r.get("baseline") and r["status"] == "ok" and r.get("loop") == "torch"}
    for r in rows:
        if r["status"] == "ok":
            b = base.get((r["method"], r["batch"]))
            r["speedup_vs_baseline"] = b / r["latency_ms"]["p50_ms"] if b else None


def export_bundle(model, out, **options):
    """``drdc export`` of ``model`` to the bundle folder ``out`` (``drdc_trt.export.export_bundle``: the
    exporter of the model's method, found through the registry)."""
    from drdc_trt.export import export_bundle as export

    return export(model, out, **options)
