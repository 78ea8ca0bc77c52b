"""One ``drdc-bench`` run: the model, the ceilings, every engine row, the report."""

from __future__ import annotations

import datetime as dt
import gc
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from drdc_trt.methods.drdc import bench_engines as E
from drdc_trt.methods.drdc import bench_limits as limits
from drdc_trt.benchmarking.machine import environment, load_average
from drdc_trt.benchmarking.stats import summarize
from drdc_trt.benchmarking.options import OPENVINO_PRECISIONS, BenchError, Options, thread_count
from drdc_trt.benchmarking.timing import Clock, MemoryProbe, StageTimer, measure


def _log(msg: str) -> None:
    print(f"[drdc-bench] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- model
def load_subject(opts: Options, device: torch.device, log: Callable[[str], None]):
    """(cfg, model, stats, bundle, config_name, model_source) for the options."""
    from drdc_trt.methods.drdc.fusion import FusionStats
    from drdc_trt.methods.drdc.model import DRDCModel

    bundle = None
    if opts.bundle:
        from drdc_trt.export.bundle import load_bundle

        bundle = load_bundle(opts.bundle)
    if opts.model:
        from drdc_trt.loading import load_checkpoint

        model = load_checkpoint(opts.model)
        cfg, stats = model.cfg, model.stats
        source = f"checkpoint {opts.model}"
        name = Path(opts.model).name or "model"
    elif bundle is not None:
        cfg = bundle.model_config()
        model = None  # random init below
        stats = FusionStats.from_dict(bundle.manifest["fusion_stats"])
        source = (f"bundle {opts.bundle} (engines); the torch rows run a randomly initialised model of the "
                  "bundle's config (latency does not depend on the weights)")
        name = "bundle-" + (Path(opts.bundle).resolve().name or "bundle")
    else:
        from drdc_trt.settings import preset

        cfg = preset(opts.config)
        model = None
        source = (f"preset {opts.config!r}, randomly initialised (backbone too: latency does not depend on "
                  "the weights)")
        name = opts.config
        stats = FusionStats()
    changes = {}
    if opts.size is not None and opts.size != cfg.image_size:
        changes["image_size"] = opts.size
    if opts.steps is not None and opts.steps != cfg.diffusion.num_steps:
        changes["diffusion.num_steps"] = opts.steps
    if changes and (bundle is not None or opts.model):  # (checked before the backbone change below)
        raise BenchError(f"{'--bundle' if bundle is not None else '--model'} fixes the image size "
                         f"({cfg.image_size}) and the DDIM steps ({cfg.diffusion.num_steps}); drop "
                         f"{', '.join('--size' if k == 'image_size' else '--steps' for k in changes)}")
    if model is None:
        # A random-init model: latency does not depend on the weights, so the backbone
        # needs none (the ImageNet weights package may be absent, e.g. on a GPU machine).
        if cfg.backbone.weights != "none":
            changes["backbone.weights"] = "none"
    if changes:
        try:
            cfg = cfg.replace(**changes)
        except (KeyError, ValueError) as e:
            raise BenchError(f"--size/--steps: {e}") from None
    if model is None:
        torch.manual_seed(opts.seed)
        log(f"building a random-init {name} model (S={cfg.image_size}, {cfg.diffusion.num_steps} steps)")
        model = DRDCModel(cfg)
    if bundle is not None and opts.model:
        if model.cfg.to_dict() != bundle.model_config().to_dict():
            raise BenchError(f"--model {opts.model} and --bundle {opts.bundle} hold different configs")
        source = f"checkpoint {opts.model} (torch rows) and bundle {opts.bundle} (engines)"
    if cfg.fusion.diff_norm == "pixel" and stats.pixel is None:
        # per-pixel statistics: the bundle's, else neutral ones (the op is timed, the values do not matter)
        from drdc_trt.methods.drdc.fusion import PixelStats

        arrays = bundle.load_pixel_stats() if bundle is not None else None
        s = cfg.image_size
        stats.pixel = (PixelStats(torch.from_numpy(arrays["mean"]), torch.from_numpy(arrays["std"])) if arrays
                       else PixelStats(torch.zeros(s, s), torch.ones(s, s)))
    model = model.to(device).eval()
    return cfg, model, stats, bundle, name, source


# --------------------------------------------------------------------------- rows
def plan(opts: Options) -> list[E.EngineSpec]:
    """The baseline first, then every requested backend × loop (× precision for torch backends)."""
    base = E.EngineSpec("torch", "torch", "float32", baseline=True)
    specs = [base]
    for b in opts.backends:
        torch_backend = b in ("torch", "torch-compiled")
        # OpenVINO: a row per inference precision hint (its CPU default would be bf16)
        precs = opts.precisions if torch_backend else (OPENVINO_PRECISIONS if b == "openvino" else ("float32",))
        # loop "runtime" runs bundles only: a torch backend gets a (not available) row for it
        # only when it was asked for nothing else
        loops = [lp for lp in opts.loops if not (torch_backend and lp == "runtime")] or list(opts.loops)
        for p in precs:
            for loop in loops:
                s = E.EngineSpec(b, loop, p)
                if s.key != base.key and s not in specs:
                    specs.append(s)
    return specs


def _label(spec: E.EngineSpec) -> str:
    return {"torch": "torch eager", "torch-compiled": "torch-compiled", "onnxruntime": "onnxruntime",
            "openvino": "openvino", "tensorrt": "tensorrt"}.get(spec.backend, spec.backend) + (
        " (torch-free runtime)" if spec.loop == "runtime" else "")


def _row(spec: E.EngineSpec, label: str, precision: str, batch, status: str, **extra) -> dict:
    return {"engine": label, "backend": spec.backend, "loop": spec.loop, "precision": precision,
            "batch": batch, "baseline": spec.baseline, "status": status, **extra}


def run(opts: Options, argv: list[str] | None = None, log: Callable[[str], None] = _log) -> dict:
    with thread_count(opts.threads):
        return _run(opts, argv, log)


def _run(opts: Options, argv: list[str] | None, log: Callable[[str], None]) -> dict:
    t_start = time.perf_counter()
    deadline = t_start + opts.budget_s if opts.budget_s else None
    device = torch.device(opts.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda: torch sees no CUDA GPU")
    for b in opts.batches:
        if b < 1:
            raise BenchError(f"--batch: sizes must be >= 1, got {b}")
    cfg, model, stats, bundle, name, source = load_subject(opts, device, log)
    env = environment(device, argv)
    env["threads"] = _threads(opts)
    notes: list[str] = []

    log("counting FLOPs and measuring the device's GEMM rate and copy bandwidth")
    flops = limits.pipeline_flops(cfg, model.base, device)
    peaks_start = limits.gemm_peaks(device)
    copy_start = limits.copy_bandwidth(device)
    clock = Clock(device)
    timer = StageTimer(clock)
    probe = MemoryProbe(device)
    ctx = E.Context(cfg=cfg, device=device, model=model, stats=stats, bundle=bundle, seed=opts.seed,
                    compile_mode=opts.compile_mode, ort_threads=opts.threads or 0)
    gen = torch.Generator().manual_seed(opts.seed)
    inputs = {b: (torch.rand(b, 3, cfg.image_size, cfg.image_size, generator=gen) * 2 - 1).to(device)
              for b in opts.batches}

    rows: list[dict] = []
    any_failed = False
    for spec in plan(opts):
        label, prec = _label(spec), E.engine_precision(spec, ctx)
        why = E.unavailable(spec, ctx)
        if why:
            rows.append(_row(spec, label, prec, None, f"not available: {why}"))
            log(f"{label} / loop {spec.loop} / {prec}: not available: {why}")
            continue
        if deadline and time.perf_counter() > deadline:
            rows.append(_row(spec, label, prec, None, f"not run: time budget --budget-s {opts.budget_s:g} spent"))
            continue
        try:
            log(f"building {label} / loop {spec.loop} / {prec}")
            eng = E.build(spec, ctx, timer)
        except Exception as e:  # noqa: BLE001 - one engine failing must not end the run
            any_failed = True
            rows.append(_row(spec, label, prec, None, f"failed: {type(e).__name__}: {_first_line(e)}"))
            log(f"{label} / loop {spec.loop}: build failed: {e}")
            continue
        for b in opts.batches:
            if deadline and time.perf_counter() > deadline:
                rows.append(_row(spec, eng.label, eng.precision, b,
                                 f"not run: time budget --budget-s {opts.budget_s:g} spent"))
                continue
            x = inputs[b]
            arg = x.cpu().numpy() if eng.host_input else x
            probe.reset()
            try:
                m = measure(lambda e=eng, a=arg: e.call(a), clock, opts.warmup_s, opts.min_iters, opts.max_seconds,
                            opts.max_iters, timer)
            except Exception as e:  # noqa: BLE001 - OOM, a plan's profile limit, ...
                any_failed = True
                rows.append(_row(spec, eng.label, eng.precision, b, f"failed: {type(e).__name__}: {_first_line(e)}"))
                log(f"{eng.label} / loop {spec.loop} / batch {b}: failed: {e}")
                _free(device, notes)
                continue
            lat = summarize(m.latencies_ms, b)
            row = _row(spec, eng.label, eng.precision, b, "ok", latency_ms=lat,
                       throughput_ips=lat["throughput_ips"], stages=E.stage_breakdown(m.stages, m.latencies_ms),
                       memory=probe.read(), warmup_iters=m.warmup_iters, warmup_s=round(m.warmup_s, 3),
                       measure_s=round(m.measure_s, 3), stop_reason=m.stop_reason, info=eng.info)
            rows.append(row)
            log(f"{eng.label} / loop {spec.loop} / {eng.precision} / batch {b}: p50 {lat['p50_ms']:.2f} ms, "
                f"{lat['throughput_ips']:.2f} images/s ({lat['iterations']} calls)")
        del eng
        _free(device, notes)
    _speedups(rows)

    step_ops = []
    have_csrc = E.csrc_status(device) is None
    net_dtypes = [torch.float32] + ([torch.float16] if "float16" in opts.precisions and device.type == "cuda" else [])
    for b in opts.batches:
        for nd in net_dtypes:
            if deadline and time.perf_counter() > deadline:
                notes.append("the fused step op was not timed at every batch: time budget spent")
                break
            try:
                step_ops.append(limits.step_op(cfg, b, device, nd, have_csrc))
            except Exception as e:  # noqa: BLE001
                notes.append(f"step op at batch {b} ({nd}): {type(e).__name__}: {_first_line(e)}")
    if not have_csrc:
        notes.append(f"fused kernels: {E.csrc_status(device)}")

    # The ceilings are measured at the start and at the end of the run and the higher
    # value is kept, so that a busy moment does not lower the reference peak.
    log("measuring the GEMM rate and copy bandwidth again (the best of start and end is the ceiling)")
    try:
        peaks_end, copy_end = limits.gemm_peaks(device), limits.copy_bandwidth(device)
    except Exception as e:  # noqa: BLE001 - e.g. a CUDA error left by a failed row: keep the report
        any_failed = True
        notes.append(f"ceilings not measured again at the end ({type(e).__name__}: {_first_line(e)}); "
                     "the start values are used")
        peaks_end, copy_end = peaks_start, copy_start
    peaks = {k: max(peaks_start[k], peaks_end[k], key=lambda p: p["tflops"]) for k in peaks_start}
    copy = max(copy_start, copy_end, key=lambda c: c["GBps"])
    for row in rows:
        if row["status"] == "ok":
            _limits_of_row(row, flops, peaks, device)
    notes += _notes(rows, opts, device)
    env["load_average_at_end"] = load_average()
    loads = [la[0] for la in (env.get("load_average_at_start"), env["load_average_at_end"]) if la]
    if loads and max(loads) > (env.get("cpu_count") or 1) + 0.5:
        notes.append(f"the machine was busy: 1-minute load average {max(loads):.1f} on {env.get('cpu_count')} cores "
                     "(other processes competed for the CPU); CPU timings are pessimistic and noisy"
                     + ("; --threads 1 avoids the stalls of oversubscribed intra-op threads"
                        if device.type == "cpu" and torch.get_num_threads() > 1 else ""))

    d = cfg.diffusion
    rep = {
        "schema": "drdc-bench/1",
        "environment": env,
        "run": {
            "config_name": name, "model_source": source, "config": cfg.to_dict(),
            "image_size": cfg.image_size, "rows_per_image": cfg.rows_per_image, "steps": d.num_steps, "t0": d.t0,
            "unet_width": cfg.unet.model_channels, "unet_channel_mult": list(cfg.unet.channel_mult),
            "backends": list(opts.backends), "loops": list(opts.loops), "precisions": list(opts.precisions),
            "batches": list(opts.batches), "device": str(device), "warmup_s": opts.warmup_s,
            "min_iters": opts.min_iters, "max_seconds": opts.max_seconds, "max_iters": opts.max_iters,
            "budget_s": opts.budget_s, "clock": clock.method, "seed": opts.seed,
            "bundle": str(opts.bundle) if opts.bundle else None, "checkpoint": opts.model,
            "wall_s": None,
        },
        "baseline": {"backend": "torch", "loop": "torch", "precision": "float32",
                     "what": "plain PyTorch eager fp32 pipeline, DDIM loop in Python with the reference ops"},
        "limits": {"flops": flops, "gemm_peaks": peaks, "copy_bandwidth": copy,
                   "measured_at_start": {"gemm_peaks": peaks_start, "copy_bandwidth": copy_start},
                   "measured_at_end": {"gemm_peaks": peaks_end, "copy_bandwidth": copy_end}},
        "rows": rows,
        "step_op": step_ops,
        "notes": notes,
        "any_failed": any_failed,
    }
    rep["run"]["wall_s"] = round(time.perf_counter() - t_start, 1)
    return rep


def _threads(opts: Options) -> dict:
    out = {"torch": torch.get_num_threads(), "onnxruntime_intra_op": opts.threads or "default (one per core)"}
    try:
        from drdc_trt import _C

        out["drdc_trt._C"] = _C.num_threads()
    except ImportError:
        out["drdc_trt._C"] = None
    return out


def _first_line(e: Exception) -> str:
    s = str(e).strip().splitlines()
    return (s[0] if s else "")[:300]


def _free(device: torch.device, notes: list[str]) -> None:
    """Release what the last engine held (cached C++ refiners too). A CUDA error left by a
    failed row surfaces here: it is noted, and the rows after it report their own failures."""
    from drdc_trt.methods.drdc.refiner import clear_cache

    clear_cache()
    gc.collect()
    if device.type == "cuda":
        try:
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()
        except Exception as e:  # noqa: BLE001
            note = f"freeing device memory after a row failed: {type(e).__name__}: {_first_line(e)}"
            if note not in notes:
                notes.append(note)


def _limits_of_row(row: dict, flops: dict, peaks: dict, device: torch.device) -> None:
    key = limits.peak_key(device, row["precision"])
    peak = peaks.get(key, {}).get("tflops")
    achieved = flops["per_image"] * row["throughput_ips"] / 1e12
    row["achieved_tflops"] = achieved
    row["peak_ref"] = key
    row["fraction_of_peak"] = achieved / peak if peak else None
    st = row.get("stages") or {}
    if st.get("unet_ms"):
        u = flops["unet_per_image"] * row["batch"] / (st["unet_ms"] * 1e-3) / 1e12
        row["unet_tflops"] = u
        row["unet_fraction_of_peak"] = u / peak if peak else None


def _speedups(rows: list[dict]) -> None:
    base = {r["batch"]: r["latency_ms"]["p50_ms"] for r in rows if r.get("baseline") and r["status"] == "ok"}
    for r in rows:
        if r["status"] != "ok":
            continue
        b = base.get(r["batch"])
        r["speedup_vs_baseline"] = (1.0 if r.get("baseline") else b / r["latency_ms"]["p50_ms"]) if b else None
        r["throughput_ratio_vs_baseline"] = (
            r["throughput_ips"] / next(x["throughput_ips"] for x in rows
                                       if x.get("baseline") and x["status"] == "ok" and x["batch"] == r["batch"])
            if b else None)


def _notes(rows: list[dict], opts: Options, device: torch.device) -> list[str]:
    out = []
    for r in rows:
        fb = (r.get("info") or {}).get("fallback")
        if fb and fb not in out:
            out.append(fb)
    ok = [r for r in rows if r["status"] == "ok"]
    if ok and min(r["latency_ms"]["iterations"] for r in ok) < 100:
        out.append("p99 of fewer than 100 calls is close to the slowest call; raise --max-seconds / --min-iters "
                   "for tighter tails")
    if device.type == "cpu":
        t = _threads(opts)
        out.append(f"CPU threads: torch {t['torch']}, drdc_trt._C kernels {t['drdc_trt._C']}, ONNX Runtime intra-op "
                   f"{t['onnxruntime_intra_op']} (--threads sets all three)")
    return out
