"""``drdc-bench --method diffusionad|glad|both|all``: the reconstruction methods' rows, and DRDC's
beside them at the same image size (``both``: DRDC and DiffusionAD; ``all``: DRDC, DiffusionAD and GLAD).

Each row is measured against eager fp32 PyTorch of the same model in the same run.

DiffusionAD:

* ``torch eager`` (the baseline): ``DiffusionADDetector.predict_batch`` (U-Net on 2 rows per image,
  the norm-guided combination in PyTorch, segmentation net, top-k score);
* ``onnxruntime (numpy combination)``: the torch-free ``DiffusionADBundleDetector`` on ONNX
  Runtime with the numpy transcription of the combination;
* ``onnxruntime (torch-free runtime)``: the same with the compiled kernel (``_C.norm_guided``);
* ``openvino (torch-free runtime)`` when ``--backends`` names openvino.

GLAD (the adaptive loop: every image decides its own number of U-Net steps):

* ``torch eager`` (the baseline): ``GLADDetector.predict_batch``, finished rows compacted out of
  the U-Net batch, the per-row step in PyTorch;
* ``torch eager, every row all K steps``: the same loop with no early exit (τ = +∞, min_step 0: no
  row triggers or falls back, every row checks every step): what the adaptive steps save;
* ``torch, csrc kernels``: the per-row step by ``drdc_trt._C`` (``glad_predict`` / ``glad_update``);
* ``onnxruntime (numpy kernels)`` / ``onnxruntime (torch-free runtime)``: ``GLADBundleDetector``
  with the numpy transcription / the compiled kernels; ``openvino (torch-free runtime)`` on request.

Each GLAD row records the steps its images took (``steps_histogram``, ``mean_steps``); they depend
on the images, so ``--images`` gives real ones (random images otherwise).

The model is a randomly initialised model of the preset (``--config``; latency does not depend on
the weights, but GLAD's steps do: give ``--model CKPT`` and ``--images`` for a trained model's
steps) or ``--model CKPT``; the engine rows run a bundle exported from it into a temporary folder.
DRDC's rows (``both``, ``all``) come from its own suite on a bundle of its random-init model.
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


NAMES = {"drdc": "DRDC", "diffusionad": "DiffusionAD", "glad": "GLAD"}
RUNS = {"diffusionad": ("diffusionad",), "glad": ("glad",), "both": ("drdc", "diffusionad"),
        "all": ("drdc", "diffusionad", "glad")}


def method_model(opts, method: str, size: int | None = None):
    """(model, source text) of the options for ``method`` (diffusionad, glad): ``--model CKPT`` or a
    random-init preset."""
    if opts.model:
        from drdc_trt.loading import load_checkpoint

        model = load_checkpoint(opts.model)
        if model.cfg.method != method:
            raise ValueError(f"--model {opts.model} holds a {model.cfg.method} model; --method {method} needs "
                             f"a {NAMES[method]} checkpoint")
        return model.eval(), f"checkpoint {opts.model}"
    from drdc_trt.config import preset

    cfg = preset(opts.config or "small", method)
    size = size or opts.size
    if size is not None and size != cfg.image_size:
        cfg = cfg.replace(image_size=size)
    torch.manual_seed(opts.seed)
    if method == "glad":
        from drdc_trt.methods.glad.model import GLADModel

        model = GLADModel(cfg)
    else:
        from drdc_trt.methods.diffusionad.model import DiffusionADModel

        model = DiffusionADModel(cfg)
    return (model.eval(), f"preset {opts.config or 'small'!r} for {NAMES[method]}, randomly initialised "
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


def _engine_rows(method: str, model, opts, engines, log: Callable[[str], None],
                 steps_of: Callable | None = None) -> list[dict]:
    """Measure each engine (label, backend, loop, build(bundle) → detector, takes numpy) at every
    batch of ``opts`` on a bundle exported from ``model`` into a temporary folder; ``steps_of(out)``:
    extra per-row facts from one more call's output (GLAD: the steps its images took)."""
    from drdc_trt.export import export_bundle

    device = torch.device("cpu")
    clock, probe = Clock(device), MemoryProbe(device)
    s = model.cfg.image_size
    inputs = bench_inputs(opts, s, opts.batches)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix=f"drdc_bench_{method}_") as tmp:
        log(f"exporting the {NAMES[method]} model (S={s}) to a temporary bundle")
        bundle = Path(tmp) / "bundle"
        export_bundle(model, bundle, seed=opts.seed, check_batches=(), max_batch=max(opts.batches))
        for label, backend, loop, build, host in engines:
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
                row = {"method": method, "engine": label, "backend": backend, "loop": loop, "precision": "float32",
                       "batch": b, "baseline": loop == "torch", "status": "ok", "latency_ms": lat,
                       "throughput_ips": lat["throughput_ips"], "memory": probe.read(), "stop_reason": m.stop_reason}
                note = ""
                if steps_of is not None:
                    with torch.no_grad():
                        row.update(steps_of(det.predict_batch(x)))
                    note = f", mean steps {row['steps']['mean_steps']:.2f}"
                rows.append(row)
                log(f"{NAMES[method]} {label} / batch {b}: p50 {lat['p50_ms']:.2f} ms ({lat['iterations']} calls){note}")
            del det
    _speedups(rows)
    return rows


def diffusionad_rows(opts, model, log: Callable[[str], None] = _log) -> list[dict]:
    """The DiffusionAD rows at every batch size of ``opts``, speed-ups against its eager baseline."""
    from drdc_trt.methods.diffusionad.detector import DiffusionADDetector
    from drdc_trt.methods.diffusionad.runtime import DiffusionADBundleDetector

    threads = opts.threads or 0
    engines = [("torch eager", "torch", "torch", lambda _: DiffusionADDetector(model, "cpu", opts.seed), False),
               ("onnxruntime (numpy combination)", "onnxruntime", "numpy",
                lambda b: DiffusionADBundleDetector(b, "onnxruntime", "numpy", threads=threads), True),
               ("onnxruntime (torch-free runtime)", "onnxruntime", "runtime",
                lambda b: DiffusionADBundleDetector(b, "onnxruntime", "csrc", threads=threads), True)]
    if "openvino" in opts.backends:
        engines.append(("openvino (torch-free runtime)", "openvino", "runtime",
                        lambda b: DiffusionADBundleDetector(b, "openvino", "csrc", threads=threads), True))
    return _engine_rows("diffusionad", model, opts, engines, log)


def glad_rows(opts, model, log: Callable[[str], None] = _log) -> list[dict]:
    """The GLAD rows at every batch size of ``opts`` (module doc), each with the steps its images took."""
    import math

    from drdc_trt.methods.glad.detector import GLADDetector
    from drdc_trt.methods.glad.runtime import GLADBundleDetector

    full_cfg = model.cfg.replace(**{"glad.min_step": 0})  # no fallback: with τ = +∞ every row runs all K steps
    threads = opts.threads or 0
    engines = [("torch eager", "torch", "torch", lambda _: GLADDetector(model, "cpu", opts.seed), False),
               ("torch eager, every row all K steps", "torch", "torch-full",
                lambda _: _WithConfig(GLADDetector, model, full_cfg, "cpu", opts.seed, tau=math.inf), False),
               ("torch, csrc kernels", "torch", "csrc",
                lambda _: GLADDetector(model, "cpu", opts.seed, kernels="csrc"), False),
               ("onnxruntime (numpy kernels)", "onnxruntime", "numpy",
                lambda b: GLADBundleDetector(b, "onnxruntime", "numpy", threads=threads), True),
               ("onnxruntime (torch-free runtime)", "onnxruntime", "runtime",
                lambda b: GLADBundleDetector(b, "onnxruntime", "csrc", threads=threads), True)]
    if "openvino" in opts.backends:
        engines.append(("openvino (torch-free runtime)", "openvino", "runtime",
                        lambda b: GLADBundleDetector(b, "openvino", "csrc", threads=threads), True))
    k = model.cfg.glad.num_steps
    rows = _engine_rows("glad", model, opts, engines, log,
                        steps_of=lambda out: {"steps": _plain_steps(out.step_report(k))})
    _steps_saved(rows)
    return rows


class _WithConfig:
    """A detector built and run with ``cfg`` in place of its model's config (restored after each call)."""

    def __init__(self, cls, model, cfg, *args, **kwargs):
        from drdc_trt.study import carrying_config

        self.carrying = lambda: carrying_config(model, cfg)
        with self.carrying():
            self.det = cls(model, *args, **kwargs)

    def predict_batch(self, x):
        with self.carrying():
            return self.det.predict_batch(x)


def _plain_steps(rep: dict) -> dict:
    return {k: ({str(a): b for a, b in v.items()} if isinstance(v, dict) else v) for k, v in rep.items()}


def _steps_saved(rows: list[dict]) -> None:
    """full_k_over_row: for GLAD's adaptive eager row, the p50 of the every-row-all-K-steps row (the
    same engine) at the same batch over its own (> 1: the early exits saved time)."""
    full = {r["batch"]: r["latency_ms"]["p50_ms"] for r in rows if r.get("loop") == "torch-full" and r["status"] == "ok"}
    for r in rows:
        if r["status"] == "ok" and r["method"] == "glad" and r["loop"] == "torch" and r["batch"] in full:
            r["full_k_over_row"] = full[r["batch"]] / r["latency_ms"]["p50_ms"]


def _speedups(rows: list[dict]) -> None:
    """speedup_vs_baseline: the method's own eager fp32 p50 / the row's p50, per batch."""
    base = {(r["method"], r["batch"]): r["latency_ms"]["p50_ms"] for r in rows
            if r.get("baseline") and r["status"] == "ok" and r.get("loop") == "torch"}
    for r in rows:
        if r["status"] == "ok":
            b = base.get((r["method"], r["batch"]))
            r["speedup_vs_baseline"] = b / r["latency_ms"]["p50_ms"] if b else None


def run(opts, method: str, argv: list[str] | None = None, log: Callable[[str], None] = _log) -> dict:
    """The report of ``--method diffusionad``, ``glad``, ``both`` or ``all``."""
    if opts.device != "cpu":
        raise ValueError(f"--method {method} measures on the CPU here (--device cpu)")
    if method not in RUNS:
        raise ValueError(f"--method {method}: choose one of {', '.join(RUNS)}")
    if opts.model and len(RUNS[method]) > 1:
        raise ValueError(f"--model with --method {method}: a checkpoint holds one method; bench its method alone")
    with thread_count(opts.threads):
        return _run(opts, method, argv, log)


def _run(opts, method: str, argv: list[str] | None, log: Callable[[str], None]) -> dict:
    t0 = time.perf_counter()
    env = environment(torch.device("cpu"), argv)
    drdc_rep = None
    size = opts.size
    methods = RUNS[method]
    if "drdc" in methods:
        drdc_rep = _drdc_report(opts, argv, log)
        size = drdc_rep["run"]["image_size"]  # the same image size for every method
    rows, sources, configs = [], {}, {}
    if drdc_rep is not None:
        rows += [{**r, "method": "drdc"} for r in drdc_rep["rows"]]
        sources["drdc"] = drdc_rep["run"]["model_source"]
    for m in methods:
        if m == "drdc":
            continue
        model, sources[m] = method_model(opts, m, size)
        configs[m] = model.cfg.to_dict()
        size = model.cfg.image_size
        rows += (glad_rows if m == "glad" else diffusionad_rows)(opts, model, log)
    env["load_average_at_end"] = load_average()
    return {"schema": "drdc-bench-methods/2", "environment": env,
            "run": {"method": method, "methods": list(methods), "image_size": size, "batches": list(opts.batches),
                    "models": sources, "configs": configs, "images": getattr(opts, "images", None),
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
    from drdc_trt.methods.drdc.model import DRDCModel

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
        from drdc_trt.methods.drdc.fusion import PixelStats

        s = cfg.image_size
        model.stats.pixel = PixelStats(torch.zeros(s, s), torch.ones(s, s))
    with tempfile.TemporaryDirectory(prefix="drdc_bench_drdc_") as tmp:
        log(f"exporting a random-init DRDC model (S={cfg.image_size}) to a temporary bundle")
        export_bundle(model, Path(tmp) / "bundle", seed=opts.seed, check_batches=(), max_batch=max(opts.batches))
        sub = replace(opts, config=None, bundle=str(Path(tmp) / "bundle"), size=None, write=False,
                      loops=tuple(dict.fromkeys((*opts.loops, "runtime"))))
        rep = suite.run(sub, argv, log)
    rep["run"]["bundle"] = "a temporary bundle exported from the random-init model"  # not a path kept anywhere
    rep["run"]["model_source"] = (f"preset {opts.config or 'small'!r}, randomly initialised (its engine rows run a "
                                  "bundle exported from it)")
    return rep


# --------------------------------------------------------------------------- report
def markdown(rep: dict) -> str:
    env, run = rep["environment"], rep["run"]
    v = env["versions"]
    title = " vs ".join(NAMES[m] for m in run["methods"])
    lines = [f"# drdc-bench — {title} at {run['image_size']}² on {env['cpu']}", "",
             f"- date: {env['date']}", f"- command: `{env['command']}`",
             f"- machine: {env['cpu']}, {env['cpu_count']} cores; load average (1/5/15 min) at start "
             f"{env.get('load_average_at_start')}, at end {env.get('load_average_at_end')}",
             f"- versions: python {v['python']}, drdc_trt {v['drdc_trt']}, torch {v['torch']}, onnxruntime "
             f"{v['onnxruntime']}, onnx {v['onnx']}, numpy {v['numpy']}"]
    lines += [f"- {NAMES[m]} model: {src}" for m, src in run["models"].items()]
    lines += [f"- inputs: {'images from ' + run['images'] if run.get('images') else 'uniform random images'}",
              f"- timing: perf_counter; warm-up ≥ {run['warmup_s']} s (at least one call), then ≥ {run['min_iters']} "
              f"calls and ≥ {run['max_seconds']} s per row; latency = one `predict_batch` call", "",
              "| method | engine | batch | p50 ms | p50 ms / image | images/s | speed-up vs the method's eager fp32 |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for r in rep["rows"]:
        name = NAMES[r["method"]]
        engine = r["engine"] + (f" (loop {r['loop']})" if r["method"] == "drdc" else "")
        if r["status"] != "ok":
            lines.append(f"| {name} | {engine} | {r.get('batch') or '—'} | {r['status']} | | | |")
            continue
        lat = r["latency_ms"]
        sp = r.get("speedup_vs_baseline")
        per_image = R._ms(lat["per_image"]["p50_ms"])
        lines.append(f"| {name} | {engine} | {r['batch']} | {R._ms(lat['p50_ms'])} | {per_image} "
                     f"| {r['throughput_ips']:.1f} | {'—' if sp is None else f'{sp:.2f}×'} |")
    if "glad" in run["methods"]:
        lines += ["", _glad_steps(rep)]
    if len(run["methods"]) > 1:
        lines += ["", _cross_method(rep)]
    lines += ["", "Speed-up = p50 of the same method's PyTorch eager fp32 row at the same batch / p50 of the row, "
              "both measured in this run."]
    return "\n".join(lines) + "\n"


def _glad_steps(rep: dict) -> str:
    """GLAD's steps per row: the distribution over the batch's images and the time the early exits save."""
    k = rep["run"]["configs"]["glad"]["glad"]["num_steps"]
    out = [f"GLAD's adaptive steps ({k} DDIM steps at most; a row stops at its fallback, or runs to the end "
           "once it triggers). `all-K / row`: p50 of `torch eager, every row all K steps` at the same batch over "
           "the adaptive eager row's p50 (the same engine).", "",
           "| engine | batch | steps taken: images | mean steps | U-Net rows run / all K | all-K / row |",
           "|---|---:|---|---:|---:|---:|"]
    for r in rep["rows"]:
        if r["method"] != "glad" or r["status"] != "ok":
            continue
        st = r["steps"]
        hist = ", ".join(f"{a}: {b}" for a, b in sorted(st["steps_histogram"].items(), key=lambda kv: int(kv[0])))
        ratio = r.get("full_k_over_row")
        out.append(f"| {r['engine']} | {r['batch']} | {hist} | {st['mean_steps']:.2f} | {st['unet_rows_run']} / "
                   f"{st['unet_rows_full']} | {'—' if ratio is None else f'{ratio:.2f}×'} |")
    return "\n".join(out)


def _cross_method(rep: dict) -> str:
    """Per batch: DRDC's p50 over each other method's, eager and torch-free runtime (onnxruntime)."""
    def p50(method, loop, backend, b):
        for r in rep["rows"]:
            if (r["method"], r.get("loop"), r.get("backend")) == (method, loop, backend) and r["status"] == "ok" \
                    and r["batch"] == b:
                return r["latency_ms"]["p50_ms"]
        return None

    others = [m for m in rep["run"]["methods"] if m != "drdc"]
    head = ["batch"] + [f"DRDC eager / {NAMES[m]} eager | DRDC runtime / {NAMES[m]} runtime (onnxruntime)"
                        for m in others]
    out = ["| " + " | ".join(head) + " |", "|" + "---:|" * (1 + 2 * len(others))]
    for b in rep["run"]["batches"]:
        cells = [str(b)]
        for m in others:
            for loop, backend in (("torch", "torch"), ("runtime", "onnxruntime")):
                a, c = p50("drdc", loop, backend, b), p50(m, loop, backend, b)
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
