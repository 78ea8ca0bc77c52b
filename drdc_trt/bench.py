"""``drdc-bench``: latency, throughput and memory of every engine against PyTorch, side by side.

One run measures, at each batch size, the plain PyTorch eager fp32 pipeline
(DDIM loop in Python — the baseline) and every requested engine (backend ×
DDIM loop × precision), each row's speed-up against that baseline, where the
time goes (base / U-Net / in-between / fusion), and how far each row is from
the device's limits (FLOPs counted with torch.utils.flop_counter against a GEMM
rate and a copy bandwidth measured in the same run). Engines that cannot run
here are listed with the reason. The implementation lives in
``drdc_trt.benchmarking``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import methods as registry
from .benchmarking.runs import runs, stem as runs_stem
from .settings import PRESETS

BACKENDS = ("torch", "torch-compiled", "onnxruntime", "openvino", "tensorrt")
# openvino rows are asked for by name (--backends ...,openvino): they need its optional package
DEFAULT_BACKENDS = ("torch", "torch-compiled", "onnxruntime", "tensorrt")
LOOPS = ("torch", "csrc", "runtime")
PRECISIONS = ("float32", "float16", "bfloat16")
# Defaults per device: finish in a few minutes on a 2-core CPU; cover batching on a GPU.
DEFAULTS = {
    "cpu": {"config": "small", "batch": "1,8", "precision": "float32", "warmup_s": 0.0, "min_iters": 3,
            "max_seconds": 10.0},
    "cuda": {"config": "fast", "batch": "1,8,32", "precision": "float32,bfloat16", "warmup_s": 1.0,
             "min_iters": 10, "max_seconds": 5.0},
}

EPILOG = """\
defaults (when an option is not given):
  device       cuda when torch sees a GPU, else cpu
  on cpu:      --config small (its native 64x64, 5 DDIM steps) --batch 1,8 --precision float32
               --warmup-s 0 (one untimed call) --min-iters 3 --max-seconds 10
               (3-5 minutes on a 2-core CPU)
  on cuda:     --config fast (224x224, 10 DDIM steps) --batch 1,8,32 --precision float32,bfloat16
               --warmup-s 1 --min-iters 10 --max-seconds 5
  --backends   torch,torch-compiled,onnxruntime,tensorrt (openvino when named)   --loop torch,csrc
  --steps / --size: the config's own; --out benchmarks/results

the model: with --config a randomly initialised model of that preset (no checkpoint needed;
latency does not depend on the weights); with --bundle B the engines run the bundle and the
torch rows a random-init model of its config (or --model CKPT's weights).

rows: the baseline (torch eager fp32, loop torch) is measured in every run at every batch;
onnxruntime, openvino and tensorrt need --bundle; openvino gets a row per inference precision
(f32, and bf16 where the CPU has it), whatever --precision says; engines that cannot run here (no bundle, no GPU,
TensorRT or onnxruntime-gpu not installed, torch-compiled on a CPU - whose runner would just
fall back to eager PyTorch) are listed as 'not available: <reason>'.
loop torch: DDIM loop in Python with the PyTorch reference ops; csrc: the C++ refiner with the
fused kernels; runtime: the torch-free bundle runtime (engine backends only).

method: warm-up for --warmup-s seconds (at least one call), then calls until --min-iters calls
and --max-seconds seconds (at most --max-iters); CUDA events on the GPU, perf_counter on the CPU.

examples:
  drdc-bench                                             # CPU defaults above
  drdc-bench --config tiny --batch 1 --max-seconds 2     # seconds
  drdc-bench --bundle B --loop torch,csrc,runtime        # onnxruntime vs eager PyTorch
  drdc-bench --bundle B --backends torch,onnxruntime,openvino --loop runtime   # CPU engines
  drdc-bench --device cuda --config paper --batch 1,8 --max-seconds 10
results: <out>/drdc_bench_<device>_<config>_<date>[_<tag>].json and .md
"""


def _csv(kind, choices=None):
    def parse(text: str):
        items = [s.strip() for s in text.split(",") if s.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"{kind}: give at least one value")
        if choices:
            bad = [s for s in items if s not in choices]
            if bad:
                raise argparse.ArgumentTypeError(f"{kind}: unknown {bad}; choose from {','.join(choices)}")
        return tuple(dict.fromkeys(items))

    return parse


def _batches(text: str):
    try:
        out = tuple(dict.fromkeys(int(s) for s in text.split(",") if s.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batch {text!r}: comma-separated integers, e.g. 1,8,32") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"--batch {text!r}: sizes must be >= 1")
    return out


def _method_help() -> str:
    """--method's help, from the method registry (drdc_trt.benchmarking.runs)."""
    groups = runs()
    own = [n for n in registry.names() if registry.get(n).has("bench_suite")]
    rows = [n for n in registry.names() if n not in own]
    text = [f"{n} (the rows above)" for n in own]
    if rows:
        text.append(f"{', '.join(rows)} (that method's rows: torch eager, onnxruntime, the torch-free runtime and "
                    "what drdc_trt/methods/<name>/bench.py adds)")
    return ("; ".join(text) + f"; both ({' and '.join(groups['both'])}) or all ({', '.join(groups['all'])}) side by "
            "side at the same image size, each against its own eager fp32 PyTorch [%(default)s]")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="drdc-bench", description=__doc__.split("\n\n")[0].replace("``", ""),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--bundle", metavar="B",
                     help="bundle folder from `drdc export` (engines onnxruntime, openvino, tensorrt)")
    src.add_argument("--config", choices=PRESETS, help="preset of a random-init model [cpu: small, cuda: fast]")
    p.add_argument("--model", metavar="CKPT", help="checkpoint folder: real weights for the torch rows "
                   "(alone, or with --bundle of the same model)")
    p.add_argument("--backends", type=_csv("--backends", BACKENDS), default=DEFAULT_BACKENDS,
                   help="comma-separated, from: torch, torch-compiled, onnxruntime, openvino, tensorrt "
                        "[all but openvino]")
    p.add_argument("--loop", dest="loops", type=_csv("--loop", LOOPS), default=("torch", "csrc"),
                   help="DDIM loops: torch, csrc, runtime [torch,csrc]")
    p.add_argument("--batch", type=_batches, default=None, help="image batch sizes [cpu: 1,8; cuda: 1,8,32]")
    p.add_argument("--precision", type=_csv("--precision", PRECISIONS), default=None,
                   help="torch backends' precisions: float32 (fp32), float16 / bfloat16 (CUDA autocast) "
                        "[cpu: float32; cuda: float32,bfloat16]")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps [the config's]")
    p.add_argument("--size", type=int, default=None, help="image side S [the config's]")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="[cuda if available, else cpu]")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="result folder [%(default)s]")
    p.add_argument("--warmup-s", type=float, default=None, help="warm-up seconds per row [cpu 0, cuda 1]")
    p.add_argument("--min-iters", type=int, default=None, help="timed calls per row, at least [cpu 3, cuda 10]")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="stop timing a row after this many seconds once --min-iters are done [cpu 10, cuda 5]")
    p.add_argument("--max-iters", type=int, default=200, help="timed calls per row, at most [%(default)s]")
    p.add_argument("--budget-s", type=float, default=None,
                   help="wall-clock budget of the whole run: rows not started by then are listed as 'not run'")
    p.add_argument("--compile-mode", choices=["graph", "compile", "compile+graph"], default="graph",
                   help="torch-compiled runner mode [%(default)s]")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of torch, the compiled kernels, ONNX Runtime and OpenVINO [their defaults: one per "
                        "core]; "
                        "on a busy machine fewer threads than cores avoid oversubscription stalls")
    p.add_argument("--method", choices=tuple(runs()), default=registry.names()[0], help=_method_help())
    p.add_argument("--images", metavar="DIR",
                   help="--method glad/all: a folder of images for the inputs (read as drdc detect reads them, "
                        "cycled to fill a batch) instead of random ones: GLAD's steps depend on the images")
    p.add_argument("--int8-calib", metavar="DATA",
                   help="a random-init model (--config) or --method diffusionad/glad/all: quantize the temporary "
                        "bundle's denoisers to int8 with NNCF on DATA's normal training images (as drdc export "
                        "--int8 --calib DATA) and add OpenVINO int8 rows (with --bundle / --model the DRDC suite "
                        "takes an int8 bundle: drdc export --int8)")
    p.add_argument("--int8-calib-images", type=int, default=64, metavar="N",
                   help="--int8-calib: calibration images run through the loop [%(default)s; fewer at 224² save "
                        "time: each image is 40 U-Net rows of the fast preset]")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs, the random init, masks and noise")
    p.add_argument("--date", default=None, help="date in the result file names [today, UTC]")
    p.add_argument("--tag", default="", help="suffix of the result file names")
    p.add_argument("--no-write", action="store_true", help="print the tables only, write no files")
    return p


def options(argv: list[str] | None = None):
    """Parse ``argv`` into :class:`drdc_trt.benchmarking.options.Options` (device defaults applied)."""
    import torch

    from drdc_trt.benchmarking.options import Options

    a = parser().parse_args(argv)
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    d = DEFAULTS[device]
    if a.model and a.config:
        parser().error("--model and --config: a checkpoint carries its config; give one of them")
    opts = Options(
        config=None if (a.bundle or a.model) else (a.config or d["config"]), bundle=a.bundle, model=a.model,
        backends=a.backends, loops=a.loops,
        precisions=a.precision or _csv("--precision", PRECISIONS)(d["precision"]),
        batches=a.batch or _batches(d["batch"]), steps=a.steps, size=a.size, device=device, out=a.out,
        warmup_s=d["warmup_s"] if a.warmup_s is None else a.warmup_s,
        min_iters=a.min_iters or d["min_iters"],
        max_seconds=d["max_seconds"] if a.max_seconds is None else a.max_seconds,
        max_iters=max(a.max_iters, a.min_iters or d["min_iters"]), budget_s=a.budget_s,
        compile_mode=a.compile_mode, seed=a.seed, threads=a.threads, tag=a.tag, write=not a.no_write,
        images=a.images, int8_calib=a.int8_calib, int8_calib_images=a.int8_calib_images)
    if a.date:
        opts.date = a.date
    return opts


def main(argv: list[str] | None = None) -> int:
    from .benchmarking import report
    from drdc_trt.benchmarking.options import BenchError

    opts = options(argv)
    method = parser().parse_args(argv).method
    spec = registry.get(method) if method in registry.names() else None
    if spec is None or not spec.has("bench_suite"):
        return _main_methods(opts, method, argv)
    if opts.int8_calib and (opts.bundle or opts.model):
        print(f"drdc-bench: error: --int8-calib quantizes a random-init model's temporary bundle; with --bundle / "
              f"--model, --method {method} takes an int8 bundle: drdc export --int8 --calib DATA, then --bundle B "
              "--backends openvino", file=sys.stderr)
        return 2
    try:
        if opts.int8_calib:  # the random-init model through a temporary bundle, its denoisers in int8
            from .benchmarking import rows as kit

            rep = spec.entry("bench_rows")(kit, opts, None, argv, kit.log_stderr)["report"]
        else:
            rep = spec.entry("bench_suite")(opts, argv)  # the method's own pipeline suite (its spec's bench_suite)
    except BenchError as e:
        print(f"drdc-bench: error: {e}", file=sys.stderr)
        return 2
    md = report.markdown(rep)
    print(md)
    if opts.write:
        stem = f"drdc_bench_{rep['environment']['device'].split(':')[0]}_{rep['run']['config_name']}_{opts.date}"
        stem += f"_{opts.tag}" if opts.tag else ""
        jp, mp = report.write(rep, opts.out, stem)
        print(f"wrote {jp} and {mp}", file=sys.stderr)
    return 1 if rep["any_failed"] else 0


def _main_methods(opts, method: str, argv) -> int:
    """--method of a method's rows, both or all (drdc_trt.benchmarking.methods; the runs offered:
    drdc_trt.benchmarking.runs)."""
    from .benchmarking import methods as D

    try:
        rep = D.run(opts, method, argv)
    except ValueError as e:
        print(f"drdc-bench: error: {e}", file=sys.stderr)
        return 2
    print(D.markdown(rep))
    if opts.write:
        name = runs_stem(rep["run"]["methods"])  # a_vs_b_vs_c for a run of several methods
        stem = f"drdc_bench_cpu_{name}_{rep['run']['image_size']}px_{opts.date}"
        stem += f"_{opts.tag}" if opts.tag else ""
        jp, mp = D.write(rep, opts.out, stem)
        print(f"wrote {jp} and {mp}", file=sys.stderr)
    return 1 if rep["any_failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
